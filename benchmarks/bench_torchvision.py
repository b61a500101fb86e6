"""Converted torchvision models in the packed runtime against their float originals, and grouped binary convs.

Usage: python benchmarks/bench_torchvision.py [--models mobilenet_v2 densenet121] [--rounds 20] [--update-readme]

* Models: ``xnorpp.convert(torchvision.models.NAME(weights=None), scaling="gamma-o", input_size=(224, 224))``
  (every conv and linear binary but the first and last), exported and run by ``xnorpp.runtime``, against the
  float original in PyTorch eager fp32 and in ONNX Runtime fp32 (exported by ``bench_engines.export_onnx``).
  224×224, batch 1, 1 thread, interleaved rounds (``common.interleaved_rounds``): min and median wall time
  and the paired median ratio (candidate time / packed time in the same round).
* Grouped binary 3×3 convs (ResNeXt's and RegNet's groups, depthwise) against the dense one of the same
  channels and size: a one-layer packed model each, time per binary multiply-accumulate on every ISA path
  (packing, the output stage and the NCHW/NHWC transposes of a model call included), 1 thread,
  interleaved rounds. Groups of at most ``runtime.kernels.SMALL_GROUP`` channels run as a real grouped
  or depthwise conv of the ±1 signs (exact); larger ones in the packed XNOR-popcount kernel.

Weights are random (speed does not depend on them); batch-norm statistics and factors are randomized
(``bench_engines.randomize``). The table is printed and, with --update-readme, written into
benchmarks/README.md between the bench-torchvision markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_model, interleaved_rounds, paired_median_ratio, set_threads_env, update_readme  # noqa: E402

set_threads_env(1)

import numpy as np  # noqa: E402
import torch  # noqa: E402

SIZE = 224
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
# (label, channels, groups) of 3×3 binary convs on 28×28 inputs, stride 1, padding 1
GROUPED = [("dense", 128, 1), ("groups of 64", 128, 2), ("RegNet groups of 16", 128, 8),
           ("groups of 8", 128, 16), ("ResNeXt 32 groups of 4", 128, 32), ("groups of 2", 128, 64),
           ("depthwise", 128, 128)]


def models_table(names: list[str], rounds: int) -> list[str]:
    import torchvision

    import xnorpp
    from bench_engines import export_onnx, ort_session, randomize
    from xnorpp import runtime
    from xnorpp.export import export_model

    torch.set_num_threads(1)
    lines = ["| model (224×224, batch 1, 1 thread) | packed binary | PyTorch eager fp32 | ONNX Runtime fp32 |",
             "|---|---|---|---|"]
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    xt = torch.from_numpy(x)
    for name in names:
        gen = torch.Generator().manual_seed(0)
        original = randomize(getattr(torchvision.models, name)(weights=None), gen)
        binary = randomize(xnorpp.convert(original, scaling="gamma-o", input_size=(SIZE, SIZE)), gen)
        with tempfile.TemporaryDirectory() as tmp:
            packed = runtime.load(export_model(binary, os.path.join(tmp, "m.xnor"), input_size=(SIZE, SIZE)))
            onnx_path = os.path.join(tmp, "m.onnx")
            export_onnx(original, onnx_path)
            session = ort_session(onnx_path, threads=1, batch=1, spin=False)
            with torch.inference_mode():
                expect = binary(xt).numpy()
            got = packed(x)
            assert got.argmax() == expect.argmax(), f"{name}: packed and PyTorch disagree"

            def eager():
                with torch.inference_mode():
                    return original(xt)

            fns = [lambda: packed(x), eager, lambda: session.run(None, {"input": x})]
            wall, _ = interleaved_rounds(fns, rounds=rounds)
        cells = []
        for i in range(3):
            times = [w[i] * 1e3 for w in wall]
            cell = f"{min(times):.1f} / {statistics.median(times):.1f} ms"
            if i:
                cell += f" (**{paired_median_ratio(wall, i, 0):.2f}×** packed)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def grouped_table(rounds: int) -> list[str]:
    from torch import nn

    from xnorpp import _core, runtime
    from xnorpp.export import export_model
    from xnorpp.nn import BinaryConv2d

    isas = _core.supported_isas()
    lines = ["| 3×3 binary conv, 28×28, 128→128 channels | " + " | ".join(
        f"{isa}: ns per 1000 MACs (÷ dense)" for isa in isas) + " |", "|---|" + "---|" * len(isas)]
    h = w = 28
    x = np.random.default_rng(0).standard_normal((1, 128, h, w)).astype(np.float32)
    rows = {label: [] for label, _, _ in GROUPED}
    previous = _core.isa()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths, macs = [], []
            for label, c, g in GROUPED:
                layer = BinaryConv2d(c, c, 3, padding=1, groups=g, scaling="gamma-o")
                paths.append(export_model(nn.Sequential(layer).eval(), os.path.join(tmp, f"{g}.xnor"),
                                          input_size=(h, w)))
                macs.append(h * w * c * (c // g) * 9)
            for isa in isas:
                _core.set_isa(isa)
                models = [runtime.load(p) for p in paths]
                wall, _ = interleaved_rounds([lambda m=m: m(x) for m in models], rounds=rounds)
                for i, (label, _, _) in enumerate(GROUPED):
                    per = min(r[i] for r in wall) / macs[i] * 1e12
                    ratio = statistics.median(r[i] / macs[i] / (r[0] / macs[0]) for r in wall)
                    rows[label].append(f"{per:.2f} ({ratio:.2f}×)")
    finally:
        _core.set_isa(previous)
    for label, c, g in GROUPED:
        lines.append(f"| {label} (groups {g}, {c // g} channels each) | " + " | ".join(rows[label]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "densenet121"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-grouped", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    from xnorpp import _core

    load = os.getloadavg()
    lines = [f"{cpu_model()}; packed models on the {_core.isa()} path; load average before the run "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; min / median of {args.rounds} interleaved rounds.", ""]
    lines += models_table(args.models, args.rounds)
    if not args.skip_grouped:
        lines += ["", "Per MAC, min of the rounds; in parentheses the median over rounds of (grouped ÷ dense) time "
                  "per MAC, above 1: slower per MAC than dense.", ""] + grouped_table(args.rounds)
    text = "\n".join(lines)
    print(text)
    if args.update_readme:
        update_readme(README, "bench-torchvision", text)


if __name__ == "__main__":
    main()
