"""Load a packed model and run it: numpy in, logits out, no PyTorch.

``load`` reads the file (:mod:`xnorpp.packed.format`), validates the graph for the recorded input
shape (:mod:`xnorpp.packed.schema`), asks :mod:`xnorpp.packed.plan` which nodes run together and
builds each step with the kernel registered for its op (:mod:`.kernels`). Everything that can be
checked is checked then: a model that loads runs on any batch of the recorded input shape.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import _core
from ..packed import Graph, ModelFormatError, Step, plan, read
from .kernels import KERNELS, Tensors, int8_input_layer

INPUT_LAYERS = ("float32", "int8")
_NAN_INPUT = "input contains NaN; a NaN has no sign (the packed runtime refuses it)"


class PackedModel:
    """A packed binary network ready to run: ``logits = model(x)`` with x a float32 numpy batch (N, C, H, W),
    or (N, F) for a model exported for vectors (``input_shape`` says which: (C, H, W) or (F,)).

    ``input_layer="int8"`` runs the real conv that reads the input in integers (docs/design.md, "The int8
    input layer"): exact for inputs that are normalized 8-bit images, with its weights rounded to 7 bits.
    """

    def __init__(self, graph: Graph, tensors: dict[str, np.ndarray], path: str | None = None,
                 input_layer: str = "float32"):
        self.path = path
        self.graph = graph
        self.input_shape = graph.input_shape  # one input: (C, H, W), or (F,) for vectors
        self.in_channels = graph.input_shape[0]  # the features of a vector
        self.input_size = graph.input_shape[1:]  # (H, W), or () for vectors
        self.num_classes = graph.meta.get("num_classes")
        self.classes = graph.meta.get("classes")  # class names, when the data set has them
        self.preprocess = graph.meta.get("preprocess")
        self._tensors = Tensors(tensors)
        self.steps = plan(graph)
        where = self._where = f"packed model {path!r}" if path else "packed model"
        if input_layer not in INPUT_LAYERS:
            raise ValueError(f"input_layer must be one of {', '.join(INPUT_LAYERS)}, got {input_layer!r}")
        self.input_layer = input_layer
        int8_step = self._int8_input_step() if input_layer == "int8" else None
        self._fns = []
        for step in self.steps:
            try:
                if step is int8_step:
                    self._fns.append(int8_input_layer(step, self._tensors, self.preprocess["mean"],
                                                      self.preprocess["std"]))
                    continue
                self._fns.append(KERNELS[step.kind](step, self._tensors))
            except (ValueError, TypeError) as err:  # the core refused what the schema let through: a bug, named
                raise ModelFormatError(f"{where}: {step.node.where}: {err}") from None
        # Free each value after its last reader (a value may be read by several steps, or twice by one).
        last_read: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            for value in step.inputs:
                last_read[value] = index
        self._free = [sorted({v for v in step.inputs if last_read[v] == index and v != graph.output})
                      for index, step in enumerate(self.steps)]
        self._output_node = next((n for n in graph.nodes if n.name == graph.output), None)  # None: the input

    def _int8_input_step(self) -> Step:
        """The step that runs the input layer in int8; a clear error when this model has none."""
        first = next((s for s in self.steps if self.graph.input_name in s.inputs), None)
        if first is None or first.kind != "conv2d" or first.node.attrs["groups"] != 1 or first.input_affine:
            what = f"{first.node.op} ({first.node.where})" if first else "nothing"
            raise ValueError(f"{self._where}: input_layer='int8' needs a real conv2d (groups 1) reading the input; "
                             f"this model reads it with {what}")
        if not self.preprocess:
            raise ValueError(f"{self._where}: input_layer='int8' needs the input normalization (mean, std) of the "
                             "data set, and this file records none; export it with --dataset NAME")
        return first

    # -- running -----------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """Validate an input batch; returns it as (N, C, H, W), or (N, F) for vectors. Clear errors for wrong
        type/shape/dtype/layout."""
        x = self._check_layout(x)
        if np.isnan(x).any():
            raise ValueError(_NAN_INPUT)
        return x

    def _check_layout(self, x) -> np.ndarray:
        """check_input without the NaN check (which __call__ does while it converts the input to NHWC)."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"expected a numpy.ndarray, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise TypeError(f"expected dtype float32, got {x.dtype}; convert with x.astype(numpy.float32)")
        given = tuple(x.shape)  # for messages: the caller's shape, before one image gets its batch axis
        if x.ndim == len(self.input_shape):  # one image, or one vector
            x = x[None]
        if not self.input_size:
            if x.ndim != 2 or x.shape[1] != self.in_channels or x.shape[0] < 1:
                raise ValueError(f"expected an input of shape (N, {self.in_channels}): the model was exported for "
                                 f"vectors of {self.in_channels} features; got {given}")
        else:
            want = f"(N, {self.in_channels}, {self.input_size[0]}, {self.input_size[1]})"
            if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[0] < 1:
                raise ValueError(f"expected an input of shape {want}, got {given}")
            if tuple(x.shape[2:]) != self.input_size:
                raise ValueError(f"expected an input of shape {want}, got {given}: the model was exported "
                                 "for this resolution (spatial scaling and every layer's geometry are fixed)")
        if not x.flags.c_contiguous:
            raise ValueError("input array is not C-contiguous; pass numpy.ascontiguousarray(x)")
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of a float32 batch (N, C, H, W) or (N, F); feature maps come back as (N, C, H, W)."""
        x = self._check_layout(x)
        if x.ndim == 2:  # vectors are NHWC already; a copy, so that no step's output is the caller's array
            if np.isnan(x).any():
                raise ValueError(_NAN_INPUT)
            values = {self.graph.input_name: x.copy()}
        else:
            values = {self.graph.input_name: _core.to_nhwc(x)}  # a NaN in x: _core.NaNError, a ValueError
        _core.hold_workers(True)  # the kernel threads wait for the next layer spinning, not asleep
        try:
            for step, fn, free in zip(self.steps, self._fns, self._free):
                try:
                    if step.bits_too:  # the float output and its bits for a binary step (plan.py)
                        values[step.output], values[step.bits_output] = fn(*(values[v] for v in step.inputs))
                    else:
                        values[step.output] = fn(*(values[v] for v in step.inputs))
                except _core.NaNError:  # the input had none (checked above): the file's numbers overflow
                    raise ModelFormatError(f"{self._where}: {step.node.where}: NaN appeared on this input (the "
                                           "model's parameters overflow float32)") from None
                for v in free:
                    del values[v]
        finally:
            _core.hold_workers(False)
        y = values[self.graph.output]
        # A NaN made after the last binary layer (which refuses one as it packs) would otherwise come out as a logit.
        if self._output_node is not None and np.isnan(y).any():
            raise ModelFormatError(f"{self._where}: {self._output_node.where}: NaN appeared on this input (the "
                                   "model's parameters overflow float32)")
        return _to_nchw(y)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits of a large array, ``batch_size`` images at a time."""
        x = self.check_input(x)
        return np.concatenate([self(np.ascontiguousarray(x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)])

    def run_node(self, name: str, *inputs: np.ndarray, dots: bool = False) -> np.ndarray:
        """Run one node alone, unfused, on float32 inputs (N, C, H, W) or (N, F); for tests and debugging.

        ``dots=True`` (binary layers) returns the integer dot products sign(x) ⊛ sign(W), int32.
        """
        node = self.graph.node(name)
        step = Step(node, node.inputs, node.name, node.shape)
        fn = KERNELS[node.op](step, self._tensors)
        arrays = [np.ascontiguousarray(_to_nhwc(np.asarray(x, np.float32))) for x in inputs]
        if dots:
            if not hasattr(fn, "dots"):
                raise ValueError(f"node {name!r} ({node.op}) is not a binary layer: it has no dot products")
            return _to_nchw(fn.dots(*arrays))
        return _to_nchw(fn(*arrays))

    @property
    def isa(self) -> str:
        """The instruction-set path of the binary layers."""
        for fn in self._fns:
            if hasattr(fn, "layer"):
                return fn.layer.isa
        return _core.isa()

    def summary(self) -> dict:
        """Counts of nodes by op, the planned steps, the ISA, the file size."""
        counts: dict[str, int] = {}
        for node in self.graph.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        info = {"nodes": counts, "steps": [s.describe() for s in self.steps], "isa": self.isa,
                "threads": _core.num_threads(), "input": self.graph.input_shape, "input_layer": self.input_layer}
        if self.path:
            info["file_bytes"] = os.path.getsize(self.path)
        return info


def _to_nchw(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2) if y.ndim == 4 else y)


def _to_nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def load(path: str | os.PathLike, *, threads: int | None = None, input_layer: str = "float32") -> PackedModel:
    """Load a packed model file (``.xnor``, written by ``xnorpp export``).

    ``threads`` sets the kernel thread count (default: all cores, or ``XNORPP_NUM_THREADS``).
    ``input_layer="int8"`` runs the first (real) conv in integers: faster where the CPU multiplies bytes
    quickly (AVX512-VNNI), exact on 8-bit images, weights rounded to 7 bits (docs/design.md).
    The instruction-set path is chosen from the CPU, or forced with ``XNORPP_ISA``.
    Raises :class:`ModelFormatError` (a ``ValueError``) naming the node and field of a bad file.
    """
    if threads is not None:
        _core.set_num_threads(int(threads))
    graph_json, tensors = read(path)
    where = repr(str(path))
    return PackedModel(Graph.from_json(graph_json, tensors, where), tensors, str(Path(path)), input_layer)
