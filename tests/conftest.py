"""Helpers shared by the tests: models with every parameter given a value, and the core's layers built from
float weights with the geometry of :mod:`xnorpp.packed.geometry` (as the runtime builds them)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from xnorpp import _core
from xnorpp.packed.bits import weight_words
from xnorpp.packed.geometry import conv_output_size


def binary_conv(w: np.ndarray, in_channels: int, in_hw=(1, 1), groups=1, stride=(1, 1), pad=(0, 0, 0, 0),
                dil=(1, 1), pad_value=0.0, **stage) -> _core.BinaryConv:
    """A core BinaryConv for float weights ``w`` (O, C/groups, KH, KW), or (O, C) for a GEMM, on inputs of in_hw."""
    kernel = w.shape[2:] if w.ndim == 4 else (1, 1)
    out_hw = conv_output_size(tuple(in_hw), kernel, stride, pad, dil)
    return _core.BinaryConv(weight_words(w), in_channels, tuple(in_hw), out_hw, groups, stride, pad, dil,
                            pad_value, **stage)


def float_conv(w: np.ndarray, in_hw, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), **stage) -> _core.FloatConv:
    """A core FloatConv for weights (O, C/groups, KH, KW) on inputs of in_hw (groups= among the keywords)."""
    out_hw = conv_output_size(tuple(in_hw), w.shape[2:], stride, pad, dil)
    return _core.FloatConv(w, tuple(in_hw), out_hw, stride, pad, dil, **stage)


def binary_modules(model):
    from xnorpp.nn import BinaryLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, BinaryLayer)]


# End to end, images whose float64 sign inputs lie this close to 0 (relative to the largest |value| of that
# layer's input for that image, i.e. a third of float32's epsilon) may flip a sign under float32 rounding in
# either engine; they are exempt from the comparison, and their share must stay small.
SIGN_TOLERANCE = 2e-8
MAX_EXEMPT_SHARE = 1e-3


def sign_distances(model, x: np.ndarray, batch: int = 2000) -> np.ndarray:
    """Per image: the smallest |input| of any binary layer in a float64 evaluation, relative to that input's max.

    Exact zeros are left out: a clamp at 0 (ReLU, ReLU6, hardswish) or a zero weight gives 0 in every engine,
    and a rounding error there can only give a tiny positive value, whose sign is the same +1."""
    model64 = copy.deepcopy(model).double()
    found = []

    def hook(module, args):
        magnitude = args[0].abs().flatten(1)
        nonzero = torch.where(magnitude > 0, magnitude, torch.inf)
        found.append(nonzero.amin(1) / magnitude.amax(1).clamp_min(1e-300))

    hooks = [m.register_forward_pre_hook(hook) for _, m in binary_modules(model64)]
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            found.clear()
            model64(torch.from_numpy(x[i:i + batch]).double())
            out.append(torch.stack(found, 1).amin(1).numpy())
    for h in hooks:
        h.remove()
    return np.concatenate(out)


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Untrained models have trivial BN statistics and factors of 1: give every parameter a value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "scale_" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("bias") or ".act" in name or "weight" in name and p.dim() == 1:
                p.copy_(torch.rand(p.shape, generator=g) - 0.3)
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def exempt_images(model, x: np.ndarray) -> np.ndarray:
    """Per image: True where a sign input of some binary layer is undetermined at float32 precision.

    That is the rule of :data:`SIGN_TOLERANCE` (a non-zero float64 input within it of 0), plus the images where
    PyTorch's own float32 evaluation gives another sign than float64 at some binary layer: an input that is 0 in
    exact arithmetic (a LayerNorm of equal channels, a cancellation) comes out as ±1e-8 in float32, so its sign is
    the rounding's, in PyTorch as in the packed runtime.
    """
    signs = []

    def record(module, args):
        signs.append((args[0].detach() < 0).flatten(1))

    hooks = [m.register_forward_pre_hook(record) for _, m in binary_modules(model)]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    signs32, disagree = list(signs), []
    model64 = copy.deepcopy(model).double()

    def compare(module, args):
        disagree.append(((args[0] < 0).flatten(1) != signs32[len(disagree)]).any(1))

    hooks = [m.register_forward_pre_hook(compare) for _, m in binary_modules(model64)]
    with torch.no_grad():
        model64(torch.from_numpy(x).double())
    flips = torch.stack(disagree, 1).any(1).numpy()
    return flips | (sign_distances(model, x) < SIGN_TOLERANCE)
