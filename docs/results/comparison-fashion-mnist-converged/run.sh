#!/bin/sh
# Issue #21: converged paired comparison, 15 epochs, seeds in order so that pairs complete early.
# The two folders train side by side, one thread each (a width-32 epoch takes about 70 s on one
# core against 45 s on two, so two 1-thread runs get more done than one 2-thread run).
cd "$(dirname "$0")/../../.."  # the repository root
X=.venv/bin/xnorpp
COMMON="--model fmnist-net --dataset fashion-mnist --recipe fast-cpu --epochs 15 --threads 1 --model-opt width=32 --no-progress"
(
  for s in 0 1 2 3 4; do
    $X compare runs/converged-fmnist $COMMON --scalings xnor gamma-o-h-w --seeds $s
  done
) &
(
  for s in 0 1 2 3 4; do
    $X compare runs/converged-fmnist-alpha $COMMON --model-opt gamma_init=alpha --scalings gamma-o-h-w --seeds $s
  done
  # The float ceiling, one seed (its own folder, so that the two jobs never write the same one).
  $X compare runs/converged-fmnist-float $COMMON --scalings float --seeds 0
) &
wait
