"""The graph of a packed model: one typed description per op, and validation of every field.

A graph (the ``graph`` JSON of a ``.xnor`` file) is::

    {"input":  {"name": "x", "channels": C, "size": [H, W]},   ("size": [] for vectors of C features)
     "output": "<value name>",
     "nodes":  [{"name": ..., "op": ..., "inputs": [...], "attrs": {...}, "params": {key: tensor name}}, ...],
     "preprocess": {...}, "num_classes": K, "classes": [K names], "producer": "...",
     "real_dtype": "float32"}   (the last five optional)

Nodes are in execution order, one per layer of the PyTorch model; each reads values produced
before it (the input or earlier nodes, the same value any number of times) and its output takes
its name. :class:`Graph.from_json` checks every field against :data:`OPS` and infers the shape of
every value for one image, ``(C, H, W)`` or ``(F,)``, so that a graph that loads runs on any
batch of the recorded input shape. Sizes are bounded by :mod:`xnorpp.packed.geometry`.
Fusion is not part of the file: :mod:`xnorpp.packed.plan` decides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..scaling import FACTOR_AXES, SCALINGS
from .bits import stored_bytes
from .format import ModelFormatError
from .geometry import MAX_DIM, MAX_ELEMENTS, MAX_WORK, conv_output_size, pool_output_size

Shape = tuple[int, ...]  # one image: (C, H, W) for feature maps, (F,) for vectors
MAX_NODES = 100_000
MAX_NAME = 256
MAX_INPUTS = 1024  # values read by one variadic node (concat)


def _show(value) -> str:
    """A short, always-safe rendering of a JSON value for error messages."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


# ------------------------------------------------------------------------------------ attributes
@dataclass(frozen=True)
class Attr:
    """One attribute: ``kind`` is 'int', 'ints', 'bool', 'number', 'choice' or 'text'."""

    kind: str
    count: int = 1          # length of an 'ints' list
    minimum: int = 1        # of each integer (maximum: MAX_DIM)
    choices: tuple = ()     # of a 'choice'
    required: bool = True
    at_least: float | None = None  # of a 'number' (layer norm's eps: a negative one gives NaN)

    def describe(self) -> str:
        if self.kind == "int":
            return f"an integer in [{self.minimum}, {MAX_DIM}]"
        if self.kind == "ints":
            return f"a list of {self.count} integers in [{self.minimum}, {MAX_DIM}]"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "number":
            return "a finite number" + ("" if self.at_least is None else f" >= {self.at_least:g}")
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return f"a string of at most {MAX_NAME} characters"

    def parse(self, value):
        """The validated value, or None when it is invalid."""
        def integer(v):
            return v if type(v) is int and self.minimum <= v <= MAX_DIM else None

        if self.kind == "int":
            return integer(value)
        if self.kind == "ints":
            if not isinstance(value, list) or len(value) != self.count:
                return None
            items = [integer(v) for v in value]
            return None if None in items else tuple(items)
        if self.kind == "bool":
            return value if type(value) is bool else None
        if self.kind == "number":  # a JSON integer may exceed any float: compare before converting
            ok = (type(value) is int and abs(value) <= 1e300) or (type(value) is float and math.isfinite(value))
            return float(value) if ok and (self.at_least is None or value >= self.at_least) else None
        if self.kind == "choice":  # numbers compare by value (0 == 0.0), booleans never match
            for choice in self.choices:
                same_kind = isinstance(value, str) if isinstance(choice, str) else type(value) in (int, float)
                if same_kind and value == choice:
                    return choice
            return None
        return value if isinstance(value, str) and len(value) <= MAX_NAME else None


_MODULE = {"module": Attr("text", required=False)}  # the PyTorch module a node came from, for messages
_GEOMETRY = {"kernel": Attr("ints", 2), "stride": Attr("ints", 2), "padding": Attr("ints", 4, minimum=0),
             "dilation": Attr("ints", 2)}


# ------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class Param:
    """One parameter tensor: ``kind`` 'float' (float32), 'real' (float32 or float16) or 'bits' (uint8)."""

    kind: str
    shapes: Callable[["Node"], list[Shape]]  # the allowed shapes for this node
    optional: bool = False  # may be absent (a bias)
    applies: Callable[["Node"], bool] = lambda node: True  # belongs to this node at all (α, Γ factors)


# ------------------------------------------------------------------------------------ nodes
@dataclass
class Node:
    """A validated node. ``in_shapes`` and ``shape`` (its output) are for one image."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict
    params: dict[str, str] = field(default_factory=dict)  # parameter key -> tensor name in the file
    in_shapes: tuple[Shape, ...] = ()
    shape: Shape = ()

    @property
    def spec(self) -> "OpSpec":
        return OPS[self.op]

    @property
    def where(self) -> str:
        module = self.attrs.get("module")
        return f"node {self.name!r} ({self.op}{', ' + module if module else ''})"

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {what}")

    def to_json(self) -> dict:
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.attrs.items()}
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs), "attrs": attrs,
                "params": dict(self.params)}

    # geometry helpers of the conv and pool ops
    @property
    def groups(self) -> int:
        return self.attrs.get("groups", 1)

    @property
    def scaling(self):
        return SCALINGS[self.attrs["scaling"]]


@dataclass(frozen=True)
class OpSpec:
    """What an op reads, holds and computes: the contract between exporter and runtime for it."""

    name: str
    doc: str
    attrs: dict[str, Attr]
    infer: Callable[[Node], Shape]  # checks node.in_shapes against the attributes; returns the output shape
    params: dict[str, Param] = field(default_factory=dict)
    arity: int = 1          # how many values it reads; the least number when variadic
    variadic: bool = False  # reads arity or more values (at most MAX_INPUTS)
    work: Callable[[Node], int] = lambda node: _prod(node.shape)  # per image; bounded by MAX_WORK

    def arity_text(self) -> str:
        return f"{self.arity} to {MAX_INPUTS}" if self.variadic else str(self.arity)

    def takes(self, count: int) -> bool:
        return self.arity <= count <= MAX_INPUTS if self.variadic else count == self.arity


def _feature_map(node: Node, index: int = 0) -> Shape:
    shape = node.in_shapes[index]
    if len(shape) != 3:
        raise node.fail(f"needs a feature map (C, H, W) as input, got a vector of {shape[0]} features")
    return shape


def _vector(node: Node) -> Shape:
    shape = node.in_shapes[0]
    if len(shape) != 1:
        raise node.fail(f"needs a vector input (flatten first), got a feature map {shape}")
    return shape


def _channels_match(node: Node, channels: int, key: str) -> None:
    got = node.in_shapes[0][0]
    if got != channels:
        raise node.fail(f"attribute {key!r} is {channels}, but its input has {got}")


def _grouped(node: Node, c: int, o: int) -> None:
    g = node.attrs["groups"]
    if c % g or o % g:
        raise node.fail(f"in_channels ({c}) and out_channels ({o}) must be multiples of groups ({g})")


def _infer_conv(node: Node) -> Shape:
    c, h, w = _feature_map(node)
    a = node.attrs
    _channels_match(node, a["in_channels"], "in_channels")
    _grouped(node, a["in_channels"], a["out_channels"])
    oh, ow = conv_output_size((h, w), a["kernel"], a["stride"], a["padding"], a["dilation"])
    if oh < 1 or ow < 1:
        raise node.fail(f"input {h}x{w} plus padding {list(a['padding'])} is smaller than the kernel span "
                        f"(kernel {list(a['kernel'])}, dilation {list(a['dilation'])})")
    return (a["out_channels"], oh, ow)


def _conv_work(node: Node) -> int:
    a = node.attrs
    return _prod(node.shape) * (a["in_channels"] // a["groups"]) * _prod(a["kernel"])


def _infer_linear(node: Node) -> Shape:
    _vector(node)
    _channels_match(node, node.attrs["in_features"], "in_features")
    return (node.attrs["out_features"],)


def _linear_work(node: Node) -> int:
    return node.attrs["in_features"] * node.attrs["out_features"]


def _pool_padding(node: Node) -> None:
    a = node.attrs
    top, bottom, left, right = a["padding"]
    if top != bottom or left != right:
        raise node.fail(f"attribute 'padding' must be symmetric for pooling (top = bottom, left = right), "
                        f"got {list(a['padding'])}")
    dilation = a.get("dilation", (1, 1))
    for pad, k, d in ((top, a["kernel"][0], dilation[0]), (left, a["kernel"][1], dilation[1])):
        if 2 * pad > d * (k - 1) + 1:
            raise node.fail(f"attribute 'padding' {list(a['padding'])} exceeds half the window "
                            f"(kernel {list(a['kernel'])})")


def _infer_pool(node: Node) -> Shape:
    c, h, w = _feature_map(node)
    a = node.attrs
    _pool_padding(node)
    oh, ow = pool_output_size((h, w), a["kernel"], a["stride"], a["padding"], a.get("dilation", (1, 1)),
                              a["ceil_mode"])
    if oh < 1 or ow < 1:
        raise node.fail(f"input {h}x{w} is smaller than the pooling window {list(a['kernel'])}")
    return (c, oh, ow)


def _infer_adaptive(node: Node) -> Shape:
    c, _, _ = _feature_map(node)
    return (c, *node.attrs["output_size"])


def _infer_same(node: Node) -> Shape:
    return node.in_shapes[0]


def _infer_broadcast(node: Node) -> Shape:
    """Elementwise x (op) y: equal shapes, or one of them 1 along an axis (per-channel scales (C, 1, 1))."""
    a, b = node.in_shapes
    if len(a) != len(b) or any(p != q and 1 not in (p, q) for p, q in zip(a, b)):
        raise node.fail(f"cannot combine values of shapes {a} and {b} (equal sizes, or 1 along an axis)")
    return tuple(max(p, q) for p, q in zip(a, b))


def _infer_concat(node: Node) -> Shape:
    """Concatenation along channels (feature maps of one H, W) or features (vectors)."""
    first = node.in_shapes[0]
    for shape in node.in_shapes[1:]:
        if len(shape) != len(first) or shape[1:] != first[1:]:
            raise node.fail(f"concatenates values of shapes {first} and {shape}: all must be feature maps of "
                            "the same height and width, or all vectors")
    total = sum(shape[0] for shape in node.in_shapes)
    if total > MAX_DIM:
        raise node.fail(f"output has {total} channels, more than {MAX_DIM}")
    return (total, *first[1:])


def _infer_slice(node: Node) -> Shape:
    start, stop, shape = node.attrs["start"], node.attrs["stop"], node.in_shapes[0]
    if not start < stop <= shape[0]:
        raise node.fail(f"channels [{start}, {stop}) are not a non-empty range within the input's {shape[0]}")
    return (stop - start, *shape[1:])


def _infer_shuffle(node: Node) -> Shape:
    c = _feature_map(node)[0]
    if c % node.attrs["groups"]:
        raise node.fail(f"{c} channels are not a multiple of groups ({node.attrs['groups']})")
    return node.in_shapes[0]


def _infer_global(node: Node) -> Shape:
    c, _, _ = _feature_map(node)
    return (c, 1, 1) if node.attrs["keepdim"] else (c,)


def _infer_flatten(node: Node) -> Shape:
    return (_prod(node.in_shapes[0]),)


def _infer_hardtanh(node: Node) -> Shape:
    if "min" not in node.attrs and "max" not in node.attrs:
        raise node.fail("needs attribute 'min', 'max' or both")
    if node.attrs.get("min", -math.inf) >= node.attrs.get("max", math.inf):
        raise node.fail(f"attribute 'min' ({node.attrs['min']}) must be less than 'max' ({node.attrs['max']})")
    return node.in_shapes[0]


def _infer_binary_linear(node: Node) -> Shape:
    if node.scaling.spatial:
        raise node.fail(f"scaling {node.attrs['scaling']!r} has a spatial factor; a linear layer has none")
    return _infer_linear(node)


# Parameter shapes, from the validated attributes and the inferred output shape.
def _out_channels(node: Node) -> list[Shape]:
    return [(node.shape[0],)]


def _in_channels(node: Node) -> list[Shape]:
    return [(node.in_shapes[0][0],)]


def _conv_weight(node: Node) -> list[Shape]:
    a = node.attrs
    return [(a["out_channels"], a["in_channels"] // a["groups"], *a["kernel"])]


def _binary_bits(node: Node) -> list[Shape]:
    a = node.attrs
    if node.op == "binary_linear":
        count = a["out_features"] * a["in_features"]
    else:
        count = a["out_channels"] * _prod(a["kernel"]) * (a["in_channels"] // a["groups"])
    return [(stored_bytes(count),)]


def _factor(name: str):
    def shapes(node: Node) -> list[Shape]:
        sizes = {"o": node.shape[0], "h": node.shape[1] if len(node.shape) == 3 else 1,
                 "w": node.shape[2] if len(node.shape) == 3 else 1}
        return [tuple(sizes[axis] for axis in FACTOR_AXES[name])]

    return shapes


_BINARY_PARAMS = {
    "weight_bits": Param("bits", _binary_bits),
    "bias": Param("float", _out_channels, optional=True),
    "alpha": Param("float", _out_channels, applies=lambda node: node.scaling.analytic_alpha),
    **{name: Param("float", _factor(name), applies=lambda node, name=name: name in node.scaling.factors)
       for name in FACTOR_AXES},
}
_SCALING = {"scaling": Attr("choice", choices=tuple(SCALINGS))}

OPS: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec("conv2d", "real convolution, weight (O, C/groups, KH, KW)",
           {"in_channels": Attr("int"), "out_channels": Attr("int"), **_GEOMETRY, "groups": Attr("int"), **_MODULE},
           _infer_conv, {"weight": Param("real", _conv_weight), "bias": Param("real", _out_channels, optional=True)},
           work=_conv_work),
    OpSpec("linear", "real fully connected layer, weight (O, I)",
           {"in_features": Attr("int"), "out_features": Attr("int"), **_MODULE}, _infer_linear,
           {"weight": Param("real", lambda n: [(n.attrs["out_features"], n.attrs["in_features"])]),
            "bias": Param("real", _out_channels, optional=True)}, work=_linear_work),
    OpSpec("binary_conv2d", "(sign(x) ⊛ sign(W)) ⊙ scale + bias; pad_value 0 (zero), 1 or -1 padding",
           {"in_channels": Attr("int"), "out_channels": Attr("int"), **_GEOMETRY, "groups": Attr("int"),
            "pad_value": Attr("choice", choices=(0.0, 1.0, -1.0)), **_SCALING, **_MODULE},
           _infer_conv, _BINARY_PARAMS, work=_conv_work),
    OpSpec("binary_linear", "(sign(x) · sign(W)) ⊙ scale + bias",
           {"in_features": Attr("int"), "out_features": Attr("int"), **_SCALING, **_MODULE},
           _infer_binary_linear, _BINARY_PARAMS, work=_linear_work),
    OpSpec("batch_norm", "eval batch norm folded to x·scale + shift per channel", dict(_MODULE), _infer_same,
           {"scale": Param("float", _in_channels), "shift": Param("float", _in_channels)}),
    OpSpec("prelu", "x > 0 ? x : x·slope, one slope or one per channel", dict(_MODULE), _infer_same,
           {"slope": Param("float", lambda n: [(1,), (n.in_shapes[0][0],)])}),
    OpSpec("relu", "max(x, 0)", dict(_MODULE), _infer_same),
    OpSpec("hardtanh", "clip(x, min, max) (ReLU6, clamp); an absent bound is none",
           {"min": Attr("number", required=False), "max": Attr("number", required=False), **_MODULE},
           _infer_hardtanh),
    OpSpec("hardswish", "x·min(max(x + 3, 0), 6)/6", dict(_MODULE), _infer_same),
    OpSpec("hardsigmoid", "min(max(x + 3, 0), 6)/6", dict(_MODULE), _infer_same),
    OpSpec("sigmoid", "1/(1 + exp(-x))", dict(_MODULE), _infer_same),
    OpSpec("silu", "x·sigmoid(x)", dict(_MODULE), _infer_same),
    OpSpec("tanh", "tanh(x)", dict(_MODULE), _infer_same),
    OpSpec("gelu", "x·Φ(x), the exact erf form, or PyTorch's tanh approximation",
           {"approximate": Attr("choice", choices=("none", "tanh")), **_MODULE}, _infer_same),
    OpSpec("layer_norm", "normalization over the channels of each pixel (or the features of a vector), "
           "then ·weight + bias", {"eps": Attr("number", at_least=0), **_MODULE}, _infer_same,
           {"weight": Param("float", _in_channels, optional=True), "bias": Param("float", _in_channels, optional=True)},
           work=lambda n: 4 * _prod(n.shape)),
    OpSpec("max_pool2d", "max pooling (PyTorch's windows, -inf padding, ceil_mode)",
           {**_GEOMETRY, "ceil_mode": Attr("bool"), **_MODULE}, _infer_pool,
           work=lambda n: _prod(n.shape) * _prod(n.attrs["kernel"])),
    OpSpec("avg_pool2d", "average pooling (PyTorch's windows and divisors)",
           {"kernel": Attr("ints", 2), "stride": Attr("ints", 2), "padding": Attr("ints", 4, minimum=0),
            "ceil_mode": Attr("bool"), "count_include_pad": Attr("bool"), **_MODULE}, _infer_pool,
           work=lambda n: _prod(n.shape) * _prod(n.attrs["kernel"])),
    OpSpec("adaptive_avg_pool2d", "average pooling to a fixed output size (PyTorch's windows)",
           {"output_size": Attr("ints", 2), **_MODULE}, _infer_adaptive,
           work=lambda n: _prod(n.in_shapes[0]) + _prod(n.shape)),
    OpSpec("flatten", "(C, H, W) -> (C·H·W,) in PyTorch's order", dict(_MODULE), _infer_flatten),
    OpSpec("global_pool", "mean or max over H and W: (C, H, W) -> (C, 1, 1) with keepdim, else (C,)",
           {"mode": Attr("choice", choices=("mean", "max")), "keepdim": Attr("bool"), **_MODULE}, _infer_global,
           work=lambda n: _prod(n.in_shapes[0])),
    OpSpec("add", "x + y (equal shapes, or broadcast along axes of size 1)", dict(_MODULE), _infer_broadcast,
           arity=2),
    OpSpec("sub", "x - y (equal shapes, or broadcast along axes of size 1)", dict(_MODULE), _infer_broadcast,
           arity=2),
    OpSpec("mul", "x·y (equal shapes, or broadcast along axes of size 1)", dict(_MODULE), _infer_broadcast,
           arity=2),
    OpSpec("concat", "concatenation along channels (or features)", dict(_MODULE), _infer_concat, arity=2,
           variadic=True),
    OpSpec("channel_slice", "channels [start, stop) (torch.chunk, torch.split)",
           {"start": Attr("int", minimum=0), "stop": Attr("int"), **_MODULE}, _infer_slice),
    OpSpec("channel_shuffle", "ShuffleNet's shuffle: view (groups, C/groups), transpose, view back",
           {"groups": Attr("int"), **_MODULE}, _infer_shuffle),
    OpSpec("identity", "x (dropout, identity)", dict(_MODULE), _infer_same),
)}


# ------------------------------------------------------------------------------------ the graph
@dataclass
class Graph:
    """A validated graph: the input, the nodes in execution order with their shapes, the output."""

    input_name: str
    input_shape: Shape  # (C, H, W) for images, (F,) for vectors
    output: str
    nodes: list[Node]
    meta: dict = field(default_factory=dict)  # preprocess, num_classes, classes, producer, real_dtype

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def consumers(self) -> dict[str, list[Node]]:
        """For each value, the nodes reading it (a node reading a value twice is listed twice)."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def to_json(self) -> dict:
        channels, *size = self.input_shape
        return {"input": {"name": self.input_name, "channels": channels, "size": size}, "output": self.output,
                "nodes": [n.to_json() for n in self.nodes], **self.meta}

    @classmethod
    def from_json(cls, obj, tensors: dict[str, np.ndarray], where: str = "packed model") -> "Graph":
        """Validate a graph JSON against :data:`OPS` and ``tensors``; :class:`ModelFormatError` if invalid."""
        return _Validator(where, tensors).graph(obj)


_META = {"preprocess", "num_classes", "classes", "producer", "real_dtype"}


class _Validator:
    def __init__(self, where: str, tensors: dict[str, np.ndarray]):
        self.where = where
        self.tensors = tensors

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {what}")

    def graph(self, obj) -> Graph:
        if not isinstance(obj, dict):
            raise self.fail("corrupted graph (not a JSON object)")
        unknown = set(obj) - {"input", "output", "nodes"} - _META
        if unknown:
            raise self.fail(f"graph has unknown fields {sorted(unknown)!r}")
        name, shape = self.input(obj.get("input"))
        nodes_json = obj.get("nodes")
        if not isinstance(nodes_json, list) or not 1 <= len(nodes_json) <= MAX_NODES:
            raise self.fail(f"graph 'nodes' must be a list of 1 to {MAX_NODES} nodes, got {_show(nodes_json)}")
        shapes = {name: shape}
        nodes = []
        for index, item in enumerate(nodes_json):
            node = self.node(index, item, shapes)
            shapes[node.name] = node.shape
            nodes.append(node)
        output = obj.get("output")
        if not isinstance(output, str) or output not in shapes:
            raise self.fail(f"graph 'output' {_show(output)} names no value of the graph")
        used = {ref for n in nodes for ref in n.params.values()}
        unused = sorted(set(self.tensors) - used)
        if unused:
            raise self.fail(f"tensors {unused[:5]!r} are not used by any node")
        meta = {k: obj[k] for k in _META if k in obj}
        self.meta(meta, shape[0])
        return Graph(name, shape, output, nodes, meta)

    def input(self, inp) -> tuple[str, Shape]:
        """The input's name and shape for one image: (C, H, W), or (C,) for vectors, recorded as size [] (a
        file written before vector inputs existed has [H, W] and reads as before: no new format version)."""
        if not isinstance(inp, dict) or set(inp) != {"name", "channels", "size"}:
            raise self.fail("graph 'input' must be {'name', 'channels', 'size'}")
        name = Attr("text").parse(inp["name"])
        channels = Attr("int").parse(inp["channels"])
        size = () if inp["size"] == [] else Attr("ints", 2).parse(inp["size"])
        if not name or channels is None or size is None:
            raise self.fail(f"graph 'input' must have a name, channels (an integer in [1, {MAX_DIM}]) and a size: "
                            f"[H, W] (integers in [1, {MAX_DIM}]) for images, or [] for vectors of 'channels' "
                            f"features; got name {_show(inp['name'])}, channels {_show(inp['channels'])}, size "
                            f"{_show(inp['size'])}")
        shape = (channels, *size)
        if _prod(shape) > MAX_ELEMENTS:
            raise self.fail(f"input {shape} has more than {MAX_ELEMENTS} elements")
        return name, shape

    def node(self, index: int, item, shapes: dict[str, Shape]) -> Node:
        if not isinstance(item, dict) or set(item) != {"name", "op", "inputs", "attrs", "params"}:
            raise self.fail(f"node #{index} must be an object with exactly the fields name, op, inputs, attrs, "
                            f"params, got {_show(item)}")
        name, op = item["name"], item["op"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or name in shapes:
            raise self.fail(f"node #{index}: name {_show(name)} is not a new non-empty string of at most "
                            f"{MAX_NAME} characters")
        if not isinstance(op, str) or op not in OPS:
            raise self.fail(f"node {name!r}: unknown op {_show(op)}; this runtime runs: {', '.join(OPS)}")
        spec = OPS[op]
        node = Node(name, op, (), {})
        inputs, attrs, params = item["inputs"], item["attrs"], item["params"]
        if (not isinstance(inputs, list) or not spec.takes(len(inputs))
                or not all(isinstance(i, str) and i in shapes for i in inputs)):
            raise node.fail(f"'inputs' must list {spec.arity_text()} value(s) produced before it, got {_show(inputs)}"
                            + (f": {inputs!r}" if isinstance(inputs, list) and len(inputs) <= 4
                               and all(isinstance(i, str) and len(i) < 40 for i in inputs) else ""))
        node.inputs = tuple(inputs)
        node.in_shapes = tuple(shapes[i] for i in inputs)
        node.attrs = self.attrs(node, spec, attrs)
        node.shape = spec.infer(node)
        if _prod(node.shape) > MAX_ELEMENTS:
            raise node.fail(f"output {node.shape} has more than {MAX_ELEMENTS} elements per image")
        if spec.work(node) > MAX_WORK:
            raise node.fail(f"needs more than {MAX_WORK} operations per image")
        node.params = self.params(node, spec, params)
        return node

    @staticmethod
    def table(node: Node, field: str, what: str, value, known: dict) -> None:
        """``value`` (the node's ``field``) must be an object whose keys are all in ``known``."""
        if not isinstance(value, dict):
            raise node.fail(f"{field!r} must be an object, got {_show(value)}")
        unknown = sorted(k for k in value if k not in known)
        if unknown:
            raise node.fail(f"unknown {what} {[_show(k) for k in unknown[:5]]}; {node.op} has: "
                            f"{', '.join(known) or 'none'}")

    def attrs(self, node: Node, spec: OpSpec, attrs) -> dict:
        self.table(node, "attrs", "attributes", attrs, spec.attrs)
        out = {}
        for key, attr in spec.attrs.items():
            if key not in attrs:
                if attr.required:
                    raise node.fail(f"attribute {key!r} is missing: {attr.describe()}")
                continue
            value = attr.parse(attrs[key])
            if value is None:
                raise node.fail(f"attribute {key!r} must be {attr.describe()}, got {_show(attrs[key])}")
            out[key] = value
        return out

    def params(self, node: Node, spec: OpSpec, params) -> dict[str, str]:
        self.table(node, "params", "parameters", params, spec.params)
        out = {}
        for key, param in spec.params.items():
            if not param.applies(node):
                if key in params:
                    raise node.fail(f"parameter {key!r} does not belong to scaling {node.attrs.get('scaling')!r}")
                continue
            if key not in params:
                if not param.optional:
                    raise node.fail(f"parameter {key!r} is missing")
                continue
            ref = params[key]
            if not isinstance(ref, str) or ref not in self.tensors:
                raise node.fail(f"parameter {key!r}: tensor {_show(ref)} is not in the file")
            self.tensor(node, key, ref, param, self.tensors[ref])
            out[key] = ref
        return out

    def tensor(self, node: Node, key: str, ref: str, param: Param, t: np.ndarray) -> None:
        allowed = {"bits": ("uint8",), "float": ("float32",), "real": ("float32", "float16")}[param.kind]
        if str(t.dtype) not in allowed:
            raise node.fail(f"parameter {key!r} has dtype {t.dtype}, expected {' or '.join(allowed)}")
        shapes = param.shapes(node)
        if tuple(t.shape) not in shapes:
            raise node.fail(f"parameter {key!r} has shape {tuple(t.shape)}, expected "
                            + " or ".join(str(s) for s in shapes))
        if param.kind != "bits":
            bad = ~np.isfinite(t)
            if bad.any():  # NaN would reach the logits unnoticed (a NaN scale, shift or Γ), or as a sign
                first = np.unravel_index(np.flatnonzero(bad)[0], t.shape)
                raise node.fail(f"parameter {key!r} (tensor {_show(ref)}) holds {int(bad.sum())} NaN or infinite "
                                f"value(s), the first {t[first]} at index {tuple(int(i) for i in first)}; every "
                                "parameter must be finite")

    def meta(self, meta: dict, channels: int) -> None:
        if "num_classes" in meta and Attr("int").parse(meta["num_classes"]) is None:
            raise self.fail(f"graph 'num_classes' must be a positive integer, got {_show(meta['num_classes'])}")
        for key in ("producer", "real_dtype"):
            if key in meta and Attr("text").parse(meta[key]) is None:
                raise self.fail(f"graph {key!r} must be a string, got {_show(meta[key])}")
        classes = meta.get("classes")
        if classes is not None and not (
                isinstance(classes, list) and len(classes) == meta.get("num_classes", len(classes))
                and len(classes) <= MAX_DIM and all(Attr("text").parse(c) is not None for c in classes)):
            raise self.fail("graph 'classes' must be a list of num_classes strings (class names), got "
                            f"{_show(classes)}")
        pre = meta.get("preprocess")
        if pre is None:
            return
        number = Attr("number")
        ok = (isinstance(pre, dict) and set(pre) == {"dataset", "mean", "std"}
              and Attr("text").parse(pre["dataset"]) is not None
              and all(isinstance(pre[k], list) and len(pre[k]) == channels
                      and all(number.parse(v) is not None for v in pre[k]) for k in ("mean", "std"))
              and all(v != 0 for v in pre["std"]))
        if not ok:
            raise self.fail(f"graph 'preprocess' must be {{'dataset', 'mean', 'std'}} with {channels} finite "
                            "numbers each (std non-zero)")
