"""``xnorpp export SOURCE -o OUT``: a trained model as one packed file (.xnor), or as an OpenVINO IR."""

from __future__ import annotations

from . import TRAIN_EXTRA

# xnorpp.export.OPENVINO_EXTRA (tests/test_openvino.py holds them equal): building the parser imports no numpy.
OPENVINO_EXTRA = "xnorpp[openvino]"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained model to a packed .xnor file (1 bit per binary weight) or an OpenVINO IR",
        description="Trace a trained model (run folder, checkpoint.pt or model.pt) and write one safetensors "
                    "file for the torch-free runtime: binary weights packed 1 bit each, folded output-stage "
                    "parameters, real layers in float32 (or float16), the graph as JSON. With --format openvino, "
                    "write an OpenVINO IR (binary layers as OpenVINO's BinaryConvolution, input NCHW float32, "
                    "batch 1) of a packed .xnor file, or of a checkpoint, which is exported to OUT/model.xnor "
                    "first.",
        epilog=f"Exporting a checkpoint needs the train extra (PyTorch): pip install '{TRAIN_EXTRA}'. "
               f"--format openvino needs pip install '{OPENVINO_EXTRA}'; from a .xnor file it needs no PyTorch.")
    p.add_argument("source", metavar="SOURCE",
                   help="run folder, checkpoint.pt or model.pt; with --format openvino also a packed .xnor file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="packed model file to write (.xnor); with --format openvino, the folder for the IR: "
                        "OUT/NAME.xml and OUT/NAME.bin for NAME.xnor, or OUT/model.xnor, OUT/model.xml and "
                        "OUT/model.bin for a checkpoint")
    p.add_argument("--format", choices=("xnor", "openvino"), default="xnor",
                   help="xnor: xnorpp's packed file (default); openvino: an OpenVINO IR (.xml + .bin)")
    p.add_argument("--real-dtype", choices=("float32", "float16"),
                   help="storage of the real layers (first conv, shortcuts, classifier) when exporting a "
                        "checkpoint (default: float32)")
    p.add_argument("--dataset", help="record this data set's input size and normalization when exporting a "
                                     "checkpoint (default: the run's)")
    p.add_argument("--input-size", nargs="+", type=int, metavar="N",
                   help="input size recorded in the file when exporting a checkpoint: H W for images (default: the "
                        "data set's), or F for a model on vectors (features); the runtime refuses other sizes")
    p.add_argument("--in-channels", type=int, metavar="C",
                   help="input channels when exporting a checkpoint of a model that flattens its input first "
                        "(default: read from the first conv or linear layer)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    input_size = tuple(args.input_size) if args.input_size else None
    if args.format == "openvino":
        from ..export import export_openvino

        written = export_openvino(args.source, args.output, real_dtype=args.real_dtype, dataset=args.dataset,
                                  input_size=input_size, in_channels=args.in_channels)
    else:
        from ..export import export_model

        written = [export_model(args.source, args.output, input_size, args.real_dtype or "float32",
                                dataset=args.dataset, in_channels=args.in_channels)]
    for path in written:
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB)")
    return 0
