"""``xnorpp export CHECKPOINT -o MODEL``: write a trained model as one packed file (.xnor)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained model to a packed .xnor file (1 bit per binary weight)",
        description="Trace a trained model (run folder, checkpoint.pt or model.pt) and write one safetensors "
                    "file for the torch-free runtime: binary weights packed 1 bit each, folded output-stage "
                    "parameters, real layers in float32 (or float16), the graph as JSON.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="run folder, checkpoint.pt or model.pt")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="packed model file to write (.xnor)")
    p.add_argument("--real-dtype", choices=("float32", "float16"), default="float32",
                   help="storage of the real layers (first conv, shortcuts, classifier)")
    p.add_argument("--dataset", help="record this data set's input size and normalization "
                                     "(default: the run's)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from ..export import export_model

    path = export_model(args.checkpoint, args.output, real_dtype=args.real_dtype, dataset=args.dataset)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB)")
    return 0
