"""``xnorpp approx MODEL``: approximation error of each scaling for every binary layer."""

from __future__ import annotations

from . import add_deprecated


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "approx", help="relative error / cosine of each scaling against the real convolution, per layer",
        description="For every binary layer of a trained model, on held-out images: relative error "
                    "‖I∗W − approx‖/‖I∗W‖ and cosine similarity of the binary approximation with no scale, "
                    "XNOR-Net's α and Kα, the model's learned Γ and the least-squares per-channel oracle.")
    p.add_argument("model", metavar="MODEL", help="run folder or checkpoint/model .pt file of a trained model")
    p.add_argument("--dataset", metavar="NAME", help="data set (default: the one the model was trained on)")
    add_deprecated(p, "--data", "--dataset", dest="dataset")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--split", default="test", help="split to draw held-out images from (default: test)")
    p.add_argument("--images", type=int, default=256, help="number of images (default: 256)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="PyTorch CPU threads (default: PyTorch's)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="output format")
    p.add_argument("-o", "--output", help="also write the result as JSON to this file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..analysis import approximation_error
    from ..analysis.loading import run_config
    from ..analysis.runs import write_atomic
    from ..data import get_dataset
    from ..train import load_model

    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    dataset = args.dataset or (run_config(args.model) or {}).get("dataset")
    if dataset is None:
        raise ValueError(f"the training data set of {args.model} is unknown (no config.json); give --dataset NAME")
    data = get_dataset(dataset, args.split, data_root=args.data_root)
    report = approximation_error(model, data, max_images=args.images, batch_size=args.batch_size)
    if args.output:
        write_atomic(Path(args.output), report.to_json())
    if args.format == "json":
        print(report.to_json())
    else:
        print(report.table(markdown=args.format == "markdown"))
    return 0
