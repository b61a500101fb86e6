"""``convert``: turn a float model (any torchvision classifier) into a binary one.

Every ``nn.Conv2d`` / ``nn.Linear`` becomes a :class:`~xnorpp.nn.BinaryConv2d` /
:class:`~xnorpp.nn.BinaryLinear` with the same shape and weights (the latent
weights), except the excluded ones: by default the first conv and the last
linear layer stay real, as in every binary network of the papers.

ReLU before a binary layer makes its binarized input all +1 (sign(0) = +1), so
by default each ``nn.ReLU`` is replaced with an ``nn.PReLU`` (``relu="prelu"``);
``relu="keep"`` leaves them.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field

import torch
from torch import nn

from ..nn import BinaryConv2d, BinaryLayer, BinaryLinear, name_layers
from ..scaling import get_scaling, linear_equivalent

RELU_CHOICES = ("prelu", "keep")


@dataclass
class ConversionReport:
    """What :func:`convert` did: qualified names of converted and kept-real layers."""

    scaling: str
    converted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    relu_replaced: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s) to binary (scaling {self.scaling!r}):"]
        lines += [f"  {n}" for n in self.converted]
        lines.append(f"kept {len(self.kept)} layer(s) real:")
        lines += [f"  {n}" for n in self.kept]
        if self.relu_replaced:
            lines.append(f"replaced {len(self.relu_replaced)} ReLU(s) with PReLU: {', '.join(self.relu_replaced)}")
        return "\n".join(lines)


def _matches(name: str, patterns, first: str | None, last: str | None) -> bool:
    for p in patterns:
        if (p == "first" and name == first) or (p == "last" and name == last):
            return True
        if p not in ("first", "last") and fnmatch.fnmatchcase(name, p):
            return True
    return False


def _input_sizes(model: nn.Module, names: list[str], input_size, in_channels: int) -> dict[str, tuple[int, int]]:
    """Spatial input size of each named conv, found with one dry forward pass."""
    sizes: dict[str, tuple[int, int]] = {}
    modules = dict(model.named_modules())
    def record(name):
        def hook(module, args):  # returns None: the input is left unchanged
            sizes.setdefault(name, tuple(args[0].shape[-2:]))
        return hook

    hooks = [modules[n].register_forward_pre_hook(record(n)) for n in names]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, in_channels, *input_size, dtype=p.dtype if p is not None else torch.float32,
                        device=p.device if p is not None else None)
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sizes


def convert(model: nn.Module, scaling: str = "gamma-o-h-w", exclude=("first", "last"), include=None, *,
            inplace: bool = False, input_size=None, in_channels: int | None = None, relu: str = "prelu",
            ste: str = "clipped", binarize_input: bool = True, pad_value: float = 0.0,
            verbose: bool = False) -> nn.Module:
    """Replace the conv and linear layers of ``model`` by binary ones; returns the model.

    ``exclude``: layers kept real — ``"first"`` / ``"last"`` (the first and last
    conv/linear layer in module order) and ``fnmatch`` patterns on qualified
    names (e.g. ``"*downsample*"``). ``include``: if given, only layers matching
    one of these patterns are converted (``exclude`` still applies).
    ``input_size`` (h, w) is needed for the spatial scalings (``gamma-ohw``,
    ``gamma-o-hw``, ``gamma-o-h-w``): one dry forward pass finds each layer's
    input size. Without it their factors are created at the first forward —
    run one batch before building the optimizer. ``inplace=False`` works on a
    deep copy. The report (:class:`ConversionReport`) is stored as
    ``model.xnorpp_conversion`` and printed when ``verbose``.
    """
    spec = get_scaling(scaling)
    if relu not in RELU_CHOICES:
        raise ValueError(f"relu must be one of {RELU_CHOICES}, got {relu!r}")
    if isinstance(exclude, str):
        exclude = (exclude,)
    if isinstance(include, str):
        include = (include,)
    if not inplace:
        model = copy.deepcopy(model)
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, BinaryLayer)]
    if not layers:
        raise ValueError("convert: the model has no nn.Conv2d or nn.Linear layer to binarize")
    first, last = layers[0][0], layers[-1][0]
    report = ConversionReport(scaling=scaling)
    chosen = []
    for name, module in layers:
        keep = _matches(name, exclude or (), first, last) or (include is not None and not _matches(
            name, include, first, last))
        (report.kept if keep else report.converted).append(name)
        if not keep:
            chosen.append((name, module))

    convs = [n for n, m in chosen if isinstance(m, nn.Conv2d)]
    sizes = {}
    if spec.spatial and input_size is not None and convs:
        if in_channels is None:
            in_channels = next(m for _, m in layers if isinstance(m, nn.Conv2d)).in_channels \
                if isinstance(layers[0][1], nn.Conv2d) else 3
        sizes = _input_sizes(model, convs, tuple(input_size) if not isinstance(input_size, int)
                             else (input_size, input_size), in_channels)

    for name, module in chosen:
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise ValueError(f"convert: layer {name!r} uses padding_mode={module.padding_mode!r}; binary "
                                 "layers pad with a constant. Exclude it (exclude=[..., {name!r}])")
            new = BinaryConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                               module.padding, module.dilation, module.groups, module.bias is not None,
                               scaling=scaling, input_size=sizes.get(name), binarize_input=binarize_input,
                               ste=ste, pad_value=pad_value, device=module.weight.device, dtype=module.weight.dtype)
        else:
            new = BinaryLinear(module.in_features, module.out_features, module.bias is not None,
                               scaling=linear_equivalent(scaling), binarize_input=binarize_input, ste=ste,
                               device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(module.weight)
            if module.bias is not None:
                new.bias.copy_(module.bias)
        new.train(module.training)
        _set_submodule(model, name, new)

    if relu == "prelu":
        for name, module in list(model.named_modules()):
            if type(module) is nn.ReLU:
                p = next(model.parameters())
                _set_submodule(model, name, nn.PReLU(device=p.device, dtype=p.dtype))
                report.relu_replaced.append(name)
    name_layers(model)
    model.xnorpp_conversion = report
    if verbose:
        print(report)
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
