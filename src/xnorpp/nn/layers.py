"""Binary layers: drop-in replacements for ``nn.Conv2d`` and ``nn.Linear``.

A binary layer computes ``(sign(I) ⊛ sign(W)) ⊙ scale + bias`` where the scale
is one of the schemes of :mod:`xnorpp.scaling`. The constructors take the
arguments of their ``torch.nn`` counterparts (same names, same defaults) plus:

``scaling``
    ``"none"``, ``"xnor"``, ``"xnor-alpha"``, ``"gamma-o"``, ``"gamma-ohw"``,
    ``"gamma-o-hw"`` or ``"gamma-o-h-w"`` (default for convolutions;
    ``"gamma-o"`` for linear layers, which refuse the spatial shapes).
``input_size``
    ``(h, w)`` of the layer's input. The spatial Γ shapes need the output size:
    with ``input_size`` their parameters exist at construction; without it they
    are created at the first forward (a dry run, as for ``torch.nn.LazyConv2d``:
    run one batch before building the optimizer) or when a state_dict is loaded.
    Afterwards an input whose output size differs raises ``ValueError``.
``binarize_input``
    ``True`` binarizes activations (XNOR-Net); ``False`` keeps them real and
    binarizes only the weights (XNOR-Net's BWN).
``ste``
    pseudo-gradient of sign for activations and weights: ``"clipped"``
    (default), ``"approx"`` or ``"identity"`` (see :mod:`xnorpp.nn.quantizers`).
``pad_value``
    value the padded border of the (binarized) input takes: ``0.0`` (PyTorch
    zero padding, contributes nothing; default), ``1.0`` or ``-1.0``. The packed
    runtime reproduces each exactly.

Conventions: sign(0) = +1, NaN propagates to the output (never a valid sign).
For ``"xnor"``, K is computed from the real input with zero padding (the border
has no magnitude), over all input channels even when ``groups > 1``; α and K are
differentiable functions of the latent weights and the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..packed.geometry import conv_output_size, padding_from_torch, size_pair
from ..scaling import (DEFAULT_CONV_SCALING, DEFAULT_LINEAR_SCALING, FACTOR_AXES, Scaling,
                       get_scaling)
from .quantizers import binarize, check_ste, sign_ste

PAD_VALUES = (0.0, 1.0, -1.0)
_OUTPUT_AXES = ("o", "h", "w")


class BinaryLayer(nn.Module):
    """Behaviour shared by binary layers: options, learned factors, error messages.

    Subclasses also inherit from an ``nn`` layer that defines ``weight`` and ``bias``.
    """

    scaling_spec: Scaling
    layer_name: str | None = None  # set by xnorpp.nn.name_layers for clearer errors

    def _init_binary(self, scaling: str, ste: str, binarize_input: bool, pad_value: float,
                     linear: bool) -> None:
        owner = type(self).__name__
        self.scaling_spec = get_scaling(scaling, linear=linear, owner=owner)
        self.scaling = self.scaling_spec.name
        self.ste = check_ste(ste, owner)
        self.binarize_input = bool(binarize_input)
        if self.scaling_spec.analytic_k and not self.binarize_input:
            raise ValueError(f"{owner}: scaling 'xnor' scales binarized inputs by their magnitude K; "
                             "with binarize_input=False (binary weights only) use 'xnor-alpha'")
        try:
            pad_value = float(pad_value)
        except (TypeError, ValueError):
            pad_value = None
        if pad_value not in PAD_VALUES:
            raise ValueError(f"{owner}: pad_value must be one of {PAD_VALUES}")
        self.pad_value = pad_value

    # -- learned factors ---------------------------------------------------------------------
    def _make_factors(self, out_size: tuple[int, int] | None) -> None:
        """Register the learned factors, initialised to ones; uninitialized if the size is unknown."""
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        shapes = self.scaling_spec.factor_shapes(self.weight.shape[0], out_size) if (
            out_size is not None or not self.scaling_spec.spatial) else {}
        for name in self.scaling_spec.factors:
            if name in shapes:
                self.register_parameter(name, nn.Parameter(torch.ones(shapes[name], **factory)))
            else:
                self.register_parameter(name, nn.UninitializedParameter(**factory))
        self.output_size = out_size

    def _materialize_factors(self, out_size: tuple[int, int]) -> None:
        shapes = self.scaling_spec.factor_shapes(self.weight.shape[0], out_size)
        for name, shape in shapes.items():
            param = getattr(self, name)
            if isinstance(param, nn.UninitializedParameter):
                param.materialize(shape)
                with torch.no_grad():
                    param.fill_(1.0)
        self.output_size = out_size

    def learned_scale(self) -> torch.Tensor | None:
        """The learned Γ as one tensor broadcastable to the output ``(o, h, w)``, or None."""
        gamma = None
        for name in self.scaling_spec.factors:
            param = getattr(self, name)
            axes = FACTOR_AXES[name]
            shape = [param.shape[axes.index(a)] if a in axes else 1 for a in _OUTPUT_AXES]
            if self.output_ndim == 1:  # linear: only the channel axis exists
                shape = shape[:1]
            factor = param.reshape(shape)
            gamma = factor if gamma is None else gamma * factor
        return gamma

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Lazily-sized factors take their shape from the checkpoint.
        for name in self.scaling_spec.factors:
            key = prefix + name
            if isinstance(getattr(self, name), nn.UninitializedParameter) and key in state_dict:
                getattr(self, name).materialize(state_dict[key].shape)
        if self.scaling_spec.spatial and self.output_size is None:
            self.output_size = self._output_size_from_factors()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _output_size_from_factors(self) -> tuple[int, int] | None:
        sizes = {}
        for name in self.scaling_spec.factors:
            param = getattr(self, name)
            if isinstance(param, nn.UninitializedParameter):
                return None
            sizes.update(zip(FACTOR_AXES[name], param.shape))
        return (sizes["h"], sizes["w"])

    # -- helpers -----------------------------------------------------------------------------
    def binary_weight(self) -> torch.Tensor:
        """The ±1 weight tensor used in the forward pass (sign(0) = +1), without gradient."""
        with torch.no_grad():
            return binarize(self.weight.detach())

    def describe(self) -> str:
        """Short description used in error messages: the layer's name in its model if known."""
        name = f" {self.layer_name!r}" if self.layer_name else ""
        return f"{type(self).__name__}{name} ({self._short_args()})"

    def _binary_repr(self) -> str:
        text = f"scaling={self.scaling!r}, ste={self.ste!r}, pad_value={self.pad_value}"
        if not self.binarize_input:
            text += ", binarize_input=False"
        if self.scaling_spec.spatial and self.output_size is not None:
            text += f", output_size={tuple(self.output_size)}"
        return text

    def _check_floating(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.describe()}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{self.describe()}: expected a floating-point input, got dtype {x.dtype}; "
                            "convert it first, e.g. x.float()")


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """Binary 2-D convolution with XNOR-Net / XNOR-Net++ scaling (see the module docstring)."""

    output_ndim = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None, *,
                 scaling: str = DEFAULT_CONV_SCALING, input_size: tuple[int, int] | None = None,
                 binarize_input: bool = True, ste: str = "clipped", pad_value: float = 0.0):
        if padding_mode != "zeros":
            raise ValueError(f"BinaryConv2d: padding_mode={padding_mode!r} is not supported; binary layers pad "
                             "with a constant: choose pad_value among 0.0, 1.0, -1.0 (padding_mode='zeros')")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode, device, dtype)
        self._init_binary(scaling, ste, binarize_input, pad_value, linear=False)
        self.input_size = None
        out_size = None
        if input_size is not None:
            self.input_size = size_pair(input_size, "BinaryConv2d input_size")
            out_size = self.output_size_for(self.input_size)
        self._make_factors(out_size if self.scaling_spec.spatial else None)

    @property
    def padding_amounts(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding, also for padding='same' / 'valid'."""
        return padding_from_torch(self._reversed_padding_repeated_twice)

    def output_size_for(self, input_size: tuple[int, int]) -> tuple[int, int]:
        out = conv_output_size(tuple(input_size), self.kernel_size, self.stride, self.padding_amounts,
                               self.dilation)
        if min(out) < 1:
            raise ValueError(f"{self.describe()}: input size {tuple(input_size)} is smaller than the kernel "
                             f"span; the output would be {out}")
        return out

    def _short_args(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, scaling={self.scaling!r}")

    def extra_repr(self) -> str:
        return nn.Conv2d.extra_repr(self) + ", " + self._binary_repr()

    def _check_input(self, x: torch.Tensor) -> None:
        self._check_floating(x)
        if x.dim() not in (3, 4):
            raise ValueError(f"{self.describe()}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, "
                             f"got {x.dim()}-D with shape {tuple(x.shape)}")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"{self.describe()}: expected {self.in_channels} input channels, got "
                             f"{x.shape[-3]} (input shape {tuple(x.shape)})")
        if self.scaling_spec.spatial:
            in_size = (int(x.shape[-2]), int(x.shape[-1]))
            out_size = self.output_size_for(in_size)
            if self.output_size is None:
                self.input_size = in_size
                self._materialize_factors(out_size)
            elif tuple(out_size) != tuple(self.output_size):
                built = f"input size {self.input_size} → " if self.input_size else ""
                raise ValueError(
                    f"{self.describe()}: its spatial scaling {self.scaling!r} was built for {built}output "
                    f"size {tuple(self.output_size)}, but got input size {in_size} → output size {out_size}; "
                    "spatial Γ shapes fix the input resolution (use gamma-o for variable sizes)")

    def _pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        pads = self._reversed_padding_repeated_twice
        return F.pad(x, pads, value=value) if any(pads) else x

    def magnitude_map(self, x: torch.Tensor) -> torch.Tensor:
        """XNOR-Net's K: mean over channels of |I|, box-filtered like the conv (zero padding)."""
        kh, kw = self.kernel_size
        box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
        mean_abs = self._pad(x.abs().mean(dim=-3, keepdim=True), 0.0)
        return F.conv2d(mean_abs, box, None, self.stride, 0, self.dilation)

    def weight_alpha(self) -> torch.Tensor:
        """XNOR-Net's α: mean |W| per output channel (shape (o,))."""
        return self.weight.abs().mean(dim=(1, 2, 3))

    def scale(self, x: torch.Tensor) -> torch.Tensor | None:
        """The factor the binary conv output is multiplied by, broadcastable to (N, o, h, w)."""
        spec = self.scaling_spec
        if spec.learned:
            return self.learned_scale()
        if spec.analytic_alpha:
            alpha = self.weight_alpha().view(-1, 1, 1)
            return alpha * self.magnitude_map(x) if spec.analytic_k else alpha
        return None

    def binary_conv(self, x: torch.Tensor) -> torch.Tensor:
        """sign(I) ⊛ sign(W) with the layer's padding value, before any scale or bias."""
        xb = sign_ste(x, self.ste) if self.binarize_input else x
        wb = sign_ste(self.weight, self.ste)
        if self.pad_value == 0 and not isinstance(self.padding, str):  # conv pads with zeros itself: no copy
            return F.conv2d(xb, wb, None, self.stride, self.padding, self.dilation, self.groups)
        return F.conv2d(self._pad(xb, self.pad_value), wb, None, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        y = self.binary_conv(x)
        scale = self.scale(x)
        if scale is not None:
            y = y * scale
        if self.bias is not None:
            y = y + self.bias.view(-1, 1, 1)
        return y


class BinaryLinear(BinaryLayer, nn.Linear):
    """Binary fully connected layer; scalings ``none``, ``xnor``, ``xnor-alpha``, ``gamma-o``.

    For ``"xnor"``, K is the mean |x| of each input vector (a linear layer is a 1×1
    convolution on a 1×1 image).
    """

    output_ndim = 1

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *,
                 scaling: str = DEFAULT_LINEAR_SCALING, binarize_input: bool = True, ste: str = "clipped"):
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._init_binary(scaling, ste, binarize_input, 0.0, linear=True)
        self._make_factors(None)

    def _short_args(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scaling={self.scaling!r}"

    def extra_repr(self) -> str:
        return nn.Linear.extra_repr(self) + f", scaling={self.scaling!r}, ste={self.ste!r}" + (
            ", binarize_input=False" if not self.binarize_input else "")

    def weight_alpha(self) -> torch.Tensor:
        return self.weight.abs().mean(dim=1)

    def scale(self, x: torch.Tensor) -> torch.Tensor | None:
        spec = self.scaling_spec
        if spec.learned:
            return self.learned_scale()
        if spec.analytic_alpha:
            alpha = self.weight_alpha()
            return alpha * x.abs().mean(dim=-1, keepdim=True) if spec.analytic_k else alpha
        return None

    def binary_conv(self, x: torch.Tensor) -> torch.Tensor:
        xb = sign_ste(x, self.ste) if self.binarize_input else x
        return F.linear(xb, sign_ste(self.weight, self.ste))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_floating(x)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self.describe()}: expected input (..., {self.in_features}), got shape "
                             f"{tuple(x.shape)}")
        y = self.binary_conv(x)
        scale = self.scale(x)
        if scale is not None:
            y = y * scale
        if self.bias is not None:
            y = y + self.bias
        return y


def name_layers(model: nn.Module) -> nn.Module:
    """Record each binary layer's qualified name in the model, for error messages."""
    for name, module in model.named_modules():
        if isinstance(module, BinaryLayer):
            module.layer_name = name or None
    return model
