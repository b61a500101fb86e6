"""Load a packed model and run it: numpy in, logits out, no PyTorch.

The graph (JSON in the file) is a list of nodes in execution order; each node reads
the outputs of earlier nodes (or the input) by name, and its output takes the node's
name. Activations are NHWC float32 arrays between nodes; a binary layer packs its
input to bits (with the preceding batch norm folded into the packing when the exporter
fused it), runs the packed kernel and its fused output stage. When a binary conv feeds
only another binary conv, its output is packed straight to bits for it.

Ops: ``conv2d``, ``binary_conv2d``, ``linear``, ``binary_linear``, ``batch_norm``,
``prelu``, ``relu``, ``hardtanh``, ``max_pool2d``, ``avg_pool2d``,
``adaptive_avg_pool2d``, ``flatten``, ``add``, ``identity``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .. import _core
from ..scaling import FACTOR_AXES, SCALINGS
from . import ops
from .format import ModelFormatError, read_model, unpack_sign_bits

BINARY_OPS = ("binary_conv2d", "binary_linear")
FLOAT_PARAM_OPS = {"conv2d", "linear", "batch_norm", "prelu"}
OPS = ("conv2d", "binary_conv2d", "linear", "binary_linear", "batch_norm", "prelu", "relu", "hardtanh",
       "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "add", "identity")


_MAX_GEOMETRY = 1 << 16  # bound on kernel sizes, strides, dilations and paddings read from a file


def _identity(x):
    return x


class PackedModel:
    """A packed binary network ready to run: ``logits = model(x)`` with x a float32 numpy batch (N, C, H, W)."""

    def __init__(self, graph: dict, tensors: dict[str, np.ndarray], path: str | None = None):
        self.path = path
        self.graph = graph
        where = f"packed model {path!r}" if path else "packed model"
        self._where = where
        try:
            inp = graph["input"]
            self.input_name = str(inp["name"])
            self.in_channels = int(inp["channels"])
            size = inp.get("size")
            self.input_size = None if size is None else (int(size[0]), int(size[1]))
            self.output_name = str(graph["output"])
            self.num_classes = graph.get("num_classes")
            nodes = list(graph["nodes"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ModelFormatError(f"{where}: graph lacks a valid input/output description ({err!r})") from None
        self._nodes = nodes
        self._tensors = tensors
        self._steps = self._build(nodes)

    # -- building ----------------------------------------------------------------------------
    def _param(self, node: dict, key: str, required: bool = True, dtype=np.float32, shape=None):
        ref = node["params"].get(key)
        if ref is None:
            if required:
                raise ModelFormatError(f"{self._where}: node {node.get('name')!r} lacks parameter {key!r}")
            return None
        if ref not in self._tensors:
            raise ModelFormatError(f"{self._where}: node {node.get('name')!r}: tensor {ref!r} missing from the file")
        t = self._tensors[ref]
        if dtype is np.float32 and t.dtype in (np.float16, np.float32):
            t = t.astype(np.float32)
        elif t.dtype != dtype:
            raise ModelFormatError(f"{self._where}: tensor {ref!r} has dtype {t.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ModelFormatError(f"{self._where}: tensor {ref!r} has shape {tuple(t.shape)}, expected "
                                   f"{tuple(shape)}")
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            raise ModelFormatError(f"{self._where}: tensor {ref!r} holds non-finite values")
        return np.ascontiguousarray(t)

    def _ints(self, node: dict, key: str, count: int | None = None, minimum: int = 1,
              maximum: float = _MAX_GEOMETRY) -> tuple[int, ...] | int:
        """Attribute ``key`` as ``count`` integers (or one integer if ``count`` is None) in [minimum, maximum]."""
        value = node["attrs"].get(key)
        items = [value] if count is None else value
        if (not isinstance(items, list) or len(items) != (count or 1)
                or any(type(v) is not int or not minimum <= v <= maximum for v in items)):
            what = "an integer" if count is None else f"{count} integers"
            bound = f"≥ {minimum}" if maximum == math.inf else f"in [{minimum}, {maximum}]"
            raise ModelFormatError(f"{self._where}: node {node['name']!r} ({node['op']}): attribute {key!r} must be "
                                   f"{what} {bound}, got {value!r}")
        return value if count is None else tuple(value)

    def _channels(self, node: dict, key: str) -> int:
        """A channel count: any positive integer (the tensors' shapes are checked against it)."""
        return self._ints(node, key, maximum=math.inf)

    def _build(self, nodes: list) -> list:
        known = {self.input_name}
        consumers: dict[str, list[dict]] = {}
        for node in nodes:
            if not isinstance(node, dict) or node.get("op") not in OPS or not isinstance(node.get("name"), str):
                what = node.get("op") if isinstance(node, dict) else node
                raise ModelFormatError(f"{self._where}: unknown or malformed node {what!r}; "
                                       f"this runtime runs: {', '.join(OPS)}")
            inputs = node.get("inputs")
            if not isinstance(inputs, list) or not inputs or any(not isinstance(i, str) or i not in known
                                                                 for i in inputs):
                raise ModelFormatError(f"{self._where}: node {node['name']!r} reads {inputs!r}, not all defined "
                                       "before it")
            params = node.get("params")
            if (not isinstance(node.get("attrs"), dict) or not isinstance(params, dict)
                    or not all(isinstance(ref, str) for ref in params.values())):
                raise ModelFormatError(f"{self._where}: node {node['name']!r} lacks valid 'attrs' and 'params' "
                                       "tables")
            for i in inputs:
                consumers.setdefault(i, []).append(node)
            known.add(node["name"])
        if self.output_name not in known:
            raise ModelFormatError(f"{self._where}: output {self.output_name!r} is not produced by the graph")
        # Binary conv -> only another binary conv (groups 1, no K map): hand over packed bits.
        packed_to: dict[str, dict] = {}
        for node in nodes:
            users = consumers.get(node["name"], [])
            if (node["op"] == "binary_conv2d" and node["attrs"].get("groups", 1) == 1 and len(users) == 1
                    and users[0]["op"] == "binary_conv2d" and users[0]["attrs"].get("groups", 1) == 1
                    and not users[0]["attrs"].get("magnitude") and node["name"] != self.output_name):
                packed_to[node["name"]] = users[0]
        def only_user(node: dict, ops_: tuple[str, ...]) -> dict | None:
            users = consumers.get(node["name"], [])
            if len(users) == 1 and users[0]["op"] in ops_ and node["name"] != self.output_name:
                return users[0]
            return None

        # Real conv -> batch norm -> PReLU/ReLU, each the only user of the one before: all in the
        # conv's epilogue. Batch norm -> PReLU/ReLU elsewhere: one pass. Same arithmetic, fewer arrays.
        self._conv_tail: dict[str, tuple[dict | None, dict | None]] = {}
        self._bn_act: dict[str, dict] = {}
        absorbed: set[int] = set()
        for node in nodes:
            if node["op"] == "conv2d" and node["attrs"].get("groups") == 1:
                bn = only_user(node, ("batch_norm",))
                act = only_user(bn or node, ("prelu", "relu"))
                self._conv_tail[node["name"]] = (bn, act)
                absorbed.update(id(n) for n in (bn, act) if n is not None)
        for node in nodes:
            act = only_user(node, ("prelu", "relu")) if node["op"] == "batch_norm" else None
            if act is not None and id(node) not in absorbed:
                self._bn_act[node["name"]] = act
                absorbed.add(id(act))
        last_use = {}
        for idx, node in enumerate(nodes):
            for i in node["inputs"]:
                last_use[i] = idx
        steps = []
        for idx, node in enumerate(nodes):
            try:
                if id(node) in absorbed:
                    fn = _identity
                else:
                    fn = self._compile(node, packed_to.get(node["name"]),
                                       packed_in=any(p is node for p in packed_to.values()))
            except ModelFormatError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as err:
                raise ModelFormatError(f"{self._where}: node {node['name']!r} ({node['op']}): invalid "
                                       f"attributes or parameters: {err}") from None
            free = [i for i in node["inputs"] if last_use.get(i) == idx and i != self.output_name]
            steps.append((node, fn, free))
        return steps

    def _activation(self, act: dict | None, channels: int) -> dict:
        """Keyword arguments (slope, relu) of the core's fused activation for an absorbed prelu/relu node."""
        if act is None:
            return {"slope": None, "relu": False}
        if act["op"] == "relu":
            return {"slope": None, "relu": True}
        slope = self._param(act, "slope")
        if slope.size not in (1, channels):
            raise ModelFormatError(f"{self._where}: node {act['name']!r}: {slope.size} PReLU slopes for "
                                   f"{channels} channels")
        return {"slope": np.ascontiguousarray(np.broadcast_to(slope.reshape(-1), (channels,)), dtype=np.float32),
                "relu": False}

    def _compile(self, node: dict, pack_for: dict | None, packed_in: bool):
        op, a = node["op"], node["attrs"]
        p = lambda key, **kw: self._param(node, key, **kw)  # noqa: E731
        ints = lambda key, count=None, minimum=1: self._ints(node, key, count, minimum)  # noqa: E731
        if op == "conv2d":
            w, b = p("weight"), p("bias", required=False)
            stride, padding, dilation, groups = ints("stride", 2), ints("padding", 4, 0), ints("dilation", 2), \
                ints("groups")
            if w.ndim != 4 or w.shape[1] * groups != self._channels(node, "in_channels") or w.shape[0] % groups:
                raise ModelFormatError(f"{self._where}: conv2d {node['name']!r}: weight shape {w.shape} does not "
                                       f"match in_channels={a['in_channels']}, groups={groups}")
            if groups != 1:
                return lambda x: ops.conv2d(x, w, b, stride, padding, dilation, groups)
            bn, act = self._conv_tail[node["name"]]
            conv = _core.FloatConv(w, stride, padding, dilation, bias=b,
                                   scale=self._param(bn, "scale", shape=(w.shape[0],)) if bn else None,
                                   shift=self._param(bn, "shift", shape=(w.shape[0],)) if bn else None,
                                   **self._activation(act, w.shape[0]))
            return conv.forward
        if op == "linear":  # a 1×1 FloatConv: no BLAS threads left spinning against the kernel pool
            w, b = p("weight"), p("bias", required=False)
            if w.ndim != 2:
                raise ModelFormatError(f"{self._where}: linear {node['name']!r}: weight of shape {w.shape}")
            conv = _core.FloatConv(np.ascontiguousarray(w[:, :, None, None]), bias=b)
            return lambda x: conv.forward(np.ascontiguousarray(x).reshape(x.shape[0], 1, 1, -1)).reshape(
                x.shape[0], -1)
        if op == "batch_norm":
            mul, add = p("scale"), p("shift")
            act = self._bn_act.get(node["name"])
            fused = self._activation(act, mul.shape[0])  # the activation that follows, if absorbed
            return lambda x: ops.channel_affine(x, mul, add, **fused)
        if op == "prelu":
            slope = p("slope")
            if slope.size == 1:
                return lambda x: ops.prelu(x, slope)
            return lambda x: ops.channel_affine(x, slope=slope)
        if op == "relu":
            return lambda x: np.maximum(x, np.float32(0))
        if op == "hardtanh":
            lo, hi = np.float32(a["min"]), np.float32(a["max"])
            return lambda x: np.clip(x, lo, hi)
        if op == "max_pool2d":
            args = (ints("kernel", 2), ints("stride", 2), ints("padding", 2, 0), ints("dilation", 2),
                    bool(a["ceil_mode"]))
            return lambda x: ops.max_pool2d(x, *args)
        if op == "avg_pool2d":
            args = (ints("kernel", 2), ints("stride", 2), ints("padding", 2, 0), bool(a["ceil_mode"]),
                    bool(a["count_include_pad"]))
            return lambda x: ops.avg_pool2d(x, *args)
        if op == "adaptive_avg_pool2d":
            size = ints("output_size", 2)
            return lambda x: ops.adaptive_avg_pool2d(x, size)
        if op == "flatten":
            return ops.flatten
        if op == "add":
            return lambda x, y: x + y
        if op == "identity":
            return lambda x: x
        return self._compile_binary(node, a, pack_for, packed_in)

    def _compile_binary(self, node, a, pack_for, packed_in):
        linear = node["op"] == "binary_linear"
        ints = lambda key, count=None, minimum=1: self._ints(node, key, count, minimum)  # noqa: E731
        o, c = self._channels(node, "out_channels"), self._channels(node, "in_channels")
        groups = 1 if linear else ints("groups")
        kh, kw = (1, 1) if linear else ints("kernel", 2)
        if c % groups or o % groups:
            raise ModelFormatError(f"{self._where}: node {node['name']!r}: invalid channel counts")
        bits = self._param(node, "weight_bits", dtype=np.uint8)
        signs = unpack_sign_bits(bits, (o, kh, kw, c // groups))
        words = _core.pack_weights(np.ascontiguousarray(signs.transpose(0, 3, 1, 2)))
        scaling = SCALINGS.get(a["scaling"])
        if scaling is None:
            raise ModelFormatError(f"{self._where}: node {node['name']!r}: unknown scaling {a['scaling']!r}")
        out_size = None if linear or a.get("output_size") is None else ints("output_size", 2)
        scale_o, scale_map = None, None
        if scaling.analytic_alpha:
            scale_o = self._param(node, "alpha", shape=(o,))
        elif scaling.learned:
            factors = []
            for name in scaling.factors:
                axes = FACTOR_AXES[name]
                sizes = {"o": o, "h": out_size[0] if out_size else None, "w": out_size[1] if out_size else None}
                shape = tuple(sizes[ax] for ax in axes)
                if None in shape:
                    raise ModelFormatError(f"{self._where}: node {node['name']!r}: spatial scaling without "
                                           "output_size")
                factors.append((axes, self._param(node, name, shape=shape)))
            if not scaling.spatial:
                scale_o = factors[0][1]
            else:  # Γ over (o, h, w), multiplied in the layer's order (as PyTorch does), then HWC
                gamma = None
                for axes, value in factors:
                    shape = [value.shape[axes.index(ax)] if ax in axes else 1 for ax in ("o", "h", "w")]
                    f = value.reshape(shape)
                    gamma = f if gamma is None else gamma * f
                gamma = np.broadcast_to(gamma, (o, *out_size))
                scale_map = np.ascontiguousarray(gamma.transpose(1, 2, 0), dtype=np.float32)
        kwargs = dict(scale=scale_o, scale_map=scale_map, bias=self._param(node, "bias", required=False, shape=(o,)),
                      slope=self._param(node, "slope", required=False, shape=(o,)))
        if pack_for is not None:
            kwargs.update(post_mul=self._param(pack_for, "in_scale", required=False, shape=(o,)),
                          post_add=self._param(pack_for, "in_shift", required=False, shape=(o,)))
        if linear:
            conv = _core.BinaryConv(words, c, 1, **kwargs)
            geometry = None
        else:
            geometry = ((kh, kw), ints("stride", 2), ints("padding", 4, 0), ints("dilation", 2))
            conv = _core.BinaryConv(words, c, groups, *geometry[1:], float(a["pad_value"]), **kwargs)
        in_scale = self._param(node, "in_scale", required=False, shape=(c,))
        in_shift = self._param(node, "in_shift", required=False, shape=(c,))
        magnitude = bool(a.get("magnitude"))
        out = "packed" if pack_for is not None else "float"

        def run(x):
            if packed_in:
                return conv.forward(x, None, out)
            kmap = None
            if magnitude:
                kmap = (np.abs(x).mean(axis=-1, dtype=np.float32) if linear else ops.magnitude_map(x, *geometry))
            xp = _core.pack(np.ascontiguousarray(x, dtype=np.float32), "nhwc", groups, in_scale, in_shift)
            return conv.forward(xp, kmap, out)

        run.binary_conv = conv
        return run

    # -- running -----------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """Validate an input batch; returns it as (N, C, H, W). Clear errors for wrong type/shape/dtype/layout."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"expected a numpy.ndarray, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise TypeError(f"expected dtype float32, got {x.dtype}; convert with x.astype(numpy.float32)")
        if x.ndim == 3:
            x = x[None]
        want = f"(N, {self.in_channels}, " + (f"{self.input_size[0]}, {self.input_size[1]})" if self.input_size
                                               else "H, W)")
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[0] < 1:
            raise ValueError(f"expected an input of shape {want}, got {tuple(x.shape)}")
        if self.input_size and tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"expected an input of shape {want}, got {tuple(x.shape)}: this model's spatial "
                             "scaling fixes the input resolution")
        if not x.flags.c_contiguous:
            raise ValueError("input array is not C-contiguous; pass numpy.ascontiguousarray(x)")
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of a float32 batch (N, C, H, W)."""
        x = self.check_input(x)
        values = {self.input_name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}
        for node, fn, free in self._steps:
            values[node["name"]] = fn(*(values[i] for i in node["inputs"]))
            for name in free:
                del values[name]
        out = values[self.output_name]
        if out.ndim == 4:
            out = out.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(out, dtype=np.float32)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits of a large array, ``batch_size`` images at a time."""
        x = self.check_input(x)
        return np.concatenate([self(np.ascontiguousarray(x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)])

    @property
    def isa(self) -> str:
        """The instruction-set path of the binary layers."""
        for _, fn, _ in self._steps:
            if hasattr(fn, "binary_conv"):
                return fn.binary_conv.isa
        return _core.isa()

    def summary(self) -> dict:
        """Counts of nodes by op, binary weights, file size."""
        counts: dict[str, int] = {}
        for node in self._nodes:
            counts[node["op"]] = counts.get(node["op"], 0) + 1
        info = {"nodes": counts, "isa": self.isa, "threads": _core.num_threads(),
                "input": (self.in_channels, *(self.input_size or ("H", "W")))}
        if self.path:
            info["file_bytes"] = os.path.getsize(self.path)
        return info


def load(path: str | os.PathLike, *, threads: int | None = None) -> PackedModel:
    """Load a packed model file (``.xnor``, written by ``xnorpp export``).

    ``threads`` sets the kernel thread count (default: all cores, or ``XNORPP_NUM_THREADS``).
    The instruction-set path is chosen from the CPU, or forced with ``XNORPP_ISA``.
    """
    if threads is not None:
        _core.set_num_threads(int(threads))
    graph, tensors = read_model(path)
    return PackedModel(graph, tensors, str(Path(path)))
