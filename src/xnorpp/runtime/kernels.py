"""The runtime's kernels: one builder per op, registered by name, each turning a planned step into a function.

A builder gets a :class:`~xnorpp.packed.plan.Step` (a validated node, with what the plan fused into
it) and the file's tensors, and returns ``fn(*inputs) -> output`` on NHWC float32 arrays
(``(N, H, W, C)`` feature maps, ``(N, F)`` vectors) or, where the plan hands bits over, on the core's
packed words. Shapes were validated at load, so nothing here re-derives geometry: sizes come from
the step. Adding an op: describe it in :data:`xnorpp.packed.schema.OPS`, then register a builder here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import _core
from ..packed import bits
from ..packed.plan import Step
from ..packed.schema import Node
from ..scaling import FACTOR_AXES

Kernel = Callable[..., np.ndarray]
KERNELS: dict[str, Callable[[Step, "Tensors"], Kernel]] = {}


def kernel(*ops: str):
    """Register a builder for ``ops``."""
    def register(builder):
        for op in ops:
            KERNELS[op] = builder
        return builder

    return register


class Tensors:
    """The parameters of a file's nodes as contiguous float32 (or raw) arrays."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self._tensors = tensors

    def __call__(self, node: Node | None, key: str) -> np.ndarray | None:
        if node is None or key not in node.params:
            return None
        t = self._tensors[node.params[key]]
        return np.ascontiguousarray(t) if t.dtype == np.uint8 else np.ascontiguousarray(t, dtype=np.float32)


def _hw(shape) -> tuple[int, int]:
    return (shape[1], shape[2]) if len(shape) == 3 else (1, 1)


def _activation(act: Node | None, channels: int, t: Tensors) -> dict:
    """The core's fused-activation arguments (slope, relu) for a prelu/relu node, or none."""
    if act is None:
        return {"slope": None, "relu": False}
    if act.op == "relu":
        return {"slope": None, "relu": True}
    slope = t(act, "slope")
    return {"slope": np.ascontiguousarray(np.broadcast_to(slope, (channels,)), dtype=np.float32), "relu": False}


def _epilogue(step: Step, ops: tuple[str, ...]) -> Node | None:
    return next((n for n in step.epilogue if n.op in ops), None)


# ----------------------------------------------------------------------------- binary layers
def binary_scale(node: Node, t: Tensors) -> dict[str, np.ndarray]:
    """The output scale of a binary layer as BinaryConv takes it: α or Γ per channel (``scale``), a factored Γ
    (``scale_rows`` (OH, O) times ``scale_pos`` (OH, OW)), or a full Γ (``scale_map``, (OH, OW, O)).

    Γ's factors are multiplied in the layer's order, as PyTorch does. When the last factor spans no channel
    and the others no column (α ⊗ β ⊗ γ, α ⊗ β_hw), the product of the others is kept per row and the last
    one per position, and the kernel multiplies the two: the same float32 as the full map, without its
    OH·OW·O values (800 KB at 56×56×64) to keep and stream through the cache at every call.
    """
    spec = node.scaling
    if spec.analytic_alpha:
        return {"scale": t(node, "alpha")}
    if not spec.learned:
        return {}
    if not spec.spatial:
        return {"scale": t(node, spec.factors[0])}

    def product(names):  # broadcastable to (o, h, w)
        gamma = None
        for name in names:
            axes = FACTOR_AXES[name]
            value = t(node, name)
            f = value.reshape([value.shape[axes.index(ax)] if ax in axes else 1 for ax in ("o", "h", "w")])
            gamma = f if gamma is None else gamma * f
        return gamma

    o, oh, ow = node.shape
    *first, last = spec.factors
    if first and "o" not in FACTOR_AXES[last] and all("w" not in FACTOR_AXES[f] for f in first):
        rows = np.broadcast_to(product(first), (o, oh, 1))[:, :, 0].T
        pos = np.broadcast_to(product([last])[0], (oh, ow))
        return {"scale_rows": np.ascontiguousarray(rows, dtype=np.float32),
                "scale_pos": np.ascontiguousarray(pos, dtype=np.float32)}
    gamma = np.broadcast_to(product(spec.factors), node.shape)
    return {"scale_map": np.ascontiguousarray(gamma.transpose(1, 2, 0), dtype=np.float32)}


def magnitude_map(x: np.ndarray, node: Node) -> np.ndarray:
    """XNOR-Net's K for a binary conv: mean over channels of |x|, box-filtered with zero padding; (N, OH, OW)."""
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    top, bottom, left, right = a["padding"]
    _, oh, ow = node.shape
    mean_abs = np.abs(x).mean(axis=-1, dtype=np.float32)
    padded = np.pad(mean_abs, ((0, 0), (top, bottom), (left, right)))
    box = np.float32(1.0 / (kh * kw))
    k = np.zeros((x.shape[0], oh, ow), dtype=np.float32)
    for ky in range(kh):  # taps: as many as the kernel the file's weights hold
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            k += padded[:, y0:y0 + sh * (oh - 1) + 1:sh, x0:x0 + sw * (ow - 1) + 1:sw] * box
    return k


@kernel("binary_conv2d", "binary_linear")
def binary(step: Step, t: Tensors) -> Kernel:
    node, a = step.node, step.node.attrs
    linear = node.op == "binary_linear"
    o = node.shape[0]
    c = a["in_features"] if linear else a["in_channels"]
    groups = 1 if linear else a["groups"]
    kernel_hw = (1, 1) if linear else a["kernel"]
    words = bits.to_words(t(node, "weight_bits"), o, kernel_hw, c // groups)
    scales = binary_scale(node, t)
    act = _epilogue(step, ("prelu", "relu"))
    slope = None
    if act is not None:  # ReLU is PReLU with slope 0 in the binary output stage
        slope = _activation(act, o, t)["slope"] if act.op == "prelu" else np.zeros(o, np.float32)
    bits_reader = step.bits_out or step.bits_too  # the binary step that reads this one's output as bits
    receiver = bits_reader.input_affine if bits_reader else None
    geometry = {} if linear else {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"],
                                  "pad_value": a["pad_value"]}
    conv = _core.BinaryConv(words, c, _hw(node.in_shapes[0]), _hw(node.shape), groups,
                            **scales, bias=t(node, "bias"), slope=slope,
                            post_mul=t(receiver, "scale"), post_add=t(receiver, "shift"), **geometry)
    in_scale, in_shift = t(step.input_affine, "scale"), t(step.input_affine, "shift")
    magnitude = node.scaling.analytic_k
    out = _core.Output.packed if step.bits_out else _core.Output.float_and_bits if step.bits_too else _core.Output.float

    def pack(x):
        kmap = None
        if magnitude:
            kmap = np.abs(x).mean(axis=-1, dtype=np.float32) if linear else magnitude_map(x, node)
        return _core.pack(x, "nhwc", groups, in_scale, in_shift), kmap

    run = None
    if not (magnitude or set(scales) - {"scale"} or bits_reader or step.residual_add):
        run = _small_groups(step, t, scales.get("scale"), slope)
    if run is None:
        def run(x, residual=None):  # residual: the other input of a fused add (plan.py)
            if step.bits_in:
                return conv.forward(x, None, out, residual)
            return conv.forward(*pack(x), out, residual)

    def dots(x):
        """Integer dot products sign(x') ⊛ sign(W) (int32), x' = x with the input affine applied."""
        return conv.forward(pack(x)[0], None, _core.Output.int32)

    run.layer, run.dots = conv, dots
    return run


# Channels per group up to which a grouped binary conv runs as a real conv of its ±1 signs: the packed kernel
# gives each group whole words and a whole register tile of output channels, so a depthwise conv keeps 1 of 32
# bits and 1 of 32-64 lanes busy (1200-2000× the dense time per multiply-accumulate; 2-7× less this way).
# Products of ±1 summed in float32 are exact integers below 2^24, so the result is the same. From 4 channels
# per group the packed kernel is as fast or faster on AVX-512 (benchmarks/README.md, grouped binary convs).
SMALL_GROUP = 2


def _small_groups(step: Step, t: Tensors, scale, slope) -> Kernel | None:
    """A grouped binary conv with few channels per group, as the core's grouped/depthwise real conv of the
    signs: the same dot products (exact), then ·scale + bias and PReLU, the binary output stage's operations."""
    node, a = step.node, step.node.attrs
    if node.op != "binary_conv2d" or a["groups"] == 1 or step.bits_in:
        return None
    cg, (kh, kw) = a["in_channels"] // a["groups"], a["kernel"]
    if cg > SMALL_GROUP or cg * kh * kw >= 2 ** 24:
        return None
    o = node.shape[0]
    weight = bits.to_signs(t(node, "weight_bits"), o, (kh, kw), cg)
    pad_value = np.float32(a["pad_value"])
    padding = a["padding"] if pad_value == 0 else (0, 0, 0, 0)  # zero padding of the signs: PyTorch's
    in_hw = _hw(node.in_shapes[0])
    top, bottom, left, right = a["padding"]
    if pad_value != 0:
        in_hw = (in_hw[0] + top + bottom, in_hw[1] + left + right)
    conv = _core.FloatConv(weight, in_hw, _hw(node.shape), a["stride"], padding, a["dilation"], a["groups"],
                           scale=scale, shift=t(node, "bias"), slope=slope)
    in_scale, in_shift = t(step.input_affine, "scale"), t(step.input_affine, "shift")
    one = np.float32(1)

    def run(x):
        if in_scale is not None or in_shift is not None:  # x·scale, then + shift: two roundings, as the packer
            x = x * in_scale if in_scale is not None else x.copy()
            if in_shift is not None:
                x += in_shift
        if np.isnan(x).any():
            raise _core.NaNError("input contains NaN; a NaN has no sign (the packed runtime refuses it)")
        signs = np.multiply(x < 0, np.float32(-2), dtype=np.float32)
        signs += one  # sign(0) = sign(-0) = +1
        if pad_value != 0:
            signs = np.pad(signs, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
        return conv.forward(signs)

    return run


# ----------------------------------------------------------------------------- real layers
@kernel("conv2d", "linear")
def real_conv(step: Step, t: Tensors) -> Kernel:
    node, a = step.node, step.node.attrs
    weight = t(node, "weight")
    if node.op == "linear":
        weight = weight[:, :, None, None]
    bn, act = _epilogue(step, ("batch_norm",)), _epilogue(step, ("prelu", "relu"))
    o = node.shape[0]
    geometry = {} if node.op == "linear" else {"stride": a["stride"], "padding": a["padding"],
                                               "dilation": a["dilation"], "groups": a["groups"]}
    conv = _core.FloatConv(np.ascontiguousarray(weight), _hw(node.in_shapes[0]), _hw(node.shape),
                           bias=t(node, "bias"), scale=t(bn, "scale"), shift=t(bn, "shift"),
                           **_activation(act, o, t), **geometry)
    if node.op == "linear":  # a 1×1 conv on (N, 1, 1, F): no BLAS threads spinning against the kernel pool
        return lambda x: conv.forward(x.reshape(x.shape[0], 1, 1, -1)).reshape(x.shape[0], o)
    return conv.forward


# ----------------------------------------------------------------------------- the int8 input layer
INT8_WEIGHT_MAX = 64  # weights in [-64, 64]: a pair of products 255·64·2 < 2^15 stays exact on AVX2 (core.h)


def _int8_weights(weight: np.ndarray, std) -> tuple[np.ndarray, np.ndarray]:
    """(w_q (O, KH, KW, C) in [-64, 64], scale (O,)): W / (255·std) per pixel code, rounded per output channel."""
    folded = weight.astype(np.float64).transpose(0, 2, 3, 1) / (255.0 * np.asarray(std, np.float64))
    scale = np.abs(folded).reshape(len(folded), -1).max(axis=1) / INT8_WEIGHT_MAX
    scale[scale == 0] = 1.0
    return np.clip(np.rint(folded / scale[:, None, None, None]), -INT8_WEIGHT_MAX, INT8_WEIGHT_MAX), scale


def int8_rounded_weight(weight: np.ndarray, std) -> np.ndarray:
    """The float weights (O, C, KH, KW) that the int8 input layer computes with exactly: W̃ = scale·w_q·255·std.

    A PyTorch model with its first conv's weights replaced by these gives the int8 layer's results (up to
    float rounding), the reference for checking it."""
    codes_weight, scale = _int8_weights(weight, std)
    rounded = codes_weight * scale[:, None, None, None] * (255.0 * np.asarray(std, np.float64))
    return rounded.transpose(0, 3, 1, 2)


def int8_input_layer(step: Step, t: Tensors, mean, std) -> Kernel:
    """The input conv in integers (docs/design.md, "The int8 input layer").

    An image normalized as x = (v - mean) / std with 8-bit pixels v = code / 255 is coded back to its
    pixels exactly, so the input loses nothing; the weights, with 255·std folded in, are rounded to 7 bits
    and sign per output channel: W ≈ W̃ = scale_o·w_q·255·std. Since code = 255·(std·x + mean),
    y = scale_o·Σ w_q·code - Σ over in-image taps of scale_o·w_q·255·mean = conv(x, W̃) exactly (up to
    float rounding); the second term is a per-tap offset, so that taps on the zero padding (x = 0, not
    code 0) contribute nothing, as in the float layer.
    """
    node, a = step.node, step.node.attrs
    c = a["in_channels"]
    mean = np.broadcast_to(np.asarray(mean, np.float64), (c,))
    std = np.broadcast_to(np.asarray(std, np.float64), (c,))
    codes_weight, scale = _int8_weights(t(node, "weight"), std)
    o, kh, kw, _ = codes_weight.shape
    tap_offset = -(scale[:, None, None, None] * codes_weight * (255.0 * mean)).sum(axis=3).reshape(o, kh * kw).T
    bn, act = _epilogue(step, ("batch_norm",)), _epilogue(step, ("prelu", "relu"))
    conv = _core.Int8InputConv(
        np.ascontiguousarray(codes_weight, dtype=np.int8), scale.astype(np.float32),
        tap_offset.sum(axis=0).astype(np.float32), np.ascontiguousarray(tap_offset, dtype=np.float32),
        (255.0 * std).astype(np.float32), (255.0 * mean).astype(np.float32), _hw(node.in_shapes[0]),
        _hw(node.shape), stride=a["stride"], padding=a["padding"], dilation=a["dilation"], bias=t(node, "bias"),
        bn_scale=t(bn, "scale"), bn_shift=t(bn, "shift"), **_activation(act, o, t))
    return conv.forward


@kernel("batch_norm", "prelu")
def channel_affine(step: Step, t: Tensors) -> Kernel:
    """x·scale + shift per channel (last axis), then PReLU/ReLU: one pass in the core."""
    node = step.node
    channels = node.shape[0]
    if node.op == "prelu":
        slope = t(node, "slope")
        if slope.size == 1:
            return lambda x: np.where(x > 0, x, x * slope).astype(np.float32, copy=False)
        fused = _activation(node, channels, t)
        return lambda x: _core.channel_affine(x, None, None, fused["slope"], False)
    fused = _activation(_epilogue(step, ("prelu", "relu")), channels, t)
    scale, shift = t(node, "scale"), t(node, "shift")
    return lambda x: _core.channel_affine(x, scale, shift, fused["slope"], fused["relu"])


@kernel("relu")
def relu(step: Step, t: Tensors) -> Kernel:
    return lambda x: np.maximum(x, np.float32(0))


@kernel("hardtanh")
def hardtanh(step: Step, t: Tensors) -> Kernel:
    a = step.node.attrs
    lo, hi = (np.float32(a[k]) if k in a else None for k in ("min", "max"))
    return lambda x: np.clip(x, lo, hi)


_THREE, _SIX = np.float32(3), np.float32(6)


@kernel("hardswish")
def hardswish(step: Step, t: Tensors) -> Kernel:
    return lambda x: x * np.clip(x + _THREE, np.float32(0), _SIX) / _SIX  # PyTorch's float32 order


@kernel("hardsigmoid")
def hardsigmoid(step: Step, t: Tensors) -> Kernel:
    return lambda x: np.clip(x + _THREE, np.float32(0), _SIX) / _SIX


# The float activations follow PyTorch's float32 formulas where they saturate, so that both give the same
# sign at the extremes (silu(-100) is -0.0 in PyTorch: a float64 value rounded to float32 would be negative).
_ONE, _HALF = np.float32(1), np.float32(0.5)


def _exp_neg(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(-x)  # float32: inf below -88.7, as in PyTorch


@kernel("sigmoid")
def sigmoid(step: Step, t: Tensors) -> Kernel:
    return lambda x: _ONE / (_ONE + _exp_neg(x))


@kernel("silu")
def silu(step: Step, t: Tensors) -> Kernel:
    return lambda x: x / (_ONE + _exp_neg(x))


@kernel("tanh")
def tanh(step: Step, t: Tensors) -> Kernel:
    return lambda x: np.tanh(x.astype(np.float64)).astype(np.float32)


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function in float64, relative error below 1.2e-7 everywhere.

    numpy has no erf; this is the Chebyshev fit of Press et al., Numerical Recipes (2nd ed.), §6.2 (erfcc).
    """
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(-z * z + poly)
    return np.where(x >= 0, r, 2.0 - r)


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array, rounded to float32: absolute error below 1.2e-7·(1 ± erf), so the tails are exact
    to float32 (erf rounds to ±1 where PyTorch's does, up to the last bit of PyTorch's own approximation)."""
    z = x.astype(np.float64)
    return np.where(z >= 0, 1.0 - erfc(z), erfc(-z) - 1.0).astype(np.float32)


@kernel("gelu")
def gelu(step: Step, t: Tensors) -> Kernel:
    """PyTorch's float32 formulas: x·0.5·(1 + erf(x/√2)), or x·0.5·(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    if step.node.attrs["approximate"] == "tanh":
        beta, kappa = np.float32(np.sqrt(2.0 / np.pi)), np.float32(0.044715)

        def inner(x):
            return np.tanh((beta * (x + kappa * x * x * x)).astype(np.float64)).astype(np.float32)
    else:
        alpha = np.float32(1 / np.sqrt(2.0))

        def inner(x):
            return erf(x * alpha)

    return lambda x: x * _HALF * (_ONE + inner(x))


@kernel("layer_norm")
def layer_norm(step: Step, t: Tensors) -> Kernel:
    """Normalize over the last axis (the channels of an NHWC map, the features of a vector), in float64."""
    eps, weight, bias = step.node.attrs["eps"], t(step.node, "weight"), t(step.node, "bias")

    def run(x):
        x = x.astype(np.float64)
        centered = x - x.mean(axis=-1, keepdims=True)
        y = centered / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return y.astype(np.float32)

    return run


@kernel("identity")
def identity(step: Step, t: Tensors) -> Kernel:
    return lambda x: x


@kernel("add")
def add(step: Step, t: Tensors) -> Kernel:
    return lambda x, y: x + y  # NHWC arrays broadcast as the NCHW values do: a (C, 1, 1) is (1, 1, C)


@kernel("sub")
def sub(step: Step, t: Tensors) -> Kernel:
    return lambda x, y: x - y


@kernel("mul")
def mul(step: Step, t: Tensors) -> Kernel:
    return lambda x, y: x * y


@kernel("concat")
def concat(step: Step, t: Tensors) -> Kernel:
    return lambda *xs: np.concatenate(xs, axis=-1)  # channels (or features) are the last axis


@kernel("channel_slice")
def channel_slice(step: Step, t: Tensors) -> Kernel:
    start, stop = step.node.attrs["start"], step.node.attrs["stop"]
    return lambda x: np.ascontiguousarray(x[..., start:stop])


@kernel("channel_shuffle")
def channel_shuffle(step: Step, t: Tensors) -> Kernel:
    """Output channel j·groups + i is input channel i·(C/groups) + j (view, transpose(1, 2), view)."""
    groups = step.node.attrs["groups"]

    def run(x):
        n, h, w, c = x.shape
        return np.ascontiguousarray(x.reshape(n, h, w, groups, c // groups).transpose(0, 1, 2, 4, 3)).reshape(x.shape)

    return run


@kernel("flatten")
def flatten(step: Step, t: Tensors) -> Kernel:
    """PyTorch's flatten(x, 1) of an NCHW tensor, from the NHWC array."""
    def run(x):
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    return run


# ----------------------------------------------------------------------------- pooling
@kernel("max_pool2d")
def max_pool(step: Step, t: Tensors) -> Kernel:
    a = step.node.attrs
    args = (a["kernel"], a["stride"], a["padding"], a["dilation"], _hw(step.shape))
    return lambda x: _core.max_pool2d(x, *args)


@kernel("avg_pool2d")
def avg_pool(step: Step, t: Tensors) -> Kernel:
    a = step.node.attrs
    args = (a["kernel"], a["stride"], a["padding"], _hw(step.shape), a["count_include_pad"])
    return lambda x: _core.avg_pool2d(x, *args)


def _tiled_mean(window: tuple[int, int], out_size: tuple[int, int]) -> Kernel:
    """Mean over disjoint windows that tile the input exactly (global pooling among them): the unit's average
    pooling with the window as its stride, summed in float32 as PyTorch's adaptive pooling sums. (numpy's mean
    over the window axes of a reshaped view: 12 µs for ResNet-18's 7×7×512 head alone, 71 µs inside the
    network, against 6 µs.)"""
    args = (window, window, (0, 0, 0, 0), out_size, True)
    return lambda x: _core.avg_pool2d(x, *args)


@kernel("adaptive_avg_pool2d")
def adaptive_avg_pool(step: Step, t: Tensors) -> Kernel:
    node = step.node
    _, h, w = node.in_shapes[0]
    _, oh, ow = node.shape
    if h % oh == 0 and w % ow == 0:  # equal windows (global pooling among them)
        return _tiled_mean((h // oh, w // ow), (oh, ow))
    rows = _window_bounds(h, oh)
    cols = _window_bounds(w, ow)

    def run(x):
        """Window means, rows then columns, summed in float64: exact where a window holds one value or only zeros."""
        by_rows = _window_sums(x.astype(np.float64), rows, axis=1)
        return np.ascontiguousarray(_window_sums(by_rows, cols, axis=2), dtype=np.float32)

    return run


def _window_bounds(size: int, out: int) -> np.ndarray:
    """PyTorch's adaptive windows [start, end) of each output index, interleaved: start0, end0, start1, ..."""
    i = np.arange(out)
    return np.stack([i * size // out, -(-(i + 1) * size // out)], axis=1).reshape(-1)


def _window_sums(x: np.ndarray, bounds: np.ndarray, axis: int) -> np.ndarray:
    """Means of x over the windows ``bounds`` along ``axis`` (windows may overlap): one reduceat, no Python loop."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1)  # reduceat's indices must be valid: an end may be the size itself
    sums = np.add.reduceat(np.pad(x, pad), bounds, axis=axis)
    counts = (bounds[1::2] - bounds[0::2]).astype(np.float64)
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.take(sums, np.arange(0, len(bounds), 2), axis=axis) / counts.reshape(shape)


@kernel("global_pool")
def global_pool(step: Step, t: Tensors) -> Kernel:
    """Mean (accumulated in float64) or max over H and W."""
    mode, keepdim = step.node.attrs["mode"], step.node.attrs["keepdim"]

    def run(x):
        if mode == "mean":
            y = x.mean(axis=(1, 2), dtype=np.float64, keepdims=keepdim).astype(np.float32)
        else:
            y = x.max(axis=(1, 2), keepdims=keepdim)
        return np.ascontiguousarray(y)

    return run
