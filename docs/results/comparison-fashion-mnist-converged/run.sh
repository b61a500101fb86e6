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
# The paired differences at every epoch: against XNOR-Net's α·K, then Γ initialised to α against Γ initialised to 1.
OUT=docs/results/comparison-fashion-mnist-converged
XNOR=xnor=runs/converged-fmnist:xnor G1="Γ=1=runs/converged-fmnist:gamma-o-h-w"
GA="Γ=α=runs/converged-fmnist-alpha:gamma-o-h-w" FLOAT=float=runs/converged-fmnist-float:float
$X paired --arm "$XNOR" --arm "$G1" --arm "$GA" --arm "$FLOAT" -o $OUT
$X paired --arm "$G1" --arm "$GA" -o $OUT/gamma-init
# Each folder's comparison.md/.json and each run's config.json, metrics.csv and result.json beside the page
# (runs/ itself is not in git).
for folder in runs/converged-fmnist*; do
  mkdir -p "$OUT/$folder" && cp "$folder/comparison.md" "$folder/comparison.json" "$OUT/$folder/"
done
for run in runs/converged-fmnist*/*-seed*; do
  [ -f "$run/result.json" ] || continue
  mkdir -p "$OUT/$run" && cp "$run/config.json" "$run/metrics.csv" "$run/result.json" "$OUT/$run/"
done
