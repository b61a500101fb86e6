"""The fusion plan: which nodes of a validated graph run together in one kernel call.

Decided here only (the exporter writes one node per layer; the runtime runs the plan):

* a ``batch_norm`` read only by a binary layer becomes that layer's *input affine*, applied while
  its input is packed to bits (not for XNOR-Net's ``xnor`` scaling, whose K needs the real input);
* a real ``conv2d`` (any groups) or ``linear`` takes the ``batch_norm`` and then the ``prelu``/``relu``
  that follow it into its *epilogue*; a binary layer or a ``batch_norm`` takes a following
  ``prelu``/``relu``;
* a binary conv (groups 1) whose output is read only by another binary conv (groups 1) *hands over
  bits*: it applies the consumer's input affine and packs its output itself;
* a binary conv (groups 1, float output) whose output is read only by an ``add`` of two values of the
  same shape takes that add (ResNet's shortcut): it adds the other value as it writes its output, and
  runs where the add ran (the other value may be computed after the conv, as a downsampling shortcut is);
* a binary conv (groups 1) whose float output is also read by one binary conv (groups 1, through its input
  affine) writes *bits too*: the float value for its other readers and, beside it, the bits that packing
  it would give that reader (ResNet's residual stream and the next block's first conv).

A node is fused into another only when the other is its value's single reader and the value is
not the graph's output, so a value read by several nodes, or twice by one, stays a value.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import Graph, Node, Shape

BINARY_OPS = ("binary_conv2d", "binary_linear")
ACTIVATIONS = ("prelu", "relu")


@dataclass
class Step:
    """One kernel call: ``node`` with what the plan fused into it. ``kind`` is ``node.op``."""

    node: Node
    inputs: tuple[str, ...]                # values read (NHWC floats, or packed bits when bits_in)
    output: str                            # value written: the last fused node's name
    shape: Shape                           # of the output, one image
    input_affine: Node | None = None       # batch_norm applied while packing the input (binary ops)
    epilogue: tuple[Node, ...] = ()        # batch_norm and/or prelu/relu applied to the output
    bits_in: bool = False                  # the input arrives as packed bits from the step before
    bits_out: "Step | None" = None         # pack the output for this binary step (with its input affine)
    residual_add: Node | None = None       # an add fused into a binary conv: its other input is inputs[-1]
    bits_too: "Step | None" = None         # also write the float output's bits for this binary step

    @property
    def bits_output(self) -> str | None:
        """The value holding the bits of a ``bits_too`` step's output."""
        return bits_value(self.output) if self.bits_too else None

    @property
    def kind(self) -> str:
        return self.node.op

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (((self.input_affine,) if self.input_affine else ()) + (self.node,) + self.epilogue
                + ((self.residual_add,) if self.residual_add else ()))

    def describe(self) -> str:
        parts = [n.op for n in self.nodes]
        flags = ((" [bits in]" if self.bits_in else "") + (" [bits out]" if self.bits_out else "")
                 + (" [bits too]" if self.bits_too else ""))
        return f"{self.node.name}: " + " -> ".join(parts) + flags


def bits_value(value: str) -> str:
    """The name of the packed copy of a float value (not a node's name: plan checks)."""
    return value + ":bits"


def plan(graph: Graph) -> list[Step]:
    """The steps that run ``graph``, in order."""
    readers = graph.consumers()
    by_name = {n.name: n for n in graph.nodes}

    def only_reader(value: str) -> Node | None:
        users = readers.get(value, [])
        return users[0] if len(users) == 1 and value != graph.output else None

    absorbed: set[str] = set()
    affine_of: dict[str, Node] = {}
    for node in graph.nodes:
        src = by_name.get(node.inputs[0])
        if (node.op in BINARY_OPS and not node.scaling.analytic_k and src is not None
                and src.op == "batch_norm" and only_reader(src.name) is node):
            affine_of[node.name] = src
            absorbed.add(src.name)

    steps: list[Step] = []
    for node in graph.nodes:
        if node.name in absorbed:
            continue
        epilogue: list[Node] = []
        tail = node
        fusable = ((("batch_norm",), ACTIVATIONS) if node.op in ("conv2d", "linear")
                   else (ACTIVATIONS,) if node.op in BINARY_OPS + ("batch_norm",) else ())
        for ops in fusable:
            nxt = only_reader(tail.name)
            if nxt is None or nxt.op not in ops or nxt.name in absorbed:
                continue
            epilogue.append(nxt)
            absorbed.add(nxt.name)
            tail = nxt
        affine = affine_of.get(node.name)
        steps.append(Step(node, affine.inputs if affine else node.inputs, tail.name, tail.shape, affine,
                          tuple(epilogue)))

    # Bit handover between binary convs, then residual adds (neither changes which step reads what).
    step_readers = _step_readers(steps)
    for step in steps:
        users = step_readers.get(step.output, [])
        if step.output == graph.output or len(users) != 1:
            continue
        user = users[0]
        if step.kind == "binary_conv2d" and step.node.groups == 1 and _reads_bits(user, step.output):
            step.bits_out = user
            user.bits_in = True
    steps = _fuse_residual_adds(steps, step_readers, graph)
    _write_bits_too(steps, graph)
    return steps


def _reads_bits(step: Step, value: str) -> bool:
    """Can ``step`` read ``value`` as bits packed by the step that writes it (with step's input affine)?"""
    return (step.kind == "binary_conv2d" and step.node.groups == 1 and not step.node.scaling.analytic_k
            and not step.bits_in and step.inputs == (value,))


def _write_bits_too(steps: list[Step], graph: Graph) -> None:
    """A binary conv whose float output other steps read too packs it for its one binary reader."""
    names = {n.name for n in graph.nodes} | {graph.input_name}
    readers = _step_readers(steps)
    for step in steps:
        if step.kind != "binary_conv2d" or step.node.groups != 1 or step.bits_out or bits_value(step.output) in names:
            continue
        binary_readers = [user for user in readers.get(step.output, []) if _reads_bits(user, step.output)]
        if len(binary_readers) == 1:
            user = binary_readers[0]
            step.bits_too = user
            user.inputs, user.bits_in = (bits_value(step.output),), True


def _step_readers(steps: list[Step]) -> dict[str, list[Step]]:
    """The steps that read each value."""
    readers: dict[str, list[Step]] = {}
    for step in steps:
        for value in step.inputs:
            readers.setdefault(value, []).append(step)
    return readers


def _fuse_residual_adds(steps: list[Step], readers: dict[str, list[Step]], graph: Graph) -> list[Step]:
    """Binary conv + the add that alone reads its output -> one step, placed where the add was."""
    fused: dict[int, Step] = {}  # id of the add's step -> the conv step that takes it
    for step in steps:
        users = readers.get(step.output, [])
        if (step.kind != "binary_conv2d" or step.node.groups != 1 or step.bits_out or step.output == graph.output
                or len(users) != 1 or users[0].kind != "add" or users[0].inputs.count(step.output) != 1):
            continue
        add = users[0]
        in_shapes = add.node.in_shapes
        if len(in_shapes) != 2 or tuple(in_shapes[0]) != tuple(in_shapes[1]):
            continue  # broadcasting adds stay apart
        other = next(v for v in add.inputs if v != step.output)
        step.inputs = step.inputs + (other,)
        step.residual_add = add.node
        step.output, step.shape = add.output, add.shape
        fused[id(add)] = step
    moved = {id(s) for s in fused.values()}
    return [fused.get(id(s), s) for s in steps if id(s) not in moved]
