"""Every torchvision classifier deploys: convert → export → load → the same logits as PyTorch, on every ISA path.

The test of issue #12: ``xnorpp.convert(torchvision.models.NAME(weights=None, num_classes=10), scaling="gamma-o")``
exported at 64×64 (inception_v3 at its minimum, 75×75), loaded by the packed runtime and run on random images on
every instruction-set path this CPU has. Every image whose binary-layer signs are determined at float32
precision (:func:`conftest.exempt_images`) must give PyTorch's logits within 1e-4 of their largest magnitude and
the same argmax; an image that differs must be exempt, and at most MAX_DIFFERING images may differ. For ConvNeXt
the reference GELU rounds erf as the runtime does (:class:`_RoundedErfGelu` says why).

Parameters are given values first (:func:`_randomize`): untrained models have BN statistics and scale factors of
1, and PReLU slopes that :func:`conftest.randomize` may make negative, after which a binary layer sees only +1 and
every image gives the same logits. Some converted models stay input-independent anyway (a ReLU, ReLU6 or
functional ``F.relu`` right before a binary layer gives it only +1 signs: googlenet, inception_v3, mobilenet_v2);
they still check that every op of the model exports and runs.
"""

import numpy as np
import pytest
import torch
from torch import nn

import xnorpp
from conftest import exempt_images
from xnorpp import _core, runtime
from xnorpp.export import export_model

torchvision = pytest.importorskip("torchvision")

# name: (input size, slow). The default run keeps a few small models with the new ops (concat, channel shuffle,
# chunk, mean over H, W, hardswish, hardsigmoid, squeeze-and-excitation products, ...).
MODELS = {
    "squeezenet1_1": (64, False), "shufflenet_v2_x0_5": (64, False), "mobilenet_v3_small": (64, False),
    "mnasnet0_5": (64, True), "regnet_y_400mf": (64, True), "mobilenet_v2": (64, True), "googlenet": (64, True),
    "densenet121": (64, True), "inception_v3": (75, True), "efficientnet_b0": (64, True),
    "convnext_tiny": (64, True), "resnet18": (64, True), "resnet50": (64, True), "resnext50_32x4d": (64, True),
    "wide_resnet50_2": (64, True), "vgg11_bn": (64, True), "alexnet": (64, True), "regnet_x_400mf": (64, True),
}
IMAGES = 8
MAX_DIFFERING = 2  # images that may differ (each exempt): a wrong kernel changes them all


class _RoundedErfGelu(nn.Module):
    """GELU with erf computed in float64 and rounded once, as the runtime does (x/√2 and the rest in float32).

    PyTorch's own float32 GELU (oneDNN's on this CPU) rounds its erf differently near x ≈ -5.5, where
    1 + erf(x/√2) falls below half a float32 ulp of 1: it returns -0.0 for some inputs there and a tiny negative
    value for their neighbours. A binary layer after it sees sign +1 or -1 by that rounding, so ConvNeXt's
    random images differ from stock PyTorch in almost every image while the runtime's GELU is the accurate one.
    """

    def forward(self, x):
        z = x * (1 / np.sqrt(2.0)) if x.dtype == torch.float64 else x * np.float32(1 / np.sqrt(2.0))
        return x * 0.5 * (1 + torch.erf(z.double()).to(x.dtype))


def _reference(model: nn.Module) -> nn.Module:
    """The model PyTorch runs to compare with: GELUs with the runtime's rounding of erf (see above)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.GELU) and m.approximate == "none":
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, _RoundedErfGelu())
    return model


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Values for every parameter that matters at inference, keeping PReLU slopes positive (see the module doc)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "scale_" in name or name.endswith("layer_scale"):
                uniform(p, 0.5, 1.5)
            elif name.endswith("bias"):
                uniform(p, -0.3, 0.3)
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                uniform(m.weight, 0.05, 0.3)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
                uniform(m.weight, 0.5, 1.5)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                uniform(m.running_mean, -0.5, 0.5)
                uniform(m.running_var, 0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if slow else n
                                  for n, (_, slow) in MODELS.items()])
def test_converted_torchvision_model_deploys(name, tmp_path):
    size = MODELS[name][0]
    torch.manual_seed(0)
    float_model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    model = _randomize(xnorpp.convert(float_model, scaling="gamma-o", input_size=(size, size)), 1)
    path = export_model(model, tmp_path / f"{name}.xnor", input_size=(size, size))
    model = _reference(model)
    x = np.random.default_rng(0).standard_normal((IMAGES, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(x)).numpy()
    scale = np.abs(expect).max(axis=1, keepdims=True)
    exempt = exempt_images(model, x)
    previous = _core.isa()
    try:
        for isa in runtime.supported_isas():
            runtime.set_isa(isa)
            got = runtime.load(path)(x)
            differs = (np.abs(got - expect) > 1e-4 * scale).any(axis=1) | (got.argmax(1) != expect.argmax(1))
            assert not (differs & ~exempt).any(), (
                f"{name} on {isa}: images {np.flatnonzero(differs & ~exempt).tolist()} differ from PyTorch, "
                f"largest difference {np.abs(got - expect)[differs & ~exempt].max():.3g}")
            assert differs.sum() <= MAX_DIFFERING, f"{name} on {isa}: {differs.sum()} of {IMAGES} images differ"
    finally:
        _core.set_isa(previous)
