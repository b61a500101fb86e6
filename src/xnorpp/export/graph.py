"""Trace a PyTorch model (torch.fx) into a packed graph (:mod:`xnorpp.packed.schema`) and its tensors.

One node per layer, in the schema's terms; fusion is the runtime's plan (:mod:`xnorpp.packed.plan`).
Every module of the model must be one the runtime runs; anything else is an
:class:`ExportError` naming the module or operation, never a silent float fallback.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..nn.layers import BinaryConv2d, BinaryLayer, BinaryLinear
from ..packed import Graph, ModelFormatError
from ..packed.bits import pack_signs
from ..packed.geometry import padding_from_torch, symmetric_padding


class ExportError(ValueError):
    """The model holds a layer or operation the packed runtime cannot run."""


SUPPORTED_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.PReLU, nn.ReLU, nn.Hardtanh,
                     nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
                     BinaryConv2d, BinaryLinear)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SUPPORTED_MODULES) or super().is_leaf_module(m, qualname)


def _np(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy().astype(dtype))


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


def _conv_padding(conv: nn.Conv2d) -> list[int]:
    return list(padding_from_torch(conv._reversed_padding_repeated_twice))


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """Eval batch norm as x*scale + shift, computed like PyTorch's CPU kernel (float32)."""
    if bn.running_mean is None:
        raise ExportError(f"BatchNorm {bn!r} has no running statistics (track_running_stats=False)")
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    invstd = np.float32(1.0) / np.sqrt(var + np.float32(bn.eps))
    w = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    b = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = (w * invstd).astype(np.float32)
    return scale, (b - mean * scale).astype(np.float32)


class _Builder:
    def __init__(self, model: nn.Module, real_dtype: str):
        self.model = model
        self.real = np.float16 if real_dtype == "float16" else np.float32
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.names: dict[fx.Node, str | None] = {}
        self.in_channels: int | None = None  # from the first conv/linear, unless a flatten came before it
        self.flattened_first = False

    def add(self, name: str, op: str, inputs: list[str], attrs: dict | None = None, **params) -> str:
        refs = {}
        for key, value in params.items():
            if value is None:
                continue
            refs[key] = f"{name}.{key}"
            self.tensors[refs[key]] = value
        self.nodes.append({"name": name, "op": op, "inputs": inputs, "attrs": attrs or {}, "params": refs})
        if op == "flatten" and self.in_channels is None:
            self.flattened_first = True  # the first layer's input features are no longer the image's channels
        return name

    def value(self, arg, where: str) -> str:
        if not isinstance(arg, fx.Node) or self.names.get(arg) is None:
            raise ExportError(f"{where}: unsupported argument {arg!r} (only tensors produced by the model)")
        return self.names[arg]

    # -- modules ---------------------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module) -> str:
        qual = str(node.target)
        name = node.name
        x = self.value(node.args[0], qual)
        if isinstance(m, BinaryLayer):
            return self.binary(name, x, m, qual)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ExportError(f"{qual}: Conv2d padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
            self._first_channels(m.in_channels)
            return self.add(name, "conv2d", [x], {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                                  "kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
                                                  "padding": _conv_padding(m), "dilation": _pair(m.dilation),
                                                  "groups": m.groups, "module": qual},
                            weight=_np(m.weight, self.real), bias=None if m.bias is None else _np(m.bias, self.real))
        if isinstance(m, nn.Linear):
            self._first_channels(m.in_features)
            return self.add(name, "linear", [x], {"in_features": m.in_features, "out_features": m.out_features,
                                                  "module": qual}, weight=_np(m.weight, self.real),
                            bias=None if m.bias is None else _np(m.bias, self.real))
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            scale, shift = _bn_affine(m)
            return self.add(name, "batch_norm", [x], {"module": qual}, scale=scale, shift=shift)
        if isinstance(m, nn.PReLU):
            return self.add(name, "prelu", [x], {"module": qual}, slope=_np(m.weight).reshape(-1))
        if isinstance(m, nn.ReLU):
            return self.add(name, "relu", [x], {"module": qual})
        if isinstance(m, nn.Hardtanh):
            return self.add(name, "hardtanh", [x], {"min": float(m.min_val), "max": float(m.max_val), "module": qual})
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise ExportError(f"{qual}: MaxPool2d(return_indices=True) is not supported")
            stride = m.stride if m.stride is not None else m.kernel_size
            return self.add(name, "max_pool2d", [x], {"kernel": _pair(m.kernel_size), "stride": _pair(stride),
                                                      "padding": list(symmetric_padding(m.padding)),
                                                      "dilation": _pair(m.dilation), "ceil_mode": bool(m.ceil_mode),
                                                      "module": qual})
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override is not None:
                raise ExportError(f"{qual}: AvgPool2d(divisor_override=...) is not supported")
            stride = m.stride if m.stride is not None else m.kernel_size
            return self.add(name, "avg_pool2d", [x], {"kernel": _pair(m.kernel_size), "stride": _pair(stride),
                                                      "padding": list(symmetric_padding(m.padding)),
                                                      "ceil_mode": bool(m.ceil_mode),
                                                      "count_include_pad": bool(m.count_include_pad), "module": qual})
        if isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size, m.output_size)
            if any(s is None for s in size):
                raise ExportError(f"{qual}: AdaptiveAvgPool2d with a None output size is not supported")
            return self.add(name, "adaptive_avg_pool2d", [x], {"output_size": [int(s) for s in size], "module": qual})
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"{qual}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) is not supported; "
                                  "only Flatten(1, -1)")
            return self.add(name, "flatten", [x], {"module": qual})
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return self.add(name, "identity", [x], {"module": qual})
        raise ExportError(f"layer {qual!r} ({type(m).__name__}) is not supported by the packed runtime; supported: "
                          + ", ".join(t.__name__ for t in SUPPORTED_MODULES))

    def _first_channels(self, c: int) -> None:
        if self.in_channels is None and not self.flattened_first:
            self.in_channels = int(c)

    def binary(self, name: str, x: str, m: BinaryLayer, qual: str) -> str:
        if not m.binarize_input:
            raise ExportError(f"{qual}: {type(m).__name__} with binarize_input=False (binary weights, real "
                              "activations) is not supported by the packed runtime")
        w = m.weight.detach()
        if torch.isnan(w).any():
            raise ExportError(f"{qual}: weights contain NaN")
        spec = m.scaling_spec
        linear = isinstance(m, BinaryLinear)
        if linear:
            self._first_channels(m.in_features)
            attrs = {"in_features": m.in_features, "out_features": m.out_features}
            bits = pack_signs(_np(w))  # (O, I)
        else:
            self._first_channels(m.in_channels)
            attrs = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel": _pair(m.kernel_size),
                     "stride": _pair(m.stride), "padding": _conv_padding(m), "dilation": _pair(m.dilation),
                     "groups": m.groups, "pad_value": float(m.pad_value)}
            bits = pack_signs(_np(w.permute(0, 2, 3, 1)))  # (O, KH, KW, C/groups): channels last
        attrs.update(scaling=spec.name, module=qual)
        params = {"weight_bits": bits, "bias": None if m.bias is None else _np(m.bias)}
        if spec.analytic_alpha:
            params["alpha"] = _np(m.weight_alpha())
        for factor in spec.factors:
            p = getattr(m, factor)
            if isinstance(p, nn.parameter.UninitializedParameter):
                raise ExportError(f"{qual}: scaling {spec.name!r} has no size yet; run one forward pass or "
                                  "give the layer input_size")
            params[factor] = _np(p)
        return self.add(name, "binary_linear" if linear else "binary_conv2d", [x], attrs, **params)

    # -- functions and methods ------------------------------------------------------------------
    def function(self, node: fx.Node) -> str | None:
        t, args, name = node.target, node.args, node.name
        if t in (operator.add, torch.add, operator.iadd) and len(args) == 2 and not node.kwargs:
            return self.add(name, "add", [self.value(args[0], name), self.value(args[1], name)])
        if t is torch.flatten and _flat_args(args[1:], node.kwargs):
            return self.add(name, "flatten", [self.value(args[0], name)])
        if t in (F.relu, torch.relu):
            return self.add(name, "relu", [self.value(args[0], name)])
        raise ExportError(f"operation {getattr(t, '__name__', t)!r} (node {name!r}) is not supported by the packed "
                          "runtime; supported functions: +, torch.add, torch.flatten(x, 1), relu")

    def method(self, node: fx.Node) -> str | None:
        t, args, name = node.target, node.args, node.name
        if t == "size":
            return None  # only feeds view/reshape(x.size(0), -1)
        if t == "flatten" and _flat_args(args[1:], node.kwargs):
            return self.add(name, "flatten", [self.value(args[0], name)])
        if t in ("view", "reshape") and len(args) == 3 and args[2] == -1 and isinstance(args[1], fx.Node):
            return self.add(name, "flatten", [self.value(args[0], name)])
        if t in ("relu", "relu_"):
            return self.add(name, "relu", [self.value(args[0], name)])
        if t in ("add", "add_") and len(args) == 2 and not node.kwargs:
            return self.add(name, "add", [self.value(args[0], name), self.value(args[1], name)])
        if t == "contiguous":
            return self.add(name, "identity", [self.value(args[0], name)])
        raise ExportError(f"tensor method {t!r} (node {name!r}) is not supported by the packed runtime")


def _flat_args(args, kwargs) -> bool:
    start = args[0] if args else kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def trace(model: nn.Module, input_size: tuple[int, int] | None, *, in_channels: int | None = None,
          real_dtype: str = "float32", meta: dict | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The validated packed graph and tensors of ``model`` (in eval mode) for inputs of ``input_size``.

    ``in_channels`` defaults to the first conv or linear layer's; ``meta`` adds the schema's optional
    graph fields (preprocess, num_classes, producer, real_dtype).
    """
    if real_dtype not in ("float32", "float16"):
        raise ValueError(f"real_dtype must be 'float32' or 'float16', got {real_dtype!r}")
    try:
        traced = _Tracer().trace(model)
    except Exception as err:  # fx cannot follow data-dependent Python control flow
        raise ExportError(f"cannot trace {type(model).__name__} with torch.fx: {err}") from err
    modules = dict(model.named_modules())
    b = _Builder(model, real_dtype)
    output = None
    input_name = None
    for node in traced.nodes:
        if node.op == "placeholder":
            if input_name is not None:
                raise ExportError("models with more than one input are not supported")
            input_name = node.name
            b.names[node] = node.name
        elif node.op == "get_attr":
            raise ExportError(f"model reads attribute {node.target!r} directly in forward; not supported")
        elif node.op == "call_module":
            b.names[node] = b.module(node, modules[node.target])
        elif node.op == "call_function":
            b.names[node] = b.function(node)
        elif node.op == "call_method":
            b.names[node] = b.method(node)
        elif node.op == "output":
            output = b.value(node.args[0], "model output")
    if not b.nodes:
        raise ExportError("the model has no layer the packed runtime runs")
    channels = in_channels if in_channels is not None else b.in_channels
    if channels is None:
        raise ExportError("the input channel count is unknown (the model flattens its input before its first conv "
                          "or linear layer, or has none): pass in_channels= (or dataset=)")
    if input_size is None:
        raise ExportError("the packed format records the input size: pass input_size=(h, w) (or dataset=)")
    graph = {"input": {"name": input_name, "channels": int(channels), "size": [int(v) for v in input_size]},
             "output": output, "nodes": b.nodes, **(meta or {}), "real_dtype": real_dtype}
    try:
        return Graph.from_json(graph, b.tensors, f"exporting {type(model).__name__}"), b.tensors
    except ModelFormatError as err:  # e.g. an input size the model cannot take
        raise ExportError(str(err)) from None
