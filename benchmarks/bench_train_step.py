"""Training step of a binary network against its float twin (and the authors' `bnn` library when installed).

One step = forward, cross-entropy, backward and Adam on one batch. Each thread count runs in its own
process (thread pools read their size once); inside it every candidate is timed in interleaved rounds
(the starting candidate rotated each round), so a slow spell of the shared machine hits all alike.
Reported per candidate: min and median seconds per step, and the paired median ratio to xnorpp's float
twin in eager mode (above 1: slower than float). Compile time (the warm-up) is printed apart.

    python benchmarks/bench_train_step.py                      # both models, 1 and 2 threads, eager and compiled
    python benchmarks/bench_train_step.py --threads 1 --no-compile --rounds 5
    python benchmarks/bench_train_step.py --update-readme      # also rewrite the table in benchmarks/README.md

Models: ResNet-18 with the ImageNet stem at 64×64, batch 32 (XNOR-Net++'s network at a size a CPU can
train), and fmnist-net (width 32) at 28×28, batch 128 (the demo's network).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (cpu_model, interleaved_rounds, paired_median_ratio, run_child, set_threads_env,  # noqa: E402
                    update_readme)

MODELS = {  # name -> (xnorpp model, options, (channels, size), batch, classes)
    "resnet18": ("resnet18", {"stem": "imagenet"}, (3, 64), 32, 100),
    "fmnist-net": ("fmnist-net", {"width": 32}, (1, 28), 128, 10),
}


def _xnorpp_model(name: str, binary: bool):
    from xnorpp.models import create

    model, opts, (channels, size), _, classes = MODELS[name]
    return create(model if binary else f"float-{model}", num_classes=classes, in_channels=channels,
                  input_size=size, **opts)


def _bnn_model(name: str):
    """The authors' binary ResNet-18 (PreBasicBlock, PReLU; real stem, classifier and shortcuts), or None."""
    if name != "resnet18":
        return None
    try:
        from bnn import BConfig, Identity, prepare_binary_model
        from bnn.models.layers import PreBasicBlock
        from bnn.models.resnet import resnet18
        from bnn.ops import BasicInputBinarizer, XNORWeightBinarizer
    except ImportError:
        return None
    import torch.nn as nn

    model = resnet18(block_type=PreBasicBlock, activation=nn.PReLU, num_classes=MODELS[name][4])
    config = BConfig(activation_pre_process=BasicInputBinarizer, activation_post_process=Identity,
                     weight_pre_process=XNORWeightBinarizer.with_args(center_weights=True))
    return prepare_binary_model(model, config, custom_config_layers_name={
        "conv1": BConfig(), "fc": BConfig(), "$.*downsample.*$": BConfig()})


def _step_fn(model, x, y, compiled: bool):
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    net = torch.compile(model) if compiled else model

    def step():
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def child(args) -> None:
    """Time every candidate of every model at this process's thread count; print JSON."""
    import torch

    torch.set_num_threads(args.threads[0])
    out = {}
    for name in args.models:
        _, _, (channels, size), batch, classes = MODELS[name]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, channels, size, size, generator=g)
        y = torch.randint(0, classes, (batch,), generator=g)
        candidates = {"xnorpp binary": _xnorpp_model(name, True), "xnorpp float twin": _xnorpp_model(name, False)}
        bnn = _bnn_model(name)
        if bnn is not None:
            candidates["bnn (authors) binary"] = bnn
        steps, warmup = {}, {}
        for label, model in list(candidates.items()):
            modes = [("eager", False)] + ([("compiled", True)] if args.compile and label.startswith("xnorpp") else [])
            for mode, compiled in modes:
                torch.manual_seed(0)
                fresh = model if not compiled else (_xnorpp_model(name, "binary" in label))
                step = _step_fn(fresh, x, y, compiled)
                t = time.perf_counter()
                step()  # the first step compiles
                warmup[f"{label}, {mode}"] = time.perf_counter() - t
                steps[f"{label}, {mode}"] = step
        labels = list(steps)
        wall, _ = interleaved_rounds([steps[k] for k in labels], rounds=args.rounds, warmup=1)
        out[name] = {"labels": labels, "wall": wall, "first_step_s": warmup}
    print(json.dumps(out))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the torch.compile'd step")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    lines = [f"Training step, {cpu_model()}, {time.strftime('%Y-%m-%d')}; {args.rounds} interleaved rounds; "
             "ratio = paired median of (candidate ÷ xnorpp float twin, eager), below 1.15 is the target for "
             "the binary step", "",
             "| model | threads | candidate | min s/step | median s/step | ratio to float (eager) | first step s |",
             "|---|---|---|---|---|---|---|"]
    for threads in args.threads:
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        child_args = ["--child", "--threads", str(threads), "--rounds", str(args.rounds), "--models", *args.models,
                      "--compile" if args.compile else "--no-compile"]
        result = json.loads(run_child(os.path.abspath(__file__), child_args, env).strip().splitlines()[-1])
        for name, r in result.items():
            base = r["labels"].index("xnorpp float twin, eager")
            for i, label in enumerate(r["labels"]):
                times = [w[i] for w in r["wall"]]
                lines.append(f"| {name} | {threads} | {label} | {min(times):.3f} | {statistics.median(times):.3f} | "
                             f"{paired_median_ratio(r['wall'], i, base):.2f}× | {r['first_step_s'][label]:.1f} |")
            print("\n".join(lines[-len(r['labels']):]), flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.update_readme:
        update_readme(os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"), "bench-train-step", text)
    return 0


if __name__ == "__main__":
    set_threads_env(int(sys.argv[sys.argv.index("--threads") + 1]) if "--child" in sys.argv else 1)
    sys.exit(main())
