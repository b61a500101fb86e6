#!/bin/sh
# Issue #21, item 2: the authors' two-step recipe (`bnn-two-step`: real weights with binary activations for the
# first half of the epochs, then both binary), `xnor` against `gamma-o-h-w` with Γ initialised to 1 as in the
# paper, at the same 15-epoch budget and on the same seeds as ../comparison-fashion-mnist-converged (0-2: the
# CPU budget of one session). One job per scaling, one thread each, so that each seed's pair finishes together.
# Finished runs are skipped and an interrupted one resumes from its last epoch: rerun the script at any time.
cd "$(dirname "$0")/../../.."  # the repository root
X=.venv/bin/xnorpp
COMMON="--model fmnist-net --dataset fashion-mnist --recipe bnn-two-step --epochs 15 --threads 1 --model-opt width=32 --no-progress"
for scaling in xnor gamma-o-h-w; do
  (for s in 0 1 2; do $X compare runs/two-step-fmnist $COMMON --scalings $scaling --seeds $s; done) &
done
wait
# Both scalings and every seed in one table (finished runs are skipped: this trains nothing).
$X compare runs/two-step-fmnist $COMMON --scalings xnor gamma-o-h-w --seeds 0 1 2
OUT=docs/results/comparison-fashion-mnist-two-step
XNOR2="xnor (two-step)=runs/two-step-fmnist:xnor" G2="Γ=1 (two-step)=runs/two-step-fmnist:gamma-o-h-w"
$X paired --arm "$XNOR2" --arm "$G2" -o $OUT
# Against the same seeds' fast-cpu runs of ../comparison-fashion-mnist-converged (its run.sh trains them): the recipe.
$X paired --arm "$XNOR2" --arm "$G2" --arm "xnor (fast-cpu)=runs/converged-fmnist:xnor" \
  --arm "Γ=1 (fast-cpu)=runs/converged-fmnist:gamma-o-h-w" -o $OUT/recipes
# The folder's comparison.md/.json and each run's config.json, metrics.csv and result.json beside the pages.
mkdir -p "$OUT/runs/two-step-fmnist" && cp runs/two-step-fmnist/comparison.md runs/two-step-fmnist/comparison.json "$OUT/runs/two-step-fmnist/"
for run in runs/two-step-fmnist/*-seed*; do
  [ -f "$run/result.json" ] || continue
  mkdir -p "$OUT/$run" && cp "$run/config.json" "$run/metrics.csv" "$run/result.json" "$OUT/$run/"
done
