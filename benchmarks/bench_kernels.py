"""Per-layer benchmark: packed binary 3×3 conv vs torch.nn.functional.conv2d float32, and the
binary GEMM inner loop as a fraction of the 341 binary MACs/cycle/core ceiling.

Usage: python benchmarks/bench_kernels.py [--update-readme] [--quick]

Each instruction-set path and thread count runs in its own subprocess (XNORPP_ISA and the
thread variables are read once at start), and every ratio compares timings of the same
subprocess: packed and float on the same machine, same threads, best of N runs.
The packed time includes packing the float input, the exact zero-padding correction and
the fused output stage (γ_o·β_h·γ_w scale, bias, PReLU) to float NHWC output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_time, best_times, machine, run_child, set_threads_env, update_readme  # noqa: E402

# (name, H=W of input, in channels, out channels, stride): ResNet-18's 3×3 layers at 224×224.
LAYERS = [("conv2_x 56×56×64", 56, 64, 64, 1), ("conv3_x 28×28×128", 28, 128, 128, 1),
          ("conv4_x 14×14×256", 14, 256, 256, 1), ("conv5_x 7×7×512", 7, 512, 512, 1),
          ("conv3_1 stride 2, 56×56×64→128", 56, 64, 128, 2)]
CEILING = 341.0  # binary MACs / cycle / core of AVX-512 VPOPCNTDQ: 512 bits per 1.5 cycles


def child(isa: str, threads: int, quick: bool) -> dict:
    set_threads_env(threads)
    import numpy as np
    import torch
    import torch.nn.functional as F

    from xnorpp import _core

    torch.set_num_threads(threads)
    _core.set_num_threads(threads)
    repeat = 5 if quick else 30
    rng = np.random.default_rng(0)
    rows = []
    for name, hw, c, o, stride in LAYERS:
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        oh = (hw + 2 - 3) // stride + 1
        conv = _core.BinaryConv(_core.pack_weights(w), c, 1, (stride, stride), (1, 1, 1, 1), (1, 1), 0.0,
                                scale_map=rng.uniform(0.5, 1.5, (oh, oh, o)).astype(np.float32),
                                bias=rng.standard_normal(o).astype(np.float32),
                                slope=np.full(o, 0.25, np.float32))
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        with torch.no_grad():
            t_float, t_packed = best_times([lambda: F.conv2d(xt, wt, None, stride, 1),
                                            lambda: conv.forward(_core.pack(x_nhwc))], repeat)
        macs = oh * oh * o * c * 9
        rows.append({"layer": name, "float_ms": 1e3 * t_float, "packed_ms": 1e3 * t_packed,
                     "ratio": t_float / t_packed, "packed_gmacs": macs / t_packed / 1e9})
    # GEMM inner loop: a 1×1 conv of 768 pixels × 2048 input channels × 512 outputs, int32 output.
    a = rng.standard_normal((768, 2048)).astype(np.float32)
    b = rng.standard_normal((512, 2048)).astype(np.float32)
    gemm = _core.BinaryConv(_core.pack_weights(b), 2048)
    ap = _core.pack(a)
    t_gemm = best_time(lambda: gemm.forward(ap, None, "int32"), repeat, min_time=0.5)
    hz = _core.estimate_cpu_hz()
    macs_per_cycle = 768 * 2048 * 512 / t_gemm / hz / threads
    return {"isa": _core.isa(), "threads": threads, "layers": rows, "gemm_gmacs": 768 * 2048 * 512 / t_gemm / 1e9,
            "cpu_ghz": hz / 1e9, "gemm_macs_per_cycle_per_core": macs_per_cycle,
            "gemm_fraction_of_ceiling": macs_per_cycle / CEILING, "torch": torch.__version__}


def table(results: list[dict]) -> str:
    lines = ["| ISA | threads | layer | PyTorch fp32 (ms) | packed (ms) | speed-up | packed GMAC/s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["layers"]:
            lines.append(f"| {r['isa']} | {r['threads']} | {row['layer']} | {row['float_ms']:.3f} | "
                         f"{row['packed_ms']:.3f} | **{row['ratio']:.1f}×** | {row['packed_gmacs']:.0f} |")
    lines += ["", "| ISA | threads | GEMM GMAC/s | clock (GHz, measured) | binary MACs/cycle/core | % of 341 ceiling |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['isa']} | {r['threads']} | {r['gemm_gmacs']:.0f} | {r['cpu_ghz']:.2f} | "
                     f"{r['gemm_macs_per_cycle_per_core']:.0f} | {100 * r['gemm_fraction_of_ceiling']:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--isa", nargs="*", help="paths to run (default: every one this CPU supports)")
    parser.add_argument("--child", nargs=2, metavar=("ISA", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.quick)))
        return
    from xnorpp import _core

    isas = args.isa or list(_core.supported_isas())
    results = []
    for isa in isas:
        for threads in sorted({1, os.cpu_count() or 1}):
            out = run_child(__file__, ["--child", isa, str(threads)] + (["--quick"] if args.quick else []),
                            {"XNORPP_ISA": isa})
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(f"done: {isa}, {threads} thread(s)", file=sys.stderr)
    text = (f"Machine: {machine()}; PyTorch {results[0]['torch']}. Batch 1, best of N runs, "
            f"ratios from one run.\n\n" + table(results))
    print(text)
    if args.update_readme:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), "bench-kernels", text)


if __name__ == "__main__":
    main()
