"""``xnorpp run MODEL``: classify a data set's test split, a .npy file or a folder of images (no PyTorch)."""

from __future__ import annotations

import sys

from . import add_deprecated


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run a packed .xnor model on a test set, a .npy file or a folder of images (no PyTorch)",
        description="Load a packed model with xnorpp.runtime (numpy + packed kernels). With --dataset: top-1 "
                    "accuracy on that data set's test split. With --input: a .npy array (uint8 pixels, or float32 "
                    "inputs already normalized) or a folder of images (class folders give labels); prints one "
                    "prediction per image, or top-1 when labels are known (--labels). XNORPP_ISA=amx|avx512|"
                    "avx2|portable forces a kernel path.")
    p.add_argument("model", metavar="MODEL", help="packed model file written by `xnorpp export`")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help="evaluate on this data set's test split "
                                                          "(fashion-mnist, mnist, cifar10, digits, synthetic, imagenet)")
    source.add_argument("--input", metavar="PATH", help="a .npy array of images or a folder of images")
    add_deprecated(source, "--data", "--dataset", dest="dataset")
    p.add_argument("--labels", metavar="NPY", help="class index of each --input image (.npy of integers)")
    p.add_argument("--data-root", help="folder with the data set's files (default: where xnorpp looks for them)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    p.add_argument("--input-layer", choices=("float32", "int8"), default="float32",
                   help="run the first conv in float32 (default) or int8: exact on 8-bit images, 7-bit weights; "
                        "faster on CPUs with AVX512-VNNI (docs/design.md)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import runtime
    from ..runtime.data import classify, dataset_inputs, file_inputs

    if args.labels and not args.input:
        raise ValueError("--labels goes with --input (a data set brings its own labels)")
    model = runtime.load(args.model, threads=args.threads, input_layer=args.input_layer)
    if args.dataset:
        inputs = dataset_inputs(args.dataset, args.data_root, model)
    else:
        inputs = file_inputs(args.input, model, args.labels)
    result = classify(model, inputs, args.batch_size, args.limit)
    speed = (f"{result['images']} images, {result['images_per_s']:.0f} images/s ({model.isa}, "
             f"{runtime.num_threads()} threads{', int8 input layer' if args.input_layer == 'int8' else ''})")
    if result["top1"] is not None:
        print(f"{args.model}: {inputs.source} top-1 {100 * result['top1']:.2f}% on {speed}")
        return 0
    names = model.classes or []
    for i, (label, confidence) in enumerate(zip(result["predictions"], result["confidence"])):
        name = f"\t{names[label]}" if label < len(names) else ""
        print(f"{inputs.names(i)}\t{label}\t{confidence:.3f}{name}")
    print(f"{args.model}: {speed}", file=sys.stderr)
    return 0
