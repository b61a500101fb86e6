"""Binarization stages of the ``bnn-two-step`` recipe.

Stage 1 trains real weights with binary activations; stage 2 binarizes both.
``xnorpp.nn``'s layers always binarize their weights, so stage 1 swaps in, per
layer instance, a ``binary_conv`` that convolves sign(I) with the real latent
weights (same padding value, same STE); stage 2 removes it again. The state_dict
is the same in both stages.
"""

from __future__ import annotations

import types

import torch.nn.functional as F
from torch import nn

from ..nn import BinaryConv2d, BinaryLinear
from ..nn.quantizers import sign_ste


def _conv_real_weights(self: BinaryConv2d, x):
    xb = sign_ste(x, self.ste) if self.binarize_input else x
    pads = self._reversed_padding_repeated_twice
    xb = F.pad(xb, pads, value=self.pad_value) if any(pads) else xb
    return F.conv2d(xb, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _linear_real_weights(self: BinaryLinear, x):
    return F.linear(sign_ste(x, self.ste) if self.binarize_input else x, self.weight)


def set_stage(model: nn.Module, stage: int) -> None:
    """Stage 1: real weights, binary activations. Stage 2: both binary (the layers' own behaviour)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    for module in model.modules():
        if isinstance(module, (BinaryConv2d, BinaryLinear)):
            if stage == 1:
                fn = _conv_real_weights if isinstance(module, BinaryConv2d) else _linear_real_weights
                module.binary_conv = types.MethodType(fn, module)
            elif "binary_conv" in module.__dict__:
                del module.binary_conv
