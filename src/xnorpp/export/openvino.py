"""A packed model (``.xnor``) as an OpenVINO IR, its binary layers as OpenVINO's BinaryConvolution (no PyTorch).

>>> from xnorpp.export import to_openvino
>>> to_openvino("model.xnor", "ir")   # ir/model.xml, ir/model.bin; xnorpp export model.xnor --format openvino -o ir

The IR is built from the validated packed graph (:mod:`xnorpp.packed`), node by node. The op that does a node's
work carries the node's name, its helpers ``<node>/<role>``, so that OpenVINO's layers and profiling counters
name the packed nodes. The input is NCHW float32 ((N, F) for a model of vectors), as the PyTorch model takes it,
of a fixed batch (OpenVINO's CPU BinaryConvolution refuses dynamic shapes). Binary layers (docs/design.md, "The
OpenVINO export"):

* the sign is a FakeQuantize with 2 levels, input low = high = a threshold t per channel and outputs 0 and 1:
  x > t gives 1, which BinaryConvolution's ``xnor-popcount`` reads as +1 and 0 as -1. A batch norm read by the
  sign is folded into t exactly (:func:`sign_thresholds`); where it reverses the order (a negative scale) the
  two outputs are swapped, 1 for x ≤ t, so the weights and the padding stay as they are;
* weights are a ``u1`` constant (O, C, KH, KW), bit 1 = +1, the first element in the lowest bit of a byte;
* ``pad_value`` passes through: OpenVINO's 0 leaves the padded taps out (zero padding), ±1 pads with that sign;
* the integer dot products are multiplied by α, Γ (its factors multiplied in the layer's order, one constant) or
  α·K (XNOR-Net's K built from the real input as the layer builds it), then the bias is added; PReLU, the
  residual add and the real layers are ordinary OpenVINO ops.

OpenVINO's CPU BinaryConvolution (2026.4) sums wrongly when the input channels are not a multiple of 8, and has
no groups: such a layer becomes the real (group) convolution of its ±1 signs, the same integers exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..packed import Graph, Node, load_graph
from ..packed.bits import to_signs
from ..packed.format import is_packed_model
from ..scaling import FACTOR_AXES

OPENVINO_EXTRA = "xnorpp[openvino]"
# OpenVINO's CPU BinaryConvolution gives wrong dot products when a pixel's input bits do not fill whole bytes
# (measured with 9, 11, 12 and 33 channels; 3 channels do not compile): those layers run as real convs of signs.
BINARY_CHANNEL_MULTIPLE = 8
PACKED_MODEL_NAME = "model"  # the files written for a checkpoint: model.xnor and its IR model.xml/.bin


def _openvino():
    """The openvino package, or an error that says which extra installs it."""
    try:
        import openvino
    except ModuleNotFoundError as err:
        if err.name != "openvino":
            raise
        raise ModuleNotFoundError(f"converting to OpenVINO needs the openvino package: pip install '{OPENVINO_EXTRA}'",
                                  name="openvino") from None
    return openvino


# ------------------------------------------------------------------------------------ the sign as a threshold
def _order_keys(x: np.ndarray) -> np.ndarray:
    """float32 values as int64 keys in the same order (-0.0 just below +0.0)."""
    bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF) - 1)


def _from_order_keys(keys: np.ndarray) -> np.ndarray:
    """The float32 values of :func:`_order_keys`' keys."""
    bits = np.where(keys >= 0, keys, (-keys - 1) | 0x80000000)
    return bits.astype(np.uint32).view(np.float32)


def _flip_points(negative, lo: np.ndarray, hi: np.ndarray):
    """Bisection, per channel, of a predicate over integer keys in [lo, hi] that changes at most once.

    Returns ``(last, negative_low, constant)``: the last key on lo's side, whether that side is negative, and
    where the predicate does not change at all.
    """
    negative_low, negative_high = negative(lo), negative(hi)
    while np.any(hi - lo > 1):  # invariant: negative(lo) == negative_low
        mid = (lo + hi) // 2
        same = negative(mid) == negative_low
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return lo, negative_low, negative_low == negative_high


def _threshold(last_low: np.ndarray, negative_low: np.ndarray, constant: np.ndarray):
    """``(t, reversed)`` from a bisection: the sign is -1 ⇔ x ≤ t, or ⇔ x > t where reversed; a constant sign
    gets t = -inf (always +1) or +inf (always -1)."""
    t = np.where(constant, np.where(negative_low, np.inf, -np.inf), last_low).astype(np.float32)
    return t, ~constant & ~negative_low


def _affine(y: np.ndarray, scale: np.ndarray | None, shift: np.ndarray | None) -> np.ndarray:
    """y·scale + shift in float32 with two roundings, as the runtime packs (and PyTorch multiplies, then adds)."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = y if scale is None else np.multiply(y, scale, dtype=np.float32)
        return y if shift is None else np.add(y, shift, dtype=np.float32)


def _without_denormals(t: np.ndarray) -> np.ndarray:
    """t moved out of the denormal range to the normal float or zero beside it that puts every normal float and
    zero on the same side: OpenVINO compares with a denormal constant as with 0 (-0.0 > -1e-45 is false there),
    and reads denormal inputs as zeros anyway, so only those may change side."""
    tiny = np.finfo(np.float32).tiny
    return np.where((t < 0) & (t > -tiny), -tiny, np.where((t > 0) & (t < tiny), np.float32(0), t)).astype(np.float32)


def sign_thresholds(scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, ``(t, reversed)`` such that x·scale + shift < 0 (the packed bit 1, sign -1) ⇔ x ≤ t, or
    ⇔ x > t where ``reversed``, for every finite float32 x.

    The affine is computed as the runtime packs it, in float32 with two roundings (x·scale, then + shift),
    which is monotonic in x: the thresholds are found by bisection over the ordered float32 values, exactly,
    whatever the rounding does near the zero crossing (a scale of 0 included: the sign is then constant).
    """
    scale, shift = np.asarray(scale, np.float32), np.asarray(shift, np.float32)
    biggest = np.finfo(np.float32).max
    lo = np.full(scale.shape, _order_keys(np.float32(-biggest)))
    hi = np.full(scale.shape, _order_keys(np.float32(biggest)))
    last, negative_low, constant = _flip_points(lambda k: _affine(_from_order_keys(k), scale, shift) < 0, lo, hi)
    return _threshold(_from_order_keys(last), negative_low, constant)


def dot_thresholds(channels: int, taps: int, stages: list[tuple[str, np.ndarray | None, np.ndarray | None]]):
    """Per channel, ``(t, reversed)`` for the sign of the per-channel float32 stages applied to the integer dot
    products of a binary conv (|dot| ≤ ``taps``), as :func:`sign_thresholds` for x: t is half-way between two
    integers, so the dot products compare with it exactly.

    ``stages`` are ``("affine", scale, shift)`` (either may be None: its output stage, a batch norm) or
    ``("prelu", slope, None)`` (ReLU: slope 0), each monotonic (slopes ≥ 0), so their composition is too.
    """
    def negative(dots):
        y = dots.astype(np.float32)
        for kind, a, b in stages:
            y = np.where(y > 0, y, _affine(y, a, None)) if kind == "prelu" else _affine(y, a, b)
        return y < 0

    last, negative_low, constant = _flip_points(negative, np.full(channels, -taps), np.full(channels, taps))
    return _threshold(last + 0.5, negative_low, constant)


# ------------------------------------------------------------------------------------ the builder
class _Builder:
    """One packed graph → one ov.Model, node by node (a node's value is its last op's output)."""

    def __init__(self, ov, graph: Graph, tensors: dict[str, np.ndarray], batch: int):
        self.ov, self.ops, self.graph, self._tensors, self.batch = ov, ov.opset14, graph, tensors, batch
        self.nodes = {n.name: n for n in graph.nodes}
        self.readers = graph.consumers()
        self.values = {}
        self.dots = {}  # a binary layer's integer dot products, by node name

    def tensor(self, node: Node, key: str) -> np.ndarray | None:
        """A parameter as a float32 array (a float16 real layer widened), the binary weight bits as they are."""
        if key not in node.params:
            return None
        t = self._tensors[node.params[key]]
        return t if t.dtype == np.uint8 else np.asarray(t, np.float32)

    def const(self, value, name: str):
        return self.ops.constant(np.array(value), name=name)  # a copy, C-contiguous, 0-d stays a scalar

    def ints(self, values: list[int], name: str):
        """An i64 vector constant: axes, shapes, pads."""
        return self.const(np.array(values, np.int64), name)

    def channels(self, value: np.ndarray, rank: int) -> np.ndarray:
        """A per-channel vector shaped to broadcast along axis 1 of a value of ``rank`` (NCHW or NF)."""
        return np.asarray(value, np.float32).reshape((1, -1) + (1,) * (rank - 2))

    def build(self):
        shape = [self.batch, *self.graph.input_shape]  # (N, C, H, W), or (N, F) for vectors
        x = self.ops.parameter(shape, np.float32, name=self.graph.input_name)
        x.output(0).get_tensor().set_names({self.graph.input_name})
        self.values[self.graph.input_name] = x.output(0)
        for node in self.graph.nodes:
            emit = getattr(self, "op_" + node.op, None)
            if emit is None:
                raise ValueError(f"{node.where}: op {node.op!r} has no OpenVINO mapping in this version of xnorpp")
            self.values[node.name] = emit(node, *(self.values[v] for v in node.inputs))
        out = self.values[self.graph.output]
        out.get_tensor().set_names({self.graph.output})
        return self.ov.Model([self.ops.result(out, name=f"{self.graph.output}/result")], [x], "xnorpp")

    # -- real layers -------------------------------------------------------------------------------
    def _conv(self, x, weight: np.ndarray, groups: int, a: dict, name: str, padding=None):
        """Convolution (groups 1) or GroupConvolution of x with float weights (O, C/groups, KH, KW)."""
        top, bottom, left, right = padding or a["padding"]
        geometry = (list(a["stride"]), [top, left], [bottom, right], list(a["dilation"]))
        if groups == 1:
            return self.ops.convolution(x, self.const(weight, f"{name}/weight"), *geometry, name=name)
        o, cg, kh, kw = weight.shape
        grouped = weight.reshape(groups, o // groups, cg, kh, kw)
        return self.ops.group_convolution(x, self.const(grouped, f"{name}/weight"), *geometry, name=name)

    def _bias(self, node: Node, y, rank: int):
        bias = self.tensor(node, "bias")
        if bias is None:
            return y
        return self.ops.add(y, self.const(self.channels(bias, rank), f"{node.name}/bias"),
                            name=f"{node.name}/bias_add").output(0)

    def op_conv2d(self, node: Node, x):
        y = self._conv(x, self.tensor(node, "weight"), node.attrs["groups"], node.attrs, node.name)
        return self._bias(node, y.output(0), 4)

    def op_linear(self, node: Node, x):
        y = self.ops.matmul(x, self.const(self.tensor(node, "weight"), f"{node.name}/weight"), False, True,
                            name=node.name)
        return self._bias(node, y.output(0), 2)

    def _channel_affine(self, node: Node, x, scale: np.ndarray | None, shift: np.ndarray | None, name: str):
        """x·scale, then + shift (two roundings, as the runtime and PyTorch); the product is called ``name``."""
        rank = len(node.shape) + 1
        if scale is not None:
            x = self.ops.multiply(x, self.const(self.channels(scale, rank), f"{node.name}/scale"),
                                  name=name).output(0)
        if shift is not None:
            x = self.ops.add(x, self.const(self.channels(shift, rank), f"{node.name}/shift"),
                             name=f"{node.name}/shift_add").output(0)
        return x

    def op_batch_norm(self, node: Node, x):
        return self._channel_affine(node, x, self.tensor(node, "scale"), self.tensor(node, "shift"), node.name)

    def op_layer_norm(self, node: Node, x):
        axes = self.ints([1], f"{node.name}/axes")
        y = self.ops.mvn(x, axes, True, node.attrs["eps"], "inside_sqrt", name=node.name).output(0)
        return self._channel_affine(node, y, self.tensor(node, "weight"), self.tensor(node, "bias"),
                                    f"{node.name}/weight_mul")

    # -- elementwise -------------------------------------------------------------------------------
    def op_prelu(self, node: Node, x):
        return self.ops.prelu(x, self.const(self.tensor(node, "slope"), f"{node.name}/slope"), name=node.name).output(0)

    def op_relu(self, node: Node, x):
        return self.ops.relu(x, name=node.name).output(0)

    def op_hardtanh(self, node: Node, x):
        low, high = node.attrs.get("min"), node.attrs.get("max")
        if low is not None and high is not None:
            return self.ops.clamp(x, low, high, name=node.name).output(0)
        if low is not None:
            return self.ops.maximum(x, self.const(np.float32(low), f"{node.name}/min"), name=node.name).output(0)
        return self.ops.minimum(x, self.const(np.float32(high), f"{node.name}/max"), name=node.name).output(0)

    def op_hardswish(self, node: Node, x):
        return self.ops.hswish(x, name=node.name).output(0)

    def op_hardsigmoid(self, node: Node, x):
        return self.ops.hsigmoid(x, name=node.name).output(0)

    def op_sigmoid(self, node: Node, x):
        return self.ops.sigmoid(x, name=node.name).output(0)

    def op_silu(self, node: Node, x):
        return self.ops.swish(x, name=node.name).output(0)

    def op_tanh(self, node: Node, x):
        return self.ops.tanh(x, name=node.name).output(0)

    def op_gelu(self, node: Node, x):
        mode = "tanh" if node.attrs["approximate"] == "tanh" else "erf"
        return self.ops.gelu(x, mode, name=node.name).output(0)

    def op_add(self, node: Node, x, y):
        return self.ops.add(x, y, name=node.name).output(0)

    def op_sub(self, node: Node, x, y):
        return self.ops.subtract(x, y, name=node.name).output(0)

    def op_mul(self, node: Node, x, y):
        return self.ops.multiply(x, y, name=node.name).output(0)

    def op_identity(self, node: Node, x):
        return x

    # -- shapes ------------------------------------------------------------------------------------
    def _reshape(self, x, shape: list[int], name: str):
        """Reshape to ``shape``, its 0 keeping the batch."""
        return self.ops.reshape(x, self.ints(shape, f"{name}/shape"), True, name=name).output(0)

    def op_flatten(self, node: Node, x):
        return self._reshape(x, [0, -1], node.name)

    def op_concat(self, node: Node, *xs):
        return self.ops.concat(list(xs), 1, name=node.name).output(0)

    def op_channel_slice(self, node: Node, x):
        start, stop = (self.ints([node.attrs[key]], f"{node.name}/{key}") for key in ("start", "stop"))
        return self.ops.slice(x, start, stop, self.ints([1], f"{node.name}/step"), self.ints([1], f"{node.name}/axes"),
                              name=node.name).output(0)

    def op_channel_shuffle(self, node: Node, x):
        c, h, w = node.shape
        groups = node.attrs["groups"]
        split = self._reshape(x, [0, groups, c // groups, h, w], f"{node.name}/split")
        order = self.ints([0, 2, 1, 3, 4], f"{node.name}/order")
        swapped = self.ops.transpose(split, order, name=node.name).output(0)
        return self._reshape(swapped, [0, c, h, w], f"{node.name}/merge")

    # -- pooling -----------------------------------------------------------------------------------
    @staticmethod
    def _window(a: dict) -> tuple[list, list, list, list]:
        top, bottom, left, right = a["padding"]
        return list(a["stride"]), [top, left], [bottom, right], list(a["kernel"])

    @staticmethod
    def _rounding(a: dict) -> str:
        return "ceil_torch" if a["ceil_mode"] else "floor"  # ceil_torch: no window starts in the end padding

    def op_max_pool2d(self, node: Node, x):
        a = node.attrs
        strides, begin, end, kernel = self._window(a)
        return self.ops.max_pool(x, strides, list(a["dilation"]), begin, end, kernel, self._rounding(a),
                                 name=node.name).output(0)

    def op_avg_pool2d(self, node: Node, x):
        a = node.attrs
        return self.ops.avg_pool(x, *self._window(a), not a["count_include_pad"], self._rounding(a),
                                 name=node.name).output(0)

    def op_adaptive_avg_pool2d(self, node: Node, x):
        size = self.ints(list(node.attrs["output_size"]), f"{node.name}/size")
        return self.ops.adaptive_avg_pool(x, size, name=node.name).output(0)

    def op_global_pool(self, node: Node, x):
        reduce = self.ops.reduce_mean if node.attrs["mode"] == "mean" else self.ops.reduce_max
        axes = self.ints([2, 3], f"{node.name}/axes")
        return reduce(x, axes, node.attrs["keepdim"], name=node.name).output(0)

    # -- binary layers -----------------------------------------------------------------------------
    def _sign_input(self, node: Node, channels: int):
        """(value, t, reversed, of_dots): the value the layer's signs are thresholds of (:func:`sign_thresholds`),
        and whether it is the dot products of a binary layer.

        That is the dot products of the binary layer before it when only per-channel monotonic ops lie between
        (OpenVINO then writes the signs as bits from that conv's output, as the runtime's plan hands bits over),
        else the input of the batch norm that feeds the layer, with the batch norm folded in, else its input.
        """
        folded = self._folded_stages(node)
        if folded is not None:
            producer, taps, stages = folded
            return (self.dots[producer.name], *dot_thresholds(channels, taps, stages), True)
        src = self.nodes.get(node.inputs[0])
        if src is not None and src.op == "batch_norm":
            thresholds = sign_thresholds(self.tensor(src, "scale"), self.tensor(src, "shift"))
            return self.values[src.inputs[0]], *thresholds, False
        identity = sign_thresholds(np.ones(channels, np.float32), np.zeros(channels, np.float32))
        return self.values[node.inputs[0]], *identity, False

    def _folded_stages(self, node: Node):
        """(producer, taps, stages) when the layer's input is the output of a binary layer with one scale per
        channel, passed only through batch norms, PReLUs with slopes ≥ 0, ReLUs and identities, each the only
        reader of the value before it; else None (dot_thresholds takes the stages)."""
        stages, value = [], node.inputs[0]
        while True:
            src = self.nodes.get(value)
            if src is None or value == self.graph.output or len(self.readers[value]) != 1:
                return None
            if src.op == "batch_norm":
                stages.append(("affine", self.tensor(src, "scale"), self.tensor(src, "shift")))
            elif src.op in ("prelu", "relu"):
                slope = self.tensor(src, "slope") if src.op == "prelu" else np.zeros(1, np.float32)
                if (slope < 0).any():
                    return None  # not monotonic: the sign is no threshold on the dot products
                stages.append(("prelu", slope, None))
            elif src.op in ("binary_conv2d", "binary_linear"):
                taps = _taps(src)
                if src.scaling.spatial or src.scaling.analytic_k or taps >= 2 ** 23:  # t = last + 0.5 exact
                    return None
                output_stage = ("affine", self._channel_scale(src), self.tensor(src, "bias"))
                return src, taps, [output_stage, *reversed(stages)]
            elif src.op != "identity":
                return None
            value = src.inputs[0]

    def _signs(self, x, threshold: np.ndarray, reversed_: np.ndarray, name: str, bits: bool, of_dots: bool):
        """The signs of the layer: per channel -1 for x ≤ t (x > t where reversed), else +1; as 1/0 for
        BinaryConvolution (``bits``), else as ±1 floats. ``of_dots``: x is a BinaryConvolution's output."""
        plus, minus = (1.0, 0.0) if bits else (1.0, -1.0)
        t = self.channels(_without_denormals(threshold), 4)
        low = self.const(self.channels(np.where(reversed_, plus, minus), 4), f"{name}/low")  # for x <= t
        high = self.const(self.channels(np.where(reversed_, minus, plus), 4), f"{name}/high")  # for x > t
        if bits:  # OpenVINO's binarization: a FakeQuantize with input low = high, read as bits by the conv
            # OpenVINO's CPU plugin fuses it into the op before only when each of its constants has one reader.
            # Into a BinaryConvolution that adds a residual it fuses it wrongly (the residual is read as bits:
            # MobileNetV3), so it may fuse only where it reads a binary layer's dot products alone (the
            # BinaryConvolution then writes bits; tests/test_openvino.py checks both).
            input_low = self.const(t, f"{name}/threshold")
            input_high = self.const(t, f"{name}/threshold_high") if of_dots else input_low
            return self.ops.fake_quantize(x, input_low, input_high, low, high, 2, name=name).output(0)
        # A FakeQuantize that OpenVINO does not make bits divides by high - low = 0 (NaN): compare instead.
        above = self.ops.greater(x, self.const(t, f"{name}/threshold"), name=f"{name}/above")
        return self.ops.select(above, high, low, name=name).output(0)

    def _channel_scale(self, node: Node) -> np.ndarray | None:
        """α, or Γ of one factor per channel, of a layer whose scale is not spatial and not XNOR-Net's K."""
        spec = node.scaling
        if spec.analytic_alpha:
            return self.tensor(node, "alpha")
        return self.tensor(node, spec.factors[0]) if spec.learned else None

    def _scale(self, node: Node, dots, x_real, rank: int):
        """The dot products times the layer's α, Γ or α·K (PyTorch's order: the factors first, then ⊙)."""
        spec = node.scaling
        if spec.analytic_k:
            k = self._magnitude(node, x_real)
            alpha = self.const(self.channels(self.tensor(node, "alpha"), rank), f"{node.name}/alpha")
            scale = self.ops.multiply(alpha, k, name=f"{node.name}/alpha_k").output(0)
        elif spec.spatial:
            scale = self.const(self._gamma(node), f"{node.name}/gamma")
        else:
            per_channel = self._channel_scale(node)
            if per_channel is None:
                return dots
            scale = self.const(self.channels(per_channel, rank), f"{node.name}/scale_factor")
        return self.ops.multiply(dots, scale, name=f"{node.name}/scale").output(0)

    def _gamma(self, node: Node) -> np.ndarray:
        """A spatial Γ: its factors multiplied in the layer's order (float32), broadcast to (1, O|1, OH|1, OW|1)."""
        gamma = None
        for name in node.scaling.factors:
            axes = FACTOR_AXES[name]
            value = self.tensor(node, name)
            factor = value.reshape([value.shape[axes.index(ax)] if ax in axes else 1 for ax in ("o", "h", "w")])
            gamma = factor if gamma is None else gamma * factor
        return gamma[None]

    def _magnitude(self, node: Node, x):
        """XNOR-Net's K of the real input x: mean over channels of |x|, box-filtered with zero padding."""
        mean_abs = self.ops.reduce_mean(self.ops.abs(x, name=f"{node.name}/abs"),
                                        self.ints([1], f"{node.name}/channel_axis"), True,
                                        name=f"{node.name}/mean_abs").output(0)
        if node.op == "binary_linear":
            return mean_abs
        kh, kw = node.attrs["kernel"]
        box = np.full((1, 1, kh, kw), 1.0 / (kh * kw), np.float32)
        return self._conv(mean_abs, box, 1, node.attrs, f"{node.name}/k").output(0)

    def _binary(self, node: Node, x, linear: bool):
        a = node.attrs
        out_channels = node.shape[0]
        channels, groups = (a["in_features"], 1) if linear else (a["in_channels"], a["groups"])
        kernel = (1, 1) if linear else a["kernel"]
        # As a conv: a binary linear layer is a 1×1 conv of its features seen as (N, F, 1, 1).
        conv = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1)} if linear else a
        pad_value = 0.0 if linear else a["pad_value"]
        signs = to_signs(self.tensor(node, "weight_bits"), out_channels, kernel, channels // groups)
        source, threshold, reversed_, of_dots = self._sign_input(node, channels)
        if linear:
            source = self._reshape(source, [0, channels, 1, 1], f"{node.name}/as_map")
        if groups == 1 and channels % BINARY_CHANNEL_MULTIPLE == 0:
            bits = self._signs(source, threshold, reversed_, f"{node.name}/binarize", True, of_dots)
            weight = self.ov.op.Constant(self.ov.Tensor(np.packbits(signs.reshape(-1) > 0, bitorder="little"),
                                                        list(signs.shape), self.ov.Type.u1), shared_memory=False)
            weight.set_friendly_name(f"{node.name}/weight")
            top, bottom, left, right = conv["padding"]
            dots = self.ops.binary_convolution(bits, weight, list(conv["stride"]), [top, left], [bottom, right],
                                               list(conv["dilation"]), "xnor-popcount", pad_value, name=node.name)
        else:  # the real conv of the ±1 signs; a sign padding is padded explicitly
            pm1 = self._signs(source, threshold, reversed_, f"{node.name}/sign", False, of_dots)
            padding = None
            if pad_value != 0:
                top, bottom, left, right = conv["padding"]
                pm1 = self.ops.pad(pm1, self.ints([0, 0, top, left], f"{node.name}/pads_begin"),
                                   self.ints([0, 0, bottom, right], f"{node.name}/pads_end"),
                                   "constant", self.const(np.float32(pad_value), f"{node.name}/pad_value"),
                                   name=f"{node.name}/pad").output(0)
                padding = (0, 0, 0, 0)
            dots = self._conv(pm1, signs, groups, conv, node.name, padding)
        dots = dots.output(0)
        if linear:
            dots = self._reshape(dots, [0, out_channels], f"{node.name}/as_vector")
        self.dots[node.name] = dots
        rank = 2 if linear else 4
        return self._bias(node, self._scale(node, dots, x, rank), rank)

    def op_binary_conv2d(self, node: Node, x):
        return self._binary(node, x, linear=False)

    def op_binary_linear(self, node: Node, x):
        return self._binary(node, x, linear=True)


def _taps(node: Node) -> int:
    """The ±1 products summed in one dot product of a binary layer (its largest |dot|)."""
    a = node.attrs
    if node.op == "binary_linear":
        return a["in_features"]
    return a["in_channels"] // a["groups"] * a["kernel"][0] * a["kernel"][1]


# ------------------------------------------------------------------------------------ entry points
def openvino_model(packed_model_path: str | os.PathLike, batch: int = 1):
    """The ``openvino.Model`` of the packed model at ``packed_model_path`` for ``batch`` images (nothing is written).

    The batch is fixed, since OpenVINO's CPU BinaryConvolution refuses dynamic shapes; ``model.reshape([N, C, H,
    W])`` (or ``Core.read_model(...).reshape``) sets another.
    """
    ov = _openvino()
    if type(batch) is not int or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    graph, tensors = load_graph(packed_model_path)
    return _Builder(ov, graph, tensors, batch).build()


def to_openvino(packed_model_path: str | os.PathLike, out_dir: str | os.PathLike, batch: int = 1) -> Path:
    """Write the OpenVINO IR of a packed model: ``out_dir/<name>.xml`` and ``.bin`` for ``<name>.xnor``.

    The input is NCHW float32 of ``batch`` images (see :func:`openvino_model`). Weights stay float32 (OpenVINO's
    own default stores them as float16, which would move the thresholds of the signs). Returns the path of the
    .xml. Needs the ``openvino`` extra (``pip install 'xnorpp[openvino]'``).
    """
    ov = _openvino()
    model = openvino_model(packed_model_path, batch)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / (Path(packed_model_path).stem + ".xml")
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def export_openvino(source: str | os.PathLike, out_dir: str | os.PathLike, *, real_dtype: str | None = None,
                    dataset: str | None = None, input_size: tuple[int, ...] | None = None,
                    in_channels: int | None = None) -> list[Path]:
    """An OpenVINO IR in ``out_dir`` of a packed model file, or of a checkpoint (run folder, checkpoint.pt or
    model.pt), which is first exported to ``out_dir/model.xnor`` (``real_dtype``, ``dataset``, ``input_size``,
    ``in_channels``: as :func:`~xnorpp.export.export_model`). Returns the files written: that .xnor, then the
    IR's .xml and .bin. A packed model needs no PyTorch; a checkpoint needs the ``train`` extra."""
    _openvino()  # before anything is traced or written
    out_dir = Path(out_dir)
    written = []
    if Path(source).is_file() and is_packed_model(source):
        if real_dtype is not None or dataset is not None or input_size is not None or in_channels is not None:
            raise ValueError(f"{source} is a packed model already: it is converted as it is (real_dtype, dataset, "
                             "input_size and in_channels apply when exporting a checkpoint)")
    else:
        from .model import export_model  # PyTorch: the checkpoint is traced

        out_dir.mkdir(parents=True, exist_ok=True)
        source = export_model(source, out_dir / (PACKED_MODEL_NAME + ".xnor"), input_size,
                              real_dtype or "float32", dataset=dataset, in_channels=in_channels)
        written.append(source)
    xml = to_openvino(source, out_dir)
    return written + [xml, xml.with_suffix(".bin")]
