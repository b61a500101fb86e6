#!/bin/sh
# Issue #21: converged paired comparison, 15 epochs, seeds in order so that pairs complete early.
cd "$(dirname "$0")/../../.."  # the repository root
X=.venv/bin/xnorpp
COMMON="--model fmnist-net --dataset fashion-mnist --recipe fast-cpu --epochs 15 --threads 1 --model-opt width=32 --no-progress"
for s in 0 1 2 3 4; do
  $X compare runs/converged-fmnist $COMMON --scalings xnor gamma-o-h-w --seeds $s
  $X compare runs/converged-fmnist-alpha $COMMON --model-opt gamma_init=alpha --scalings gamma-o-h-w --seeds $s
done
$X compare runs/converged-fmnist $COMMON --scalings float --seeds 0
