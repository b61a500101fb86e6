"""Trace a PyTorch model (torch.fx) into a packed graph (:mod:`xnorpp.packed.schema`) and its tensors.

One node per layer, in the schema's terms; fusion is the runtime's plan (:mod:`xnorpp.packed.plan`).
Every module of the model must be one the runtime runs; anything else is an
:class:`ExportError` naming the module or operation, never a silent float fallback.
"""

from __future__ import annotations

import contextlib
import inspect
import io
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


# Elementwise activations: the module, function and tensor-method forms of each schema op.
ACTIVATION_MODULES = {nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid", nn.Sigmoid: "sigmoid",
                      nn.SiLU: "silu", nn.Tanh: "tanh"}
ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
                        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu", torch.tanh: "tanh",
                        F.tanh: "tanh"}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh",
                      "tanh_": "tanh"}
# Elementwise x (op) y: operator, torch function and tensor method forms.
ARITHMETIC = {operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add", "add_": "add",
              operator.sub: "sub", operator.isub: "sub", torch.sub: "sub", "sub": "sub", "sub_": "sub",
              operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", "mul": "mul", "mul_": "mul"}

SUPPORTED_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.PReLU, nn.ReLU, nn.Hardtanh,
                     nn.GELU, *ACTIVATION_MODULES, nn.LayerNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
                     nn.Dropout, nn.Identity, BinaryConv2d, BinaryLinear)
SUPPORTED_FUNCTIONS = ("+ - * (tensors, or numbers and per-channel constants), torch.add/sub/mul, torch.cat, "
                       "torch.chunk/split along channels, torch.flatten and view/reshape to (N, features), "
                       "permute to channels last and back, ShuffleNet's view/transpose/view channel shuffle, "
                       "mean/amax over H, W, relu, relu6, hardtanh, clamp, hardswish, hardsigmoid, sigmoid, silu, "
                       "tanh, gelu, layer_norm over channels, max_pool2d, avg_pool2d, adaptive_avg_pool2d, "
                       "torchvision's stochastic_depth (eval)")


# The signatures of the functional forms, to read their arguments whether given by position or keyword.
def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False): ...
def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None): ...
def _adaptive_avg_pool2d(input, output_size): ...
def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5): ...
def _gelu(input, approximate="none"): ...
def _clamp(input, min=None, max=None): ...
def _hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False): ...
def _reduce(input, dim=None, keepdim=False, dtype=None): ...
def _chunk(input, chunks, dim=0): ...
def _split(input, split_size_or_sections, dim=0): ...
def _cat(tensors, dim=0): ...
def _stochastic_depth(input, p, mode, training=True): ...


SIGNATURES = {F.max_pool2d: _max_pool2d, F.avg_pool2d: _avg_pool2d, F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
              F.layer_norm: _layer_norm, F.gelu: _gelu, torch.clamp: _clamp, torch.clip: _clamp, "clamp": _clamp,
              "clamp_": _clamp, "clip": _clamp, F.hardtanh: _hardtanh, torch.mean: _reduce, "mean": _reduce,
              torch.amax: _reduce, "amax": _reduce, torch.chunk: _chunk, "chunk": _chunk, torch.split: _split,
              "split": _split, torch.cat: _cat, torch.concat: _cat}


def _bind(fn, args, kwargs) -> dict:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


_SUPPORTED_FORWARDS = {cls.forward for cls in SUPPORTED_MODULES}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # A subclass with its own forward (torchvision's LayerNorm2d permutes around its norm) is traced through.
        if isinstance(m, SUPPORTED_MODULES):
            return type(m).forward in _SUPPORTED_FORWARDS
        return super().is_leaf_module(m, qualname)


def _module_path(node: fx.Node) -> str:
    """The qualified name of the module whose forward made ``node`` (for messages and the ``module`` attribute)."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in reversed(list(stack.values())):
        return str(path)
    return ""


def _where(node: fx.Node) -> str:
    path = _module_path(node)
    return f"node {node.name!r}" + (f" in module {path!r}" if path else "")


def _dims(dim, rank: int) -> tuple[int, ...]:
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % rank for d in dims))


def _first_layer(traced: fx.Graph, modules: dict) -> tuple[int | None, bool]:
    """The input channels of the first conv or linear layer, unless the model reshapes its input before it
    (None), and whether the model takes vectors: its first layer is a Linear on the input's own last axis
    (nothing permuted before it), which export runs on vectors only."""
    permuted = False
    for node in traced.nodes:
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, nn.Conv2d):
                return int(m.in_channels), False
            if isinstance(m, nn.Linear):
                return int(m.in_features), not permuted
            if isinstance(m, nn.Flatten):
                return None, False
        elif node.target in (torch.flatten, torch.reshape, "flatten", "view", "reshape"):
            return None, False
        elif node.target in (torch.permute, "permute"):  # a Linear over channels permuted last: a feature map
            permuted = True
    return None, False


def _input_shape(input_size, in_channels: int | None, layer: tuple[int | None, bool]) -> tuple[int, ...] | str:
    """The shape of one input, (C, H, W) or (F,) for vectors, from export's arguments and the first layer; or
    why it is unknown. ``input_size`` is (h, w), (features,), or () for vectors of ``in_channels`` features."""
    channels, vectors = layer
    if input_size is None and vectors:  # a Linear reads the input: it takes vectors of its in_features
        input_size = ()
    if input_size is None:
        return ("the packed format records the input size: pass input_size=(h, w) for images, or "
                "input_size=(features,) for a model that takes vectors (N, features) (or dataset=)")
    try:
        size = tuple(operator.index(v) for v in input_size)
    except TypeError:  # not a sequence of integers
        size = None
    if size is None or len(size) > 2 or min(size, default=1) < 1:
        raise ExportError(f"input_size must be (h, w) for images or (features,) for vectors, in positive integers; "
                          f"got {input_size!r}")
    if len(size) == 1:
        if in_channels is not None and in_channels != size[0]:
            raise ExportError(f"input_size={size!r} means vectors of {size[0]} features, but in_channels="
                              f"{in_channels}: give one of them, or equal values")
        return size
    channels = in_channels if in_channels is not None else channels
    if channels is None:
        return ("the input channel count is unknown (the model flattens its input before its first conv or linear "
                "layer, or has none): pass in_channels= (or dataset=)")
    return (int(channels), *size)


def _np(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy().astype(dtype))


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


def _conv_padding(conv: nn.Conv2d) -> list[int]:
    return list(padding_from_torch(conv._reversed_padding_repeated_twice))


def _bn_affine(bn, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval batch norm as x*scale + shift, computed like PyTorch's CPU kernel (float32)."""
    if bn.running_mean is None:
        raise ExportError(f"{where}: BatchNorm {bn!r} has no running statistics (track_running_stats=False)")
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    w = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    b = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    # The folded scale and shift would be NaN or infinite, which the schema refuses without naming the cause.
    for name, v in (("running_mean", mean), ("running_var", var), ("weight", w), ("bias", b)):
        if not np.isfinite(v).all():
            raise ExportError(f"{where}: BatchNorm {name} holds NaN or infinite values (channels "
                              f"{np.flatnonzero(~np.isfinite(v))[:5].tolist()}); the packed model needs finite ones")
    denominator = var + np.float32(bn.eps)
    if (denominator <= 0).any():
        raise ExportError(f"{where}: BatchNorm running_var + eps must be positive, got "
                          f"{float(denominator.min()):.6g} (channels {np.flatnonzero(denominator <= 0)[:5].tolist()})")
    invstd = np.float32(1.0) / np.sqrt(denominator)
    scale = (w * invstd).astype(np.float32)
    return scale, (b - mean * scale).astype(np.float32)


class _Builder:
    """Turns the fx graph into schema nodes. ``shapes`` says whether fx's shape propagation (a batch of 2) ran;
    when it could not, ``no_shapes`` says why, and the operations that need shapes raise it."""

    def __init__(self, model: nn.Module, real_dtype: str, no_shapes: str | None):
        self.model = model
        self.real = np.float16 if real_dtype == "float16" else np.float32
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.names: dict[fx.Node, str | None] = {}
        self.no_shapes = no_shapes
        self.channels_last: set[fx.Node] = set()   # tensors permuted to (N, H, W, C): the same packed value
        self.pending: dict[fx.Node, tuple] = {}    # chunk/split pieces and the steps of a channel shuffle
        self.constants: dict[fx.Node, torch.Tensor] = {}  # parameters and buffers read in forward

    def add(self, name: str, op: str, inputs: list[str], attrs: dict | None = None, **params) -> str:
        refs = {}
        for key, value in params.items():
            if value is None:
                continue
            refs[key] = f"{name}.{key}"
            self.tensors[refs[key]] = value
        self.nodes.append({"name": name, "op": op, "inputs": inputs, "attrs": attrs or {}, "params": refs})
        return name

    def value(self, arg, where: str, channels_last: bool = False) -> str:
        """The packed value of a tensor argument; ``channels_last``: the op also runs on permuted (N, H, W, C) ones."""
        if not isinstance(arg, fx.Node):
            raise ExportError(f"{where}: unsupported argument {arg!r} (only tensors produced by the model)")
        if arg in self.pending:
            raise ExportError(f"{where}: reads {arg.name!r}, an intermediate of chunk/split or view/transpose that is "
                              "only supported as chunk(..., dim=1)[i] or ShuffleNet's view/transpose/view shuffle")
        if self.names.get(arg) is None:
            what = "a parameter or buffer" if arg in self.constants else repr(arg)
            raise ExportError(f"{where}: unsupported argument {what} (only tensors produced by the model)")
        if arg in self.channels_last and not channels_last:
            raise ExportError(f"{where}: reads {arg.name!r}, a tensor permuted to channels last; only elementwise "
                              "ops, layer_norm over channels, Linear and a permute back run on those")
        return self.names[arg]

    def alias(self, node: fx.Node, src: fx.Node, channels_last: bool | None = None) -> str:
        """``node`` is the same packed value as ``src`` (a no-op view); its layout is src's unless given."""
        if channels_last if channels_last is not None else src in self.channels_last:
            self.channels_last.add(node)
        return self.names[src]

    def emit(self, node: fx.Node, src: fx.Node, op: str, attrs: dict | None = None, **params) -> str:
        """One node reading ``src``, elementwise (it keeps src's layout), named after the fx node."""
        x = self.value(src, _where(node), channels_last=True)
        if src in self.channels_last:
            self.channels_last.add(node)
        return self.add(node.name, op, [x], {**(attrs or {}), "module": _module_path(node)}, **params)

    def shape(self, node: fx.Node, where: str) -> tuple[int, ...]:
        """The shape of a tensor (batch of 2 included) from the shape propagation."""
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        if self.no_shapes or not hasattr(meta, "shape"):
            raise ExportError(f"{where}: needs the tensor shapes, which are unknown: "
                              f"{self.no_shapes or 'no shape was recorded for ' + repr(node)}")
        return tuple(int(v) for v in meta.shape)

    def channel_axis(self, node: fx.Node) -> int:
        """The axis of the channels (or features) of a tensor, in PyTorch's layout of it."""
        rank = len(self.shape(node, _where(node)))
        return 3 if node in self.channels_last else 1 if rank in (2, 4) else -1

    # -- modules ---------------------------------------------------------------------------------
    def module(self, node: fx.Node, m: nn.Module) -> str:
        qual = str(node.target)
        name = node.name
        src = node.args[0]
        if isinstance(m, nn.LayerNorm):
            return self.layer_norm(node, {"input": src, "normalized_shape": m.normalized_shape, "weight": m.weight,
                                          "bias": m.bias, "eps": m.eps})
        if isinstance(m, (nn.Linear, nn.GELU, nn.Dropout, nn.Identity, *ACTIVATION_MODULES)):
            x = self.value(src, qual, channels_last=True)  # these run on channels-last tensors too
            if src in self.channels_last:
                self.channels_last.add(node)
        else:
            x = self.value(src, qual)
        if isinstance(m, BinaryLayer):
            return self.binary(name, x, m, qual, as_conv=src in self.channels_last)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ExportError(f"{qual}: Conv2d padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
            return self.add(name, "conv2d", [x], {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                                  "kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
                                                  "padding": _conv_padding(m), "dilation": _pair(m.dilation),
                                                  "groups": m.groups, "module": qual},
                            weight=_np(m.weight, self.real), bias=None if m.bias is None else _np(m.bias, self.real))
        if isinstance(m, nn.Linear):
            bias = None if m.bias is None else _np(m.bias, self.real)
            if src in self.channels_last:  # a Linear over the channels of each pixel is a 1×1 conv
                return self.add(name, "conv2d", [x], {"in_channels": m.in_features, "out_channels": m.out_features,
                                                      **_POINTWISE, "groups": 1, "module": qual},
                                weight=_np(m.weight[:, :, None, None], self.real), bias=bias)
            return self.add(name, "linear", [x], {"in_features": m.in_features, "out_features": m.out_features,
                                                  "module": qual}, weight=_np(m.weight, self.real), bias=bias)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            scale, shift = _bn_affine(m, qual)
            return self.add(name, "batch_norm", [x], {"module": qual}, scale=scale, shift=shift)
        if isinstance(m, nn.PReLU):
            return self.add(name, "prelu", [x], {"module": qual}, slope=_np(m.weight).reshape(-1))
        if isinstance(m, nn.ReLU):
            return self.add(name, "relu", [x], {"module": qual})
        if isinstance(m, nn.Hardtanh):  # ReLU6 among them
            return self.add(name, "hardtanh", [x], {"min": float(m.min_val), "max": float(m.max_val), "module": qual})
        for cls, op in ACTIVATION_MODULES.items():
            if isinstance(m, cls):
                return self.add(name, op, [x], {"module": qual})
        if isinstance(m, nn.GELU):
            return self.add(name, "gelu", [x], {"approximate": m.approximate, "module": qual})
        if isinstance(m, nn.MaxPool2d):
            return self.max_pool(name, x, qual, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                 m.return_indices)
        if isinstance(m, nn.AvgPool2d):
            return self.avg_pool(name, x, qual, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                 m.count_include_pad, m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive_pool(name, x, qual, m.output_size)
        if isinstance(m, nn.Flatten):
            return self.reshape(node, src, qual)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return self.alias(node, src)
        raise ExportError(f"layer {qual!r} ({type(m).__name__}) is not supported by the packed runtime; supported: "
                          + ", ".join(t.__name__ for t in SUPPORTED_MODULES))

    def binary(self, name: str, x: str, m: BinaryLayer, qual: str, as_conv: bool = False) -> str:
        """A binary layer; ``as_conv``: a BinaryLinear over the channels of each pixel, written as a 1×1 conv."""
        if not m.binarize_input:
            raise ExportError(f"{qual}: {type(m).__name__} with binarize_input=False (binary weights, real "
                              "activations) is not supported by the packed runtime")
        w = m.weight.detach()
        if torch.isnan(w).any():
            raise ExportError(f"{qual}: weights contain NaN")
        spec = m.scaling_spec
        linear = isinstance(m, BinaryLinear)
        if linear and as_conv:
            attrs = {"in_channels": m.in_features, "out_channels": m.out_features, **_POINTWISE, "groups": 1,
                     "pad_value": 0.0}
            bits = pack_signs(_np(w))  # (O, I) is (O, 1, 1, I)
        elif linear:
            attrs = {"in_features": m.in_features, "out_features": m.out_features}
            bits = pack_signs(_np(w))  # (O, I)
        else:
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
        return self.add(name, "binary_conv2d" if as_conv or not linear else "binary_linear", [x], attrs, **params)

    # -- pools (module and functional forms) -------------------------------------------------------
    def max_pool(self, name, x, qual, kernel_size, stride, padding, dilation, ceil_mode, return_indices) -> str:
        if return_indices:
            raise ExportError(f"{qual}: max pooling with return_indices=True is not supported")
        stride = stride if stride not in (None, []) else kernel_size
        return self.add(name, "max_pool2d", [x], {"kernel": _pair(kernel_size), "stride": _pair(stride),
                                                  "padding": list(symmetric_padding(padding)),
                                                  "dilation": _pair(dilation), "ceil_mode": bool(ceil_mode),
                                                  "module": qual})

    def avg_pool(self, name, x, qual, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor) -> str:
        if divisor is not None:
            raise ExportError(f"{qual}: average pooling with divisor_override is not supported")
        stride = stride if stride not in (None, []) else kernel_size
        return self.add(name, "avg_pool2d", [x], {"kernel": _pair(kernel_size), "stride": _pair(stride),
                                                  "padding": list(symmetric_padding(padding)),
                                                  "ceil_mode": bool(ceil_mode),
                                                  "count_include_pad": bool(count_include_pad), "module": qual})

    def adaptive_pool(self, name, x, qual, output_size) -> str:
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if any(s is None for s in size):
            raise ExportError(f"{qual}: adaptive average pooling with a None output size is not supported")
        return self.add(name, "adaptive_avg_pool2d", [x], {"output_size": [int(s) for s in size], "module": qual})

    # -- functions and methods ------------------------------------------------------------------
    def function(self, node: fx.Node) -> str | None:
        return self.call(node, node.target, node.args, node.kwargs)

    def method(self, node: fx.Node) -> str | None:
        return self.call(node, node.target, node.args, node.kwargs)

    def call(self, node: fx.Node, t, args, kwargs) -> str | None:
        """A function (``t`` callable) or tensor method (``t`` its name) of the model's forward."""
        where, path = _where(node), _module_path(node)
        if not self.no_shapes and "tensor_meta" not in node.meta:
            return None  # a Python value (sizes, their arithmetic): feeds view/reshape, checked there by shape
        if t == "size":
            return None
        if t in ARITHMETIC and not (t in (torch.add, torch.sub, "add", "add_", "sub", "sub_") and kwargs):
            return self.arithmetic(node, ARITHMETIC[t], args)
        if t in ACTIVATION_FUNCTIONS or t in ACTIVATION_METHODS:
            op = ACTIVATION_FUNCTIONS[t] if t in ACTIVATION_FUNCTIONS else ACTIVATION_METHODS[t]
            return self.emit(node, args[0], op)
        if t is F.relu6:
            return self.emit(node, args[0], "hardtanh", {"min": 0.0, "max": 6.0})
        if t in SIGNATURES:
            a = _bind(SIGNATURES[t], args, kwargs)
            if t in (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d):
                x = self.value(a.pop("input"), where)
                pool = {F.max_pool2d: self.max_pool, F.avg_pool2d: self.avg_pool,
                        F.adaptive_avg_pool2d: self.adaptive_pool}[t]
                return pool(node.name, x, path or node.name, *a.values())
            if t is F.gelu:
                return self.emit(node, a["input"], "gelu", {"approximate": a["approximate"]})
            if t in (torch.clamp, torch.clip, "clamp", "clamp_", "clip", F.hardtanh):
                lo, hi = (a["min"], a["max"]) if "min" in a else (a["min_val"], a["max_val"])
                if any(isinstance(v, (fx.Node, torch.Tensor)) for v in (lo, hi)):
                    raise ExportError(f"{where}: clamp with tensor bounds is not supported (numbers only)")
                bounds = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
                return self.emit(node, a["input"], "hardtanh", bounds)
            if t is F.layer_norm:
                return self.layer_norm(node, a)
            if t in (torch.mean, "mean", torch.amax, "amax"):
                return self.reduce(node, a, "mean" if t in (torch.mean, "mean") else "max")
            if t in (torch.chunk, "chunk", torch.split, "split"):
                return self.pieces(node, a)
            if t in (torch.cat, torch.concat):
                return self.concat(node, a)
        if t is operator.getitem and isinstance(args[0], fx.Node) and args[0] in self.pending:
            return self.piece(node, args[0], args[1])
        if t in (torch.flatten, torch.reshape, "flatten", "view", "reshape"):
            return self.reshape(node, args[0], where)
        if t in (torch.permute, "permute"):
            return self.permute(node, args[0], args[1:] if len(args) > 2 or isinstance(args[1], int) else args[1])
        if t in (torch.transpose, "transpose", torch.swapaxes, "swapaxes"):
            return self.transpose(node, args[0], args[1], args[2])
        if t == "contiguous":
            src = args[0]
            if src in self.pending:
                self.pending[node] = self.pending[src]
                return None
            self.value(src, where, channels_last=True)
            return self.alias(node, src)
        if getattr(t, "__name__", "") == "stochastic_depth" and getattr(t, "__module__", "").startswith("torchvision"):
            if _bind(_stochastic_depth, args, kwargs)["training"]:
                raise ExportError(f"{where}: stochastic_depth in training mode")
            self.value(args[0], where, channels_last=True)
            return self.alias(node, args[0])  # the identity in eval mode
        kind = "tensor method" if isinstance(t, str) else "operation"
        raise ExportError(f"{kind} {getattr(t, '__name__', t)!r} ({where}) is not supported by the packed runtime; "
                          f"supported: {SUPPORTED_FUNCTIONS}")

    def arithmetic(self, node: fx.Node, op: str, args) -> str:
        """x (op) y of two tensors, or of a tensor and a number or per-channel constant (as a batch_norm)."""
        where = _where(node)
        if len(args) != 2:
            raise ExportError(f"{where}: {op} takes two operands")
        tensors = [isinstance(a, fx.Node) and self.names.get(a) is not None for a in args]
        if all(tensors):
            x, y = args
            if (x in self.channels_last) != (y in self.channels_last):
                raise ExportError(f"{where}: combines a channels-last tensor with a channels-first one")
            if len(self.shape(x, where)) != len(self.shape(y, where)):
                raise ExportError(f"{where}: combines tensors of shapes {self.shape(x, where)} and "
                                  f"{self.shape(y, where)}; only equal ranks broadcast")
            out = self.add(node.name, op, [self.value(x, where, True), self.value(y, where, True)],
                           {"module": _module_path(node)})
            if x in self.channels_last:
                self.channels_last.add(node)
            return out
        if not any(tensors):
            raise ExportError(f"{where}: {op} of {args!r}: one operand must be a tensor produced by the model")
        index = tensors.index(True)
        src, other = args[index], args[1 - index]
        shape = self.shape(src, where)
        axis = self.channel_axis(src)
        channels = shape[axis]
        target = [1] * len(shape)
        target[axis] = channels
        const = self.constants.get(other, other)
        if isinstance(const, torch.Tensor):
            const = const.detach().to(torch.float64)
            if const.dim() > len(shape) or torch.broadcast_shapes(const.shape, target) != tuple(target):
                raise ExportError(f"{where}: {op} with a constant of shape {tuple(const.shape)}; only numbers and "
                                  f"per-channel constants (broadcasting to {tuple(target)}) are supported")
            const = const.broadcast_to(target).reshape(-1).numpy()
        elif isinstance(const, (int, float)) and not isinstance(const, bool):
            const = np.full(channels, float(const))
        else:
            raise ExportError(f"{where}: {op} with {other!r} is not supported (a tensor, number or per-channel "
                              "constant)")
        ones, zeros = np.ones(channels), np.zeros(channels)
        scale, shift = {"add": (ones, const), "mul": (const, zeros),
                        "sub": (ones, -const) if index == 0 else (-ones, const)}[op]
        return self.emit(node, src, "batch_norm", scale=scale.astype(np.float32), shift=shift.astype(np.float32))

    def layer_norm(self, node: fx.Node, a: dict) -> str:
        where, src = _where(node), a["input"]
        shape = self.shape(src, where)
        if not (src in self.channels_last or len(shape) == 2) or tuple(a["normalized_shape"]) != (shape[-1],):
            raise ExportError(f"{where}: layer_norm over {tuple(a['normalized_shape'])} of a tensor of shape "
                              f"{shape}: only over the channels (permuted last) or the features of a vector")
        params = {}
        for key in ("weight", "bias"):
            v = a[key]
            if isinstance(v, fx.Node):
                if v not in self.constants:
                    raise ExportError(f"{where}: layer_norm {key} must be a parameter of the model")
                v = self.constants[v]
            if v is not None:
                params[key] = _np(v)
        return self.emit(node, src, "layer_norm", {"eps": float(a["eps"])}, **params)

    def reduce(self, node: fx.Node, a: dict, mode: str) -> str:
        where, src = _where(node), a["input"]
        shape = self.shape(src, where)
        spatial = (1, 2) if src in self.channels_last else (2, 3)
        if a.get("dtype") is not None or len(shape) != 4 or a["dim"] is None or _dims(a["dim"], 4) != spatial:
            raise ExportError(f"{where}: {'mean' if mode == 'mean' else 'amax'} over {a['dim']!r} of a tensor of "
                              f"shape {shape}: only over H and W of a feature map")
        keepdim = bool(a["keepdim"])
        if keepdim and src in self.channels_last:
            raise ExportError(f"{where}: keepdim on a channels-last tensor is not supported")
        return self.add(node.name, "global_pool", [self.value(src, where, True)],
                        {"mode": mode, "keepdim": keepdim, "module": _module_path(node)})

    def pieces(self, node: fx.Node, a: dict) -> None:
        """chunk/split along channels: remembered until getitem picks a piece (a channel_slice)."""
        where, src = _where(node), a["input"]
        shape = self.shape(src, where)
        if len(shape) not in (2, 4) or _dims(a["dim"], len(shape)) != (self.channel_axis(src) % len(shape),):
            raise ExportError(f"{where}: chunk/split along dim {a['dim']!r} of a tensor of shape {shape}: only "
                              "along the channels")
        channels = shape[self.channel_axis(src)]
        if "chunks" in a:
            size = -(-channels // int(a["chunks"]))
            sizes = [min(size, channels - start) for start in range(0, channels, size)]
        elif isinstance(a["split_size_or_sections"], int):
            size = a["split_size_or_sections"]
            sizes = [min(size, channels - start) for start in range(0, channels, size)]
        else:
            sizes = [int(v) for v in a["split_size_or_sections"]]
        bounds = np.cumsum([0] + sizes).tolist()
        self.value(src, where, channels_last=True)
        self.pending[node] = ("pieces", src, list(zip(bounds[:-1], bounds[1:])))
        return None

    def piece(self, node: fx.Node, src: fx.Node, index) -> str:
        kind, tensor, *rest = self.pending[src]
        if kind != "pieces" or not isinstance(index, int) or not -len(rest[0]) <= index < len(rest[0]):
            raise ExportError(f"{_where(node)}: indexing {src.name!r} with {index!r} is not supported")
        start, stop = rest[0][index]
        return self.emit(node, tensor, "channel_slice", {"start": start, "stop": stop})

    def concat(self, node: fx.Node, a: dict) -> str:
        where, parts = _where(node), list(a["tensors"])
        if not parts or not all(isinstance(p, fx.Node) for p in parts):
            raise ExportError(f"{where}: torch.cat of {parts!r}: only tensors produced by the model")
        layouts = {p in self.channels_last for p in parts}
        shape = self.shape(parts[0], where)
        if len(layouts) > 1 or _dims(a["dim"], len(shape)) != (self.channel_axis(parts[0]) % len(shape),):
            raise ExportError(f"{where}: torch.cat along dim {a['dim']!r} of tensors of shape {shape}: only along "
                              "the channels, in one layout")
        names = [self.value(p, where, channels_last=True) for p in parts]
        if len(names) == 1:
            return self.alias(node, parts[0])
        if parts[0] in self.channels_last:
            self.channels_last.add(node)
        return self.add(node.name, "concat", names, {"module": _module_path(node)})

    def reshape(self, node: fx.Node, src, where: str) -> str | None:
        """flatten/view/reshape: to (N, features), a no-op, or a step of ShuffleNet's channel shuffle."""
        shape, out = self.shape(src, where), self.shape(node, where)
        pending = self.pending.get(src)
        if pending is not None and pending[0] == "swapped" and out == pending[3]:
            return self.emit(node, pending[1], "channel_shuffle", {"groups": pending[2]})
        x = self.value(src, where)
        if out == shape:
            return self.alias(node, src)
        if len(shape) == 4 and len(out) == 5 and out[0] == shape[0] and out[1] * out[2] == shape[1] \
                and out[3:] == shape[2:]:
            self.pending[node] = ("grouped", src, out[1], shape)
            return None
        if len(out) == 2 and out[0] == shape[0]:  # (N, C·H·W) in PyTorch's order
            return self.add(node.name, "flatten", [x], {"module": _module_path(node)})
        raise ExportError(f"{where}: reshaping {shape} to {out} is not supported (to (N, features), or ShuffleNet's "
                          "channel shuffle)")

    def transpose(self, node: fx.Node, src, d0, d1) -> None:
        pending = self.pending.get(src)
        if pending is None or pending[0] != "grouped" or _dims((d0, d1), 5) != (1, 2):
            raise ExportError(f"{_where(node)}: transpose({d0}, {d1}) is only supported as the middle step of "
                              "ShuffleNet's channel shuffle (view (N, groups, C/groups, H, W), transpose(1, 2), view)")
        self.pending[node] = ("swapped", pending[1], pending[2], pending[3])
        return None

    def permute(self, node: fx.Node, src, dims) -> str:
        where = _where(node)
        x = self.value(src, where, channels_last=True)
        order = tuple(int(d) % 4 for d in dims)
        last = src in self.channels_last
        if order == (0, 1, 2, 3):
            return self.alias(node, src)
        if order == (0, 2, 3, 1) and not last:
            return self.alias(node, src, channels_last=True)
        if order == (0, 3, 1, 2) and last:
            return self.alias(node, src, channels_last=False)
        raise ExportError(f"{where}: permute{tuple(dims)} of {x!r} is not supported; only to channels last "
                          "(0, 2, 3, 1) and back (0, 3, 1, 2)")


_POINTWISE = {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1]}


def _shapes(traced: fx.Graph, model: nn.Module, shape: tuple[int, ...] | str) -> str | None:
    """Record every tensor's shape in ``traced`` (fx shape propagation, a batch of 2) for inputs of ``shape``;
    or why it could not (``shape`` may already say why)."""
    if isinstance(shape, str):
        return shape
    from torch.fx.passes.shape_prop import ShapeProp

    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    try:  # ShapeProp prints the traceback of a failing node itself: the message below says what failed
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(fx.GraphModule(model, traced)).propagate(torch.zeros(2, *shape, dtype=dtype))
    except Exception as err:  # e.g. an input size too small for the model: the schema names the node later
        what = f"vectors of {shape[0]} features" if len(shape) == 1 else "inputs of " + "x".join(map(str, shape))
        return f"the model does not run on {what}: {err.__cause__ or err}"
    return None


def trace(model: nn.Module, input_size: tuple[int, ...] | None, *, in_channels: int | None = None,
          real_dtype: str = "float32", meta: dict | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The validated packed graph and tensors of ``model`` (in eval mode) for inputs of ``input_size``.

    ``input_size`` is (h, w) for images (N, C, H, W), or (features,) for vectors (N, features); () or None
    with a model whose first layer is a Linear reading the input also means vectors (of ``in_channels`` or
    that layer's in_features). ``in_channels`` defaults to the first conv or linear layer's; ``meta`` adds
    the schema's optional graph fields (preprocess, num_classes, producer, real_dtype).
    """
    if real_dtype not in ("float32", "float16"):
        raise ValueError(f"real_dtype must be 'float32' or 'float16', got {real_dtype!r}")
    try:
        traced = _Tracer().trace(model)
    except Exception as err:  # fx cannot follow data-dependent Python control flow
        raise ExportError(f"cannot trace {type(model).__name__} with torch.fx: {err}") from err
    modules = dict(model.named_modules())
    shape = _input_shape(input_size, in_channels, _first_layer(traced, modules))
    b = _Builder(model, real_dtype, _shapes(traced, model, shape))
    output = None
    input_name = None
    for node in traced.nodes:
        if node.op == "placeholder":
            if input_name is not None:
                raise ExportError("models with more than one input are not supported")
            input_name = node.name
            b.names[node] = node.name
        elif node.op == "get_attr":
            b.constants[node] = operator.attrgetter(node.target)(model)
            b.names[node] = None
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
    if isinstance(shape, str):
        raise ExportError(shape)
    graph = {"input": {"name": input_name, "channels": shape[0], "size": list(shape[1:])},
             "output": output, "nodes": b.nodes, **(meta or {}), "real_dtype": real_dtype}
    try:
        return Graph.from_json(graph, b.tensors, f"exporting {type(model).__name__}"), b.tensors
    except ModelFormatError as err:  # e.g. an input size the model cannot take: say what PyTorch said of it too
        raise ExportError(str(err) + (f" ({b.no_shapes})" if b.no_shapes else "")) from None
