"""``xnorpp run MODEL --data fashion-mnist``: evaluate a packed model with the torch-free runtime."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="evaluate a packed .xnor model on a test set (no PyTorch)",
        description="Load a packed model with xnorpp.runtime (numpy + packed kernels) and report top-1 accuracy "
                    "and throughput on a data set's test split. XNORPP_ISA=avx512|avx2|portable forces a "
                    "kernel path.")
    p.add_argument("model", metavar="MODEL", help="packed model file written by `xnorpp export`")
    p.add_argument("--data", required=True, help="test set: fashion-mnist or mnist")
    p.add_argument("--data-root", help="folder with the IDX files (default: /usr/share/datasets/<name>)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import runtime
    from ..runtime.data import evaluate

    try:
        model = runtime.load(args.model, threads=args.threads)
        result = evaluate(model, args.data, args.data_root, args.batch_size, args.limit)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"xnorpp run: {err}") from None
    print(f"{args.model}: {args.data} top-1 {100 * result['top1']:.2f}% on {result['images']} images, "
          f"{result['images_per_s']:.0f} images/s ({model.isa}, {runtime.num_threads()} threads)")
    return 0
