"""Where the time goes, layer by layer: xnorpp's steps against OpenVINO's own counters, on the binary ResNet-18.

Usage: python benchmarks/profile_layers.py [--threads 1] [--rounds 30] [--batch 1] [--scaling gamma-o-h-w]
       (needs the bench extra: pip install 'xnorpp[bench]')

The network is bench_engines.py's binary ResNet-18 (224×224, randomized BN statistics, Γ and PReLU slopes; the
random values themselves differ, which does not change the work), exported to a .xnor file and converted to an
OpenVINO IR by ``xnorpp.export.to_openvino``, whose ops are named after the packed nodes.

* xnorpp: the steps of the runtime's plan (``PackedModel.steps``), each timed with time.perf_counter while the
  model runs step by step as ``PackedModel.__call__`` does (same inputs, same held kernel threads); the runtime
  has no per-step timer, so the loop is repeated here. The whole call is timed too, in the same rounds.
* OpenVINO: compiled as in bench_engines.py, with ``PERF_COUNT``; per round, ``get_profiling_info()`` gives the
  real time of every node of its executable graph. A node counts for the xnorpp step that holds the packed node
  it is named after (its name up to the first "/"), so a layer both engines fuse the same way is one row; a
  node named after no packed node (layout reorders, the input's conversion) has a row of its own.

Each round runs the three candidates once, in turn; reported are medians over rounds, a row per xnorpp step in
the plan's order, then the totals: the sum of the rows and the median of the whole calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_engines as bench  # noqa: E402  (sets the engines' environment before torch and OpenVINO load)
from common import cpu_model  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

OTHER = "(not a packed node)"


def step_timer(packed):
    """A function of an input batch that runs ``packed`` step by step as PackedModel.__call__ does and returns
    each step's wall time in seconds. It reads the model's built kernels (``_fns``): the runtime times no step."""
    from xnorpp import _core

    steps, fns = packed.steps, packed._fns

    def run(x: np.ndarray) -> list[float]:
        values = {packed.graph.input_name: _core.to_nhwc(packed.check_input(x))}
        times = []
        _core.hold_workers(True)
        try:
            for step, fn in zip(steps, fns):
                args = [values[v] for v in step.inputs]
                start = time.perf_counter()
                out = fn(*args)
                times.append(time.perf_counter() - start)
                if step.bits_too:
                    values[step.output], values[step.bits_output] = out
                else:
                    values[step.output] = out
        finally:
            _core.hold_workers(False)
        return times

    return run


def openvino_times(infos) -> dict[str, tuple[str, float]]:
    """Node name -> ("layer type kernel", seconds) of every node OpenVINO ran in one inference."""
    return {info.node_name: (f"{info.node_type} {info.exec_type}", info.real_time.total_seconds())
            for info in infos if info.status == info.Status.EXECUTED}


def table(steps, xnorpp_s: list[float], openvino: dict, totals: dict) -> str:
    """The markdown table: a row per step (plan order), one for OpenVINO's nodes named after no packed node,
    then the totals."""
    lines = ["| layer (xnorpp step) | xnorpp ms | OpenVINO ms | OpenVINO nodes (exec type) | OpenVINO ÷ xnorpp |",
             "|---|---:|---:|---|---:|"]

    def ratio(ov: float, xp: float) -> str:
        return f"{ov / xp:.2f}" if xp > 0 and ov > 0 else "—"

    def kinds(index) -> str:
        counts: dict[str, int] = {}
        for kind in openvino[index]["kinds"]:
            counts[kind] = counts.get(kind, 0) + 1
        return ", ".join(f"{n}× {k}" if n > 1 else k for k, n in counts.items()) or "fused elsewhere"

    for index, step in enumerate(steps):
        ov = openvino[index]["seconds"]
        lines.append(f"| {step.describe()} | {1e3 * xnorpp_s[index]:.3f} | {1e3 * ov:.3f} | {kinds(index)} | "
                     f"{ratio(ov, xnorpp_s[index])} |")
    if openvino[None]["kinds"]:
        lines.append(f"| {OTHER} | — | {1e3 * openvino[None]['seconds']:.3f} | {kinds(None)} | — |")
    layers_xp, layers_ov = sum(xnorpp_s), sum(v["seconds"] for v in openvino.values())
    lines.append(f"| **sum of the rows** | **{1e3 * layers_xp:.3f}** | **{1e3 * layers_ov:.3f}** | | "
                 f"**{ratio(layers_ov, layers_xp)}** |")
    lines.append(f"| **whole call** (median) | **{1e3 * totals['xnorpp']:.3f}** | **{1e3 * totals['openvino']:.3f}** "
                 f"| | **{ratio(totals['openvino'], totals['xnorpp'])}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of both engines (default: 1)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default: 3)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default: 1)")
    parser.add_argument("--scaling", default="gamma-o-h-w",
                        help="scaling of the binary convs (default: gamma-o-h-w, as bench_engines.py)")
    parser.add_argument("--isa", help="xnorpp instruction-set path (default: the best)")
    parser.add_argument("--seed", type=int, default=0, help="weights and input (default: 0)")
    args = parser.parse_args(argv)
    if min(args.threads, args.rounds, args.batch) < 1 or args.warmup < 0:
        parser.error("threads, rounds and batch must be >= 1")
    try:
        import openvino as ov
    except ImportError:
        parser.error(f"OpenVINO is not installed: {bench.INSTALL_HINT}")

    from xnorpp import runtime
    from xnorpp.export import export_model, to_openvino

    torch.set_num_threads(args.threads)
    runtime.set_num_threads(args.threads)
    if args.isa:
        runtime.set_isa(args.isa)
    x = bench.normalized_images(np.random.default_rng(args.seed), args.batch)
    model = bench.binary_resnet18(torch.Generator().manual_seed(args.seed), args.scaling)
    with tempfile.TemporaryDirectory(prefix="profile-layers-") as tmp:
        path = export_model(model, os.path.join(tmp, "resnet18-binary.xnor"), input_size=(bench.SIZE, bench.SIZE),
                            dataset="imagenet")
        packed = runtime.load(path)
        compiled = bench.ov_compile(ov.Core(), str(to_openvino(path, tmp)), args.threads, args.batch,
                                    perf_count=True)
    request = compiled.create_infer_request()
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    for name, out in (("xnorpp", packed(x)), ("OpenVINO", request.infer({0: x})[compiled.output(0)])):
        rel, agree = bench.compare(out, reference)
        print(f"{name}: output within {rel:.1e} of PyTorch's (max |difference| / max |logit|), top-1 "
              f"{int(agree.sum())}/{len(agree)}", file=sys.stderr)

    steps = packed.steps
    step_of = {node.name: index for index, step in enumerate(steps) for node in step.nodes}
    stepped = step_timer(packed)
    xnorpp_rounds, openvino_rounds, whole = [], [], {"xnorpp": [], "openvino": []}
    for r in range(args.warmup + args.rounds):
        per_step = stepped(x)
        start = time.perf_counter()
        packed(x)
        xnorpp_call = time.perf_counter() - start
        start = time.perf_counter()
        request.infer({0: x}, share_inputs=True)
        openvino_call = time.perf_counter() - start
        if r >= args.warmup:
            xnorpp_rounds.append(per_step)
            openvino_rounds.append(openvino_times(request.get_profiling_info()))
            whole["xnorpp"].append(xnorpp_call)
            whole["openvino"].append(openvino_call)

    xnorpp_s = [statistics.median(r[i] for r in xnorpp_rounds) for i in range(len(steps))]
    openvino = {i: {"seconds": 0.0, "kinds": []} for i in [*range(len(steps)), None]}  # by step; None: OTHER
    for name, (kind, _) in openvino_rounds[0].items():
        index = step_of.get(name.split("/")[0])  # the packed node it is named after, and its step
        openvino[index]["seconds"] += statistics.median(r[name][1] for r in openvino_rounds)
        openvino[index]["kinds"].append(kind)
    totals = {k: statistics.median(v) for k, v in whole.items()}
    print(f"CPU: {cpu_model()}; xnorpp {packed.isa}, OpenVINO {ov.__version__.split('-')[0]}; binary ResNet-18 "
          f"({args.scaling}), {bench.SIZE}×{bench.SIZE}, batch {args.batch}, {args.threads} thread(s); medians of "
          f"{args.rounds} rounds after {args.warmup} warm-up. OpenVINO with PERF_COUNT (its counters' own cost "
          "is in its whole call).\n")
    print(table(steps, xnorpp_s, openvino, totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
