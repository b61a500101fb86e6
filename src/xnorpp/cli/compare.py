"""``xnorpp compare``: train one architecture with each scaling and tabulate accuracy and approximation."""

from __future__ import annotations

from ..scaling import SCALINGS


def register(subparsers) -> None:
    from ..analysis.compare import DEFAULT_SCALINGS

    p = subparsers.add_parser(
        "compare", help="train one model with each scaling × seed, write comparison.md/.json",
        description="Train the same architecture with each scaling under one recipe and budget, each run in "
                    "its own sub-folder of OUT_DIR; finished runs are skipped and interrupted ones resume. "
                    "Writes comparison.json and comparison.md (test accuracy mean ± std over seeds, learned "
                    "parameters, training time, approximation error). Then: `xnorpp report OUT_DIR`.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="comparison folder (created or resumed)")
    p.add_argument("--model", default="fmnist-net", help="binary model name (default: fmnist-net)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    p.add_argument("--scalings", nargs="+", default=list(DEFAULT_SCALINGS), metavar="S",
                   help=f"scalings to train (default: all); valid: {', '.join(list(SCALINGS) + ['float'])}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="N", help="seeds (default: 0)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--recipe", help="training recipe (default: the trainer's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--workers", type=int)
    p.add_argument("--device")
    p.add_argument("--approx-images", type=int, default=256,
                   help="held-out images for the approximation error (default: 256)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        return _run(args)
    except ValueError as err:  # bad input: a clear message, no traceback
        raise SystemExit(f"xnorpp compare: {err}") from None


def _run(args) -> int:
    import shlex
    import sys

    from ..analysis import compare

    options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("data_root", args.data_root),
                                 ("workers", args.workers), ("device", args.device)) if v is not None}
    result = compare(args.out_dir, model=args.model, dataset=args.dataset, scalings=args.scalings,
                     seeds=args.seeds, epochs=args.epochs, recipe=args.recipe, approx_images=args.approx_images,
                     command="xnorpp " + " ".join(shlex.quote(a) for a in sys.argv[1:]), **options)
    print(result.markdown())
    return 0
