"""``xnorpp summary MODEL``: per-layer parameters, memory and MACs by precision, and totals."""

from __future__ import annotations

from . import add_model_opt, parse_model_opts


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "summary", help="per-layer parameters, memory and MACs (binary vs float), packed size",
        description="Per-layer table (output shape, parameters by precision, batch norm statistics, memory, "
                    "binary and float MACs, a MAC counted at the higher of its input and weight precision) and totals: packed model size, float32-equivalent size, compression ratio, share of "
                    "binary MACs, learned scaling parameters. MODEL is a run folder, a checkpoint file or a "
                    "model name (see `xnorpp train --help`).")
    p.add_argument("model", metavar="MODEL", help="run folder, checkpoint/model .pt file, or model name")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N",
                   help="image size C H W (or H W); default: the dataset's")
    p.add_argument("--dataset", help="dataset whose image size and classes to use (default: the run's, or "
                                     "fashion-mnist for a model name)")
    p.add_argument("--scaling", help="scaling of the hidden binary layers (model names only)")
    add_model_opt(p)
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="output format")
    p.add_argument("--no-packed", action="store_true", help="skip exporting to measure the packed size")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import summary
    from ..analysis.loading import load_for_analysis

    model, shape, dataset = load_for_analysis(args.model, input_size=args.input_size, dataset=args.dataset,
                                              scaling=args.scaling, model_opts=parse_model_opts(args.model_opt))
    result = summary(model, shape, packed=not args.no_packed, dataset=dataset)
    if args.format == "json":
        print(result.to_json())
    else:
        print(result.table(markdown=args.format == "markdown"))
    return 0
