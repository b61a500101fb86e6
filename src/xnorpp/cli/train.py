"""``xnorpp train``: train a binary (or float) network with a named recipe; see ``xnorpp.train.train``."""

from __future__ import annotations

import argparse
import os

from . import add_model_opt, parse_model_opts


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model (single process, or DDP under torchrun)",
        description="Train a model with a named recipe. Every run gets a folder with config.json, metrics.csv, "
                    "tb/ (TensorBoard), checkpoint.pt (each epoch), model.pt and result.json. "
                    "Distributed: torchrun --nproc-per-node N -m xnorpp train ... (gloo on CPU, NCCL on GPU). "
                    "Options left out take the recipe's value (see --list).")
    p.add_argument("--model", default=None, help="model name (default fmnist-net; see --list)")
    p.add_argument("--dataset", default=None, help="data set (default fashion-mnist; see --list)")
    p.add_argument("--scaling", default=None, help="scaling of the binary layers (default gamma-o-h-w)")
    p.add_argument("--recipe", default=None, help="xnorpp-paper, bnn-two-step or fast-cpu (default xnorpp-paper)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None, help="on conv/linear weights only")
    p.add_argument("--clip-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="clamp binary layers' latent weights to [-1, 1] after each step")
    p.add_argument("--ste", default=None, help="pseudo-gradient of sign: clipped, approx, identity")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="training augmentation (random crop, flip where the data set allows)")
    p.add_argument("--label-smoothing", type=float, default=None)
    add_model_opt(p)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data-root", default=None, help="folder with the data set's files")
    p.add_argument("--out-dir", default=None, help="parent of new run folders (default runs)")
    p.add_argument("--run-dir", default=None, help="exact run folder (default: OUT_DIR/<time>-<dataset>-<model>-...)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint with its saved settings")
    p.add_argument("--stop-after", type=int, default=None, help="stop this invocation after N epochs (resumable)")
    p.add_argument("--train-subset", type=int, default=None, help="train on the first N images only")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (folder data sets)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: when the run has enough steps to gain)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision on CUDA")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="on CUDA")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--list", action="store_true", help="list models, data sets, recipes and scalings, then exit")
    p.set_defaults(func=run)


FIELDS = ("model", "dataset", "scaling", "recipe", "epochs", "batch_size", "lr", "weight_decay", "clip_weights",
          "ste", "augment", "label_smoothing", "seed", "data_root", "out_dir", "run_dir", "stop_after",
          "train_subset", "workers", "device", "threads", "compile", "amp", "channels_last", "progress", "tensorboard")
# Settings a resumed run may change: how it runs, not what it computes.
RESUME_OVERRIDES = ("stop_after", "workers", "device", "threads", "compile", "progress", "tensorboard", "data_root")


def print_lists() -> None:
    from ..data import DATASETS
    from ..models import list_models
    from ..scaling import SCALINGS
    from ..train import RECIPES
    print("models:   " + ", ".join(list_models()))
    print("data sets:")
    for d in DATASETS.values():
        print(f"  {d.name:<14} {d.description}")
    print("recipes:")
    for r in RECIPES.values():
        print(f"  {r.name:<14} {r.description} [defaults: {r.epochs} epochs, batch {r.batch_size}, lr {r.lr:g}, "
              f"weight decay {r.weight_decay:g}]")
    print("scalings: " + ", ".join(SCALINGS))


def run(args) -> int:
    from ..train import TrainConfig, load_config, train
    if args.list:
        print_lists()
        return 0
    given = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    opts = parse_model_opts(args.model_opt)
    if args.resume:
        config = load_config(args.resume)
        blocked = sorted(k for k in given if k not in RESUME_OVERRIDES) + (["model_opt"] if opts else [])
        if blocked:
            raise ValueError(f"--resume reuses the run's saved settings; these cannot change: "
                             f"{', '.join(blocked)} (allowed: {', '.join(RESUME_OVERRIDES)})")
        for k, v in given.items():
            setattr(config, k, v)
        config.run_dir, config.resume = args.resume, True
    else:
        config = TrainConfig(**given, model_opts=opts)
    result = train(config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    state = "finished" if result.finished else "stopped (resume with --resume)"
    print(f"{state}: test top-1 {result.test_top1:.2f}%, top-5 {result.test_top5:.2f}%, best top-1 "
          f"{result.best_top1:.2f}%, {result.train_time_s:.0f} s training, {result.params:,} parameters")
    print(f"run folder: {result.run_dir}")
    return 0
