"""``xnorpp compare``: train one architecture with each scaling and tabulate accuracy and approximation."""

from __future__ import annotations

import argparse

from ..scaling import SCALINGS
from . import add_deprecated, add_model_opt, parse_model_opts


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="train one model with each scaling × seed, write comparison.md/.json",
        description="Train the same architecture with each scaling under one recipe and budget, each run in "
                    "its own sub-folder of OUT_DIR; finished runs are skipped and interrupted ones resume. "
                    "Writes comparison.json and comparison.md (test accuracy mean ± std over seeds, learned "
                    "parameters, training time, approximation error). Then: `xnorpp report OUT_DIR`.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="comparison folder (created or resumed)")
    p.add_argument("--model", default="fmnist-net", help="binary model name (default: fmnist-net)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    p.add_argument("--scalings", nargs="+", metavar="S",  # None: the library's DEFAULT_SCALINGS (all)
                   help=f"scalings to train (default: all); valid: {', '.join(list(SCALINGS) + ['float'])}")
    p.add_argument("--seeds", "--seed", nargs="+", type=int, default=[0], metavar="N", help="seeds (default: 0)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--recipe", help="training recipe (default: the trainer's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--workers", type=int)
    p.add_argument("--device")
    p.add_argument("--threads", type=int, help="torch threads per run (1 is fastest on a busy shared machine)")
    p.add_argument("--train-subset", type=int, metavar="N", help="train on the first N images only (quick budget)")
    add_model_opt(p)
    add_deprecated(p, "--model-opts", "--model-opt KEY=VALUE", dest="model_opt", convert=_json_to_model_opts)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs of background runs)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile each run's training step (default: as `xnorpp train` decides)")
    p.add_argument("--approx-images", type=int, default=256,
                   help="held-out images for the approximation error (default: 256)")
    p.set_defaults(func=run)


def _json_to_model_opts(text: str) -> list[str]:
    """The deprecated ``--model-opts '{"width": 32}'`` as ``--model-opt`` items."""
    import json
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-opts is not valid JSON ({err}): {text!r}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"--model-opts must be a JSON object, got {text!r}")
    return [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items()]


def run(args) -> int:
    import shlex
    import sys

    from ..analysis import DEFAULT_SCALINGS, compare

    options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("data_root", args.data_root),
                                 ("workers", args.workers), ("device", args.device), ("threads", args.threads),
                                 ("compile", args.compile),
                                 ("train_subset", args.train_subset)) if v is not None}
    if args.model_opt:
        options["model_opts"] = parse_model_opts(args.model_opt)
    if args.no_progress:
        options["progress"] = False
    scalings = args.scalings or list(DEFAULT_SCALINGS)
    result = compare(args.out_dir, model=args.model, dataset=args.dataset, scalings=scalings, seeds=args.seeds,
                     epochs=args.epochs, recipe=args.recipe, approx_images=args.approx_images,
                     command="xnorpp " + " ".join(shlex.quote(a) for a in sys.argv[1:]), **options)
    print(result.markdown())
    return 0
