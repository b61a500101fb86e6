"""make test-arm64, the x86 half: packed models and their x86 outputs for tests/arm64/check_runtime.py.

    python tests/arm64/export_models.py OUT_DIR

Writes OUT_DIR/<name>.xnor, <name>.input.npy and <name>.<isa>.npy (the logits of every unit this CPU runs), and
manifest.json. The models have random weights with randomized batch norms, factors and PReLU slopes (as the
tests' conftest.randomize), so that every fused stage does real work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (conftest.randomize)
from conftest import randomize  # noqa: E402

from xnorpp import runtime  # noqa: E402
from xnorpp.export import export_model  # noqa: E402
from xnorpp.models import convert, create  # noqa: E402
from xnorpp.nn import BinaryLinear  # noqa: E402
from xnorpp.scaling import SCALINGS  # noqa: E402


def models():
    """(name, model, input shape): the demo network, every scaling, ResNet-18, a converted torchvision model, and
    a binary MLP on vectors."""
    yield "demo-fmnist-net", create("fmnist-net", in_channels=1, input_size=(28, 28), width=32,
                                    gamma_init="alpha"), (1, 28, 28)
    for scaling in SCALINGS:
        if scaling != "float":
            yield f"fmnist-net-{scaling}", create("fmnist-net", in_channels=1, input_size=(28, 28), width=8,
                                                  scaling=scaling), (1, 28, 28)
    yield "resnet18", create("resnet18", input_size=(224, 224)), (3, 224, 224)
    tv = torchvision.models.mobilenet_v2(num_classes=10)
    yield "converted-mobilenet_v2", convert(tv, input_size=(64, 64)), (3, 64, 64)
    yield "binary-mlp", torch.nn.Sequential(
        torch.nn.Linear(37, 64), torch.nn.BatchNorm1d(64), BinaryLinear(64, 32, scaling="gamma-o"),
        torch.nn.BatchNorm1d(32), torch.nn.PReLU(32), torch.nn.Linear(32, 10)), (37,)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = {"isas": runtime.supported_isas(), "models": []}
    for seed, (name, model, shape) in enumerate(models()):
        model = randomize(model, seed)
        path = export_model(model, out / f"{name}.xnor", input_size=shape[1:])
        x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
        np.save(out / f"{name}.input.npy", x)
        for isa in manifest["isas"]:
            runtime.set_isa(isa)
            np.save(out / f"{name}.{isa}.npy", runtime.load(path)(x))
        runtime.set_isa("auto")
        manifest["models"].append(name)
        print(f"exported {name}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
