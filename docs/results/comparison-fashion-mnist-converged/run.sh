#!/bin/sh
# Issue #21: converged paired comparison, 15 epochs, seeds in order so that pairs complete early.
# Two jobs side by side, one thread each (a width-32 epoch takes about 75 s on one core against 45 s on two, so
# two 1-thread runs get more done than one 2-thread run), with about the same number of epochs each. Finished
# runs are skipped and an interrupted one resumes from its last epoch, so the script can be rerun at any time.
cd "$(dirname "$0")/../../.."  # the repository root
X=.venv/bin/xnorpp
COMMON="--model fmnist-net --dataset fashion-mnist --recipe fast-cpu --epochs 15 --threads 1 --model-opt width=32 --no-progress"
(
  for s in 0 1 2 3; do
    $X compare runs/converged-fmnist $COMMON --scalings xnor gamma-o-h-w --seeds $s
  done
  $X compare runs/converged-fmnist $COMMON --scalings xnor --seeds 4
) &
(
  for s in 0 1 2 3 4; do
    $X compare runs/converged-fmnist-alpha $COMMON --model-opt gamma_init=alpha --scalings gamma-o-h-w --seeds $s
  done
  # The last run of the first folder (the first job trains seed 4's xnor meanwhile, never the same run)...
  $X compare runs/converged-fmnist $COMMON --scalings gamma-o-h-w --seeds 4
  # ...then the float ceiling, one seed, in its own folder.
  $X compare runs/converged-fmnist-float $COMMON --scalings float --seeds 0
) &
wait
# Every seed of the folder in one table (finished runs are skipped: this trains nothing).
$X compare runs/converged-fmnist $COMMON --scalings xnor gamma-o-h-w --seeds 0 1 2 3 4
