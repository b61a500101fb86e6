"""End to end: binary ResNet-18 at 224×224, batch 1, packed runtime vs the same architecture
in PyTorch float32 eager; and the file sizes (packed .xnor vs float checkpoint).

Usage: python benchmarks/bench_resnet18.py [--update-readme] [--quick]

Each instruction-set path and thread count runs in its own subprocess (XNORPP_ISA and the
BLAS/OpenMP thread variables are read once at start); each ratio compares timings taken in
the same subprocess. Weights are random (speed and size do not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_times, machine, run_child, set_threads_env, update_readme  # noqa: E402


def child(isa: str, threads: int, quick: bool) -> dict:
    set_threads_env(threads)
    import numpy as np
    import torch

    from xnorpp import runtime
    from xnorpp.export import export_model, float_checkpoint_bytes
    from xnorpp.models import create

    torch.set_num_threads(threads)
    runtime.set_num_threads(threads)
    repeat = 3 if quick else 15
    torch.manual_seed(0)
    binary = create("resnet18", num_classes=1000, in_channels=3, input_size=(224, 224), scaling="gamma-o-h-w").eval()
    floatm = create("float-resnet18", num_classes=1000, in_channels=3, input_size=(224, 224)).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    xt = torch.from_numpy(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(binary, os.path.join(tmp, "resnet18.xnor"), input_size=(224, 224))
        packed_bytes = os.path.getsize(path)
        packed = runtime.load(path)
        with torch.no_grad():
            t_float, t_binary_torch, t_packed = best_times([lambda: floatm(xt), lambda: binary(xt),
                                                            lambda: packed(x)], repeat)
        with torch.no_grad():
            ref = binary(xt).numpy()
        got = packed(x)
    return {"isa": packed.isa, "threads": threads, "float_ms": 1e3 * t_float,
            "binary_torch_ms": 1e3 * t_binary_torch, "packed_ms": 1e3 * t_packed,
            "speedup_vs_float": t_float / t_packed, "speedup_vs_binary_torch": t_binary_torch / t_packed,
            "packed_bytes": packed_bytes, "float_checkpoint_bytes": float_checkpoint_bytes(floatm),
            "binary_checkpoint_bytes": float_checkpoint_bytes(binary),
            "max_logit_rel_diff": float(np.abs(got - ref).max() / np.abs(ref).max()), "torch": torch.__version__}


def table(results: list[dict]) -> str:
    lines = ["| ISA | threads | PyTorch fp32 ResNet-18 (ms) | binary ResNet-18 in PyTorch (ms) | packed runtime (ms) "
             "| speed-up vs fp32 |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['isa']} | {r['threads']} | {r['float_ms']:.1f} | {r['binary_torch_ms']:.1f} | "
                     f"{r['packed_ms']:.1f} | **{r['speedup_vs_float']:.1f}×** |")
    r = results[0]
    mib = 1024 * 1024
    lines += ["", "| file | size (MiB) | ratio |", "|---|---|---|",
              f"| float32 ResNet-18 checkpoint (state_dict, torch.save) | {r['float_checkpoint_bytes'] / mib:.2f} | 1× |",
              f"| binary ResNet-18, float checkpoint (latent weights) | {r['binary_checkpoint_bytes'] / mib:.2f} | "
              f"{r['float_checkpoint_bytes'] / r['binary_checkpoint_bytes']:.2f}× |",
              f"| binary ResNet-18, packed `.xnor` (1 bit per binary weight) | {r['packed_bytes'] / mib:.2f} | "
              f"**{r['float_checkpoint_bytes'] / r['packed_bytes']:.1f}× smaller** |",
              "", f"Packed logits vs the binary model in PyTorch: max relative difference "
                  f"{max(x['max_logit_rel_diff'] for x in results):.1e}."]
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

    results = []
    for isa in args.isa or list(_core.supported_isas()):
        for threads in sorted({1, os.cpu_count() or 1}):
            out = run_child(__file__, ["--child", isa, str(threads)] + (["--quick"] if args.quick else []),
                            {"XNORPP_ISA": isa})
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(f"done: {isa}, {threads} thread(s)", file=sys.stderr)
    text = (f"Machine: {machine()}; PyTorch {results[0]['torch']}. Batch 1, 224×224, best of N runs.\n\n"
            + table(results))
    print(text)
    if args.update_readme:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), "bench-resnet18", text)


if __name__ == "__main__":
    main()
