"""Per-layer benchmark: packed binary 3×3 conv vs torch.nn.functional.conv2d float32, and the
binary GEMM inner loop as a fraction of the 341 binary MACs/cycle/core ceiling.

Usage: python benchmarks/bench_kernels.py [--update-readme] [--quick] [--isa avx2] [--engines-isa avx2]

Each instruction-set path and thread count runs in its own subprocess (XNORPP_ISA and the
thread variables are read once at start), and every ratio compares timings of the same
subprocess in interleaved rounds: the median of the per-round ratios is reported.
With 1 thread both sides run on the calling thread and are timed with its CPU clock
(time.thread_time: another job on a shared core does not count); with more threads, wall time.
In the all-threads subprocess the packed layer is also timed on 1 thread in the same rounds
(the pool is kept, so switching costs nothing): "threads/1" is that speed-up at batch 1.
The packed time includes packing the float input, the exact zero-padding correction and
the fused output stage ((γ_o·β_h)·γ_w scale, as the runtime gets gamma-o-h-w: per row and per position;
bias, PReLU) to float NHWC output. ``--engines-isa avx2`` caps PyTorch at AVX2 (common.ENGINE_ISA_CAPS), as
it runs on a CPU without AVX-512.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from statistics import median

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ENGINE_ISA_CAPS, ENGINE_ISAS, best_time, machine, run_child, set_threads_env,  # noqa: E402
                    update_readme)

# (name, H=W of input, in channels, out channels, stride): ResNet-18's 3×3 layers at 224×224.
LAYERS = [("conv2_x 56×56×64", 56, 64, 64, 1), ("conv3_x 28×28×128", 28, 128, 128, 1),
          ("conv4_x 14×14×256", 14, 256, 256, 1), ("conv5_x 7×7×512", 7, 512, 512, 1),
          ("conv3_1 stride 2, 56×56×64→128", 56, 64, 128, 2),
          ("conv4_1 stride 2, 28×28×128→256", 28, 128, 256, 2),
          ("conv5_1 stride 2, 14×14×256→512", 14, 256, 512, 2)]


def rounds(fns, repeat: int, clock, warmup: int = 3) -> list[list[float]]:
    """Times of each fn in interleaved rounds (one call of each per round): times[i][round]."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = clock()
            fn()
            times[i].append(clock() - t)
    return times




CEILING = 341.0  # binary MACs / cycle / core of AVX-512 VPOPCNTDQ: 512 bits per 1.5 cycles


def child(isa: str, threads: int, quick: bool) -> dict:
    set_threads_env(threads)
    import numpy as np
    import torch
    import torch.nn.functional as F

    from xnorpp import _core
    from xnorpp.packed.bits import weight_words

    torch.set_num_threads(threads)
    _core.set_num_threads(threads)
    repeat = 5 if quick else 30
    rng = np.random.default_rng(0)
    clock = time.thread_time if threads == 1 else time.perf_counter
    rows = []
    for name, hw, c, o, stride in LAYERS:
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        oh = (hw + 2 - 3) // stride + 1
        conv = _core.BinaryConv(weight_words(w), c, (hw, hw), (oh, oh), 1, (stride, stride), (1, 1, 1, 1),
                                scale_rows=rng.uniform(0.5, 1.5, (oh, o)).astype(np.float32),  # γ_o·β_h
                                scale_pos=rng.uniform(0.5, 1.5, (oh, oh)).astype(np.float32),  # γ_w
                                bias=rng.standard_normal(o).astype(np.float32),
                                slope=np.full(o, 0.25, np.float32))
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

        def packed_on(n):
            def run():
                _core.set_num_threads(n)
                conv.forward(_core.pack(x_nhwc))
            return run

        fns = [lambda: F.conv2d(xt, wt, None, stride, 1), packed_on(threads)]
        if threads > 1:
            fns.append(packed_on(1))
        with torch.no_grad():
            times = rounds(fns, repeat, clock)
        _core.set_num_threads(threads)
        macs = oh * oh * o * c * 9
        t_float, t_packed = min(times[0]), min(times[1])
        row = {"layer": name, "float_ms": 1e3 * t_float, "packed_ms": 1e3 * t_packed,
               "ratio": median(a / b for a, b in zip(times[0], times[1])), "packed_gmacs": macs / t_packed / 1e9}
        if threads > 1:
            row["threads_over_1"] = median(a / b for a, b in zip(times[2], times[1]))
        rows.append(row)
    # GEMM inner loop: a 1×1 conv of 768 pixels × 2048 input channels × 512 outputs, int32 output.
    a = rng.standard_normal((768, 2048)).astype(np.float32)
    b = rng.standard_normal((512, 2048)).astype(np.float32)
    gemm = _core.BinaryConv(weight_words(b), 2048, (1, 1), (1, 1))
    ap = _core.pack(a)
    t_gemm = best_time(lambda: gemm.forward(ap, None, _core.Output.int32), repeat, min_time=0.5)
    hz = _core.estimate_cpu_hz()
    macs_per_cycle = 768 * 2048 * 512 / t_gemm / hz / threads
    return {"isa": _core.isa(), "threads": threads, "layers": rows, "gemm_gmacs": 768 * 2048 * 512 / t_gemm / 1e9,
            "cpu_ghz": hz / 1e9, "gemm_macs_per_cycle_per_core": macs_per_cycle,
            "gemm_fraction_of_ceiling": macs_per_cycle / CEILING, "torch": torch.__version__,
            "torch_isa": torch.backends.cpu.get_cpu_capability()}


def table(results: list[dict]) -> str:
    lines = ["| ISA | threads | layer | PyTorch fp32 (ms) | packed (ms) | speed-up (median) | packed GMAC/s | "
             "threads/1 |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["layers"]:
            over = f"{row['threads_over_1']:.2f}×" if "threads_over_1" in row else ""
            lines.append(f"| {r['isa']} | {r['threads']} | {row['layer']} | {row['float_ms']:.3f} | "
                         f"{row['packed_ms']:.3f} | **{row['ratio']:.1f}×** | {row['packed_gmacs']:.0f} | {over} |")
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
    parser.add_argument("--engines-isa", choices=ENGINE_ISAS, default="native",
                        help="cap PyTorch's kernels at this ISA, as on a CPU without AVX-512 (default: native)")
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
                            {"XNORPP_ISA": isa, **ENGINE_ISA_CAPS.get(args.engines_isa, {})})
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(f"done: {isa}, {threads} thread(s)", file=sys.stderr)
    text = (f"Machine: {machine()}; PyTorch {results[0]['torch']} (its kernels at {results[0]['torch_isa']}"
            + (", capped" if args.engines_isa != "native" else "") + "). Batch 1; times: best of N interleaved "
            f"rounds; speed-ups: median of the per-round ratios.\n\n" + table(results))
    print(text)
    if args.update_readme:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), "bench-kernels", text)


if __name__ == "__main__":
    main()
