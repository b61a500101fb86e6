"""Building blocks shared by the model families."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..packed.geometry import conv_output_size
from ..nn import BinaryConv2d, BinaryLinear
from ..scaling import get_scaling, linear_equivalent


def conv_out(size: tuple[int, int], kernel: int, stride: int = 1, padding: int = 0) -> tuple[int, int]:
    """Output (h, w) of a square-kernel conv or pool."""
    return tuple(conv_output_size(size, (kernel, kernel), (stride, stride), (padding,) * 4, (1, 1)))


@dataclass
class LayerFactory:
    """How a model makes its hidden layers: binary with a scaling scheme, or real.

    The first conv and the last linear layer of every model are built with
    ``nn.Conv2d`` / ``nn.Linear`` directly and never go through this factory.
    """

    binary: bool = True
    scaling: str = "gamma-o-h-w"
    ste: str = "clipped"
    binarize_input: bool = True
    pad_value: float = 0.0
    gamma_init: str = "ones"

    def __post_init__(self):
        if self.binary:
            get_scaling(self.scaling)  # fail early with the list of valid names
        if self.gamma_init not in GAMMA_INITS:
            raise ValueError(f"unknown gamma_init {self.gamma_init!r}; valid: {', '.join(GAMMA_INITS)}")

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
             input_size: tuple[int, int] | None = None, binary: bool | None = None) -> nn.Module:
        binary = self.binary if binary is None else binary
        if not binary:
            return nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        layer = BinaryConv2d(cin, cout, kernel, stride, padding, bias=False, scaling=self.scaling,
                             input_size=input_size, binarize_input=self.binarize_input, ste=self.ste,
                             pad_value=self.pad_value)
        return init_gamma(layer, self.gamma_init)

    def linear(self, fin: int, fout: int) -> nn.Module:
        if not self.binary:
            return nn.Linear(fin, fout, bias=False)
        layer = BinaryLinear(fin, fout, bias=False, scaling=linear_equivalent(self.scaling),
                             binarize_input=self.binarize_input, ste=self.ste)
        return init_gamma(layer, self.gamma_init)


def make_factory(binary: bool, scaling: str, ste: str = "clipped", binarize_input: bool = True,
                 pad_value: float = 0.0, gamma_init: str = "ones") -> LayerFactory:
    return LayerFactory(binary=binary, scaling=scaling, ste=ste, binarize_input=binarize_input,
                        pad_value=pad_value, gamma_init=gamma_init)


# How learned factors start: "ones" (the paper), or "alpha": the per-channel factor starts at XNOR-Net's
# analytic α_o = mean |W_o| of the initial latent weights (other factors at 1), so that at the start the
# binary path has the magnitude of the real conv it replaces instead of ~sqrt(fan-in) times more.
GAMMA_INITS = ("ones", "alpha")


def init_gamma(layer, how: str):
    """Set the initial learned factors of a binary layer (see :data:`GAMMA_INITS`)."""
    if how == "alpha" and layer.scaling_spec.learned:
        alpha = layer.weight_alpha().detach()
        with torch.no_grad():
            if "scale_channel" in layer.scaling_spec.factors:
                layer.scale_channel.copy_(alpha)
            elif "scale_full" in layer.scaling_spec.factors and not isinstance(
                    layer.scale_full, nn.UninitializedParameter):
                layer.scale_full.copy_(alpha.view(-1, 1, 1).expand_as(layer.scale_full))
    return layer
