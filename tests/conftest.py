"""Helpers shared by the tests: models with every parameter given a value, and the core's layers built from
float weights with the geometry of :mod:`xnorpp.packed.geometry` (as the runtime builds them)."""

from __future__ import annotations

import numpy as np

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
    """A core FloatConv for weights (O, C, KH, KW) on inputs of in_hw."""
    out_hw = conv_output_size(tuple(in_hw), w.shape[2:], stride, pad, dil)
    return _core.FloatConv(w, tuple(in_hw), out_hw, stride, pad, dil, **stage)
