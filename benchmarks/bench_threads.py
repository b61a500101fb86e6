"""2 threads against 1 at batch 1, paired: issue #19's "2 threads ÷ 1 thread ≥ 1.8×".

Usage: python benchmarks/bench_threads.py [--threads 2] [--rounds 60] [--runs 3] [--isa avx512] [--scaling gamma-o-h-w]

bench_engines.py's binary ResNet-18 (224×224, randomized), exported once and loaded twice (float stem; int8 input
layer). Each round calls the model with 1 thread and with N threads (``runtime.set_num_threads`` between the
calls, the order alternating), so a slow spell of the shared machine hits both alike; reported is the median
over rounds of (1-thread time ÷ N-thread time), per run, for each of the two models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_engines as bench  # noqa: E402  (sets the engines' environment before torch loads)
from common import cpu_model, interleaved_rounds  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="the thread count set against 1 (default: 2)")
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds per run (default: 60)")
    p.add_argument("--runs", type=int, default=3, help="runs, each with its own median (default: 3)")
    p.add_argument("--isa", help="xnorpp unit (default: the best)")
    p.add_argument("--scaling", default="gamma-o-h-w", help="scaling of the binary ResNet-18 (default: gamma-o-h-w)")
    args = p.parse_args(argv)

    from xnorpp import runtime
    from xnorpp.export import export_model

    if args.isa:
        runtime.set_isa(args.isa)
    model = bench.binary_resnet18(torch.Generator().manual_seed(0), args.scaling)
    x = bench.normalized_images(np.random.default_rng(0), 1)
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        path = export_model(model, os.path.join(tmp, "resnet18.xnor"), input_size=(bench.SIZE, bench.SIZE),
                            dataset="imagenet")
        models = {"float stem": runtime.load(path), "int8 input layer": runtime.load(path, input_layer="int8")}
    isa = models["float stem"].isa
    print(f"CPU: {cpu_model()}; xnorpp {isa}; binary ResNet-18 ({args.scaling}), 224×224, batch 1; "
          f"{args.rounds} rounds per run; ratio = median over rounds of (1-thread time ÷ {args.threads}-thread time)")
    for name, packed in models.items():
        def with_threads(n):
            def call():
                runtime.set_num_threads(n)
                packed(x)
            return call

        ratios, one, many = [], [], []
        for _ in range(args.runs):
            wall, _cpu = interleaved_rounds([with_threads(1), with_threads(args.threads)], rounds=args.rounds)
            ratios.append(statistics.median(w[0] / w[1] for w in wall))
            one.append(statistics.median(w[0] for w in wall) * 1e3)
            many.append(statistics.median(w[1] for w in wall) * 1e3)
        print(f"  {name}: {args.threads} threads ÷ 1 thread " + ", ".join(f"{r:.2f}×" for r in ratios)
              + f" (medians: 1 thread {', '.join(f'{t:.2f}' for t in one)} ms; {args.threads} threads "
              + f"{', '.join(f'{t:.2f}' for t in many)} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
