"""Model summary: parameters, memory and multiply-accumulates (MACs) per precision.

``summary(model, input_size)`` runs one dry forward pass on a zero batch of one
image, records every leaf module's output shape with forward hooks and counts,
per layer:

* **parameters by precision** — *binary*: the latent weights of binary layers
  (1 bit each once packed); *float*: every other trainable parameter (biases,
  BatchNorm, PReLU, real convolutions and linear layers, learned scaling factors Γ);
  and, apart, the **BatchNorm statistics** (running mean and variance: state a float
  model needs at inference, folded away by the packed exporter), so that the
  parameter count is the one training reports.
* **MACs by precision** per image, counted as Larq does: a multiply-accumulate has
  the higher of its input's and its weight's precision. *binary*:
  ``o·(c/groups)·kh·kw·h_out·w_out`` for a binary convolution with binary inputs
  (``in·out`` for a binary linear layer), computable with XNOR + popcount; a binary
  layer that keeps its inputs real (``binarize_input=False``) counts these as *float*;
  *float*: the same for real convolutions and linear layers, plus XNOR-Net's
  per-input magnitude map K (``c·h_in·w_in`` for the channel mean and
  ``kh·kw·h_out·w_out`` for the box filter). Element-wise work (BatchNorm, PReLU,
  multiplying by a scale, residual additions, pooling) is not counted, as in Larq's
  ``models.summary`` and PyTorch's ``FlopCounterMode``.
* **memory** — the layer's training-graph storage at 1 bit per binary weight
  and 32 bits per float number;
* **packed bits** — what the layer takes in the packed file, read from the graph and
  tensors that :func:`xnorpp.export.build_graph` builds for it (the nodes it became: sign
  bits of binary weights at 1 bit each, float32 factors, biases, batch norm scale and shift,
  PReLU slopes, real weights).

The totals report the float32-equivalent size (every parameter and BatchNorm statistic at
32 bits: what a float checkpoint holds), the packed tensor bytes and the exact size of the packed file (tensor data +
safetensors header with the graph), both from the graph the exporter would write, the
compression ratio (float32-equivalent / packed file), the share of binary MACs and the
number of learned scaling parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..nn.layers import BinaryConv2d, BinaryLayer, BinaryLinear
from ..packed import format as packed_format
from ..scaling import FACTOR_AXES

FLOAT_BITS = 32


@dataclass
class LayerSummary:
    """One row of the summary (one leaf module)."""

    name: str
    kind: str  # class name, with the scaling of a binary layer
    output_shape: tuple[int, ...]  # per image (batch dimension dropped)
    binary_params: int = 0  # trainable, 1 bit each once packed
    float_params: int = 0  # trainable
    bn_stats: int = 0  # float buffers: BatchNorm running mean and variance (not trained)
    learned_scale_params: int = 0  # part of float_params: the learned Γ factors
    binary_macs: int = 0
    float_macs: int = 0
    packed_bits: int = 0  # in the exported file, from the exporter's graph (see the module docstring)

    @property
    def memory_bits(self) -> int:
        return self.binary_params + FLOAT_BITS * (self.float_params + self.bn_stats)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        d["memory_bits"] = self.memory_bits
        return d


@dataclass
class ModelSummary:
    """Per-layer rows and totals of :func:`summary`."""

    input_shape: tuple[int, ...]  # (c, h, w) of one image
    layers: list[LayerSummary] = field(default_factory=list)
    packed_bytes: int | None = None  # size of the exported file, when the model can be exported
    packed_tensor_bytes: int | None = None  # of which tensor data (as the file's header records it)
    packed_note: str = ""

    # -- totals --------------------------------------------------------------------------
    @property
    def binary_params(self) -> int:
        return sum(r.binary_params for r in self.layers)

    @property
    def float_params(self) -> int:
        return sum(r.float_params for r in self.layers)

    @property
    def total_params(self) -> int:
        """Trainable parameters (what training reports)."""
        return self.binary_params + self.float_params

    @property
    def bn_stats(self) -> int:
        return sum(r.bn_stats for r in self.layers)

    @property
    def learned_scale_params(self) -> int:
        return sum(r.learned_scale_params for r in self.layers)

    @property
    def binary_macs(self) -> int:
        return sum(r.binary_macs for r in self.layers)

    @property
    def float_macs(self) -> int:
        return sum(r.float_macs for r in self.layers)

    @property
    def binary_mac_share(self) -> float:
        total = self.binary_macs + self.float_macs
        return self.binary_macs / total if total else 0.0

    @property
    def memory_bits(self) -> int:
        """Training-graph storage at 1 bit per binary weight, 32 per float number."""
        return sum(r.memory_bits for r in self.layers)

    @property
    def float32_bytes(self) -> int:
        """Every parameter and BatchNorm statistic stored as float32."""
        return 4 * (self.total_params + self.bn_stats)

    @property
    def compression_ratio(self) -> float | None:
        """float32-equivalent size over the packed file size (None when not exportable)."""
        return self.float32_bytes / self.packed_bytes if self.packed_bytes else None

    def totals(self) -> dict:
        return {
            "binary_params": self.binary_params,
            "float_params": self.float_params,
            "total_params": self.total_params,
            "bn_stats": self.bn_stats,
            "learned_scale_params": self.learned_scale_params,
            "binary_macs": self.binary_macs,
            "float_macs": self.float_macs,
            "binary_mac_share": self.binary_mac_share,
            "memory_bits": self.memory_bits,
            "memory_bytes": math.ceil(self.memory_bits / 8),
            "float32_bytes": self.float32_bytes,
            "packed_bytes": self.packed_bytes,
            "packed_tensor_bytes": self.packed_tensor_bytes,
            "compression_ratio": self.compression_ratio,
        }

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "layers": [r.to_dict() for r in self.layers],
                "totals": self.totals(), "packed_note": self.packed_note}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # -- rendering -----------------------------------------------------------------------
    def table(self, markdown: bool = False) -> str:
        """The per-layer table and the totals as text (``markdown=True``: a Markdown table)."""
        head = ["layer", "kind", "output", "binary params", "float params", "BN stats", "memory", "packed",
                "binary MACs", "float MACs"]
        rows = [[r.name, r.kind, "×".join(map(str, r.output_shape)), _num(r.binary_params),
                 _num(r.float_params), _num(r.bn_stats), _bytes(r.memory_bits / 8), _bytes(r.packed_bits / 8),
                 _num(r.binary_macs), _num(r.float_macs)]
                for r in self.layers]
        rows.append(["total", "", "", _num(self.binary_params), _num(self.float_params), _num(self.bn_stats),
                     _bytes(self.memory_bits / 8), _bytes(sum(r.packed_bits for r in self.layers) / 8),
                     _num(self.binary_macs), _num(self.float_macs)])
        lines = _render(head, rows, markdown)
        lines.append("")
        ratio = self.compression_ratio
        packed = (f"{_bytes(self.packed_bytes)} ({self.packed_bytes:,} bytes: {self.packed_tensor_bytes:,} tensor "
                  f"data + {self.packed_bytes - self.packed_tensor_bytes:,} header and graph)"
                  if self.packed_bytes is not None else "n/a (not exported)")
        facts = [
            ("input shape", "×".join(map(str, self.input_shape))),
            ("trainable parameters", f"{self.total_params:,} ({self.binary_params:,} binary, "
                                     f"{self.float_params:,} float)"),
            ("batch norm statistics", f"{self.bn_stats:,} (running mean and variance; folded when packed)"),
            ("learned scaling parameters", f"{self.learned_scale_params:,}"),
            ("memory at 1 bit / 32 bits", f"{_bytes(self.memory_bits / 8)} ({self.memory_bits:,} bits)"),
            ("float32-equivalent size", f"{_bytes(self.float32_bytes)} ({self.float32_bytes:,} bytes)"),
            ("packed file", packed),
            ("compression ratio", f"{ratio:.2f}×" if ratio else "n/a"),
            ("MACs per image", f"{_num(self.binary_macs)} binary, {_num(self.float_macs)} float "
                               f"({100 * self.binary_mac_share:.1f}% binary)"),
        ]
        if markdown:
            lines += ["| total | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts]
        else:
            width = max(len(k) for k, _ in facts)
            lines += [f"{k:<{width}}  {v}" for k, v in facts]
        if self.packed_note:
            lines += ["", f"note: {self.packed_note}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _num(n: int) -> str:
    return f"{n:,}" if n else "0"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _render(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    numeric = set(range(3, len(head)))

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "  ".join("-" * w for w in widths)
    return [fmt(head), sep, *(fmt(r) for r in rows[:-1]), sep, fmt(rows[-1])]


# -- counting ------------------------------------------------------------------------------

def _kind(module: nn.Module) -> str:
    kind = type(module).__name__
    if isinstance(module, BinaryLayer):
        kind += f"[{module.scaling}]" if module.binarize_input else f"[{module.scaling}, weights only]"
    return kind


def _count_layer(name: str, module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> LayerSummary:
    row = LayerSummary(name=name or "(model)", kind=_kind(module), output_shape=tuple(out.shape[1:]))
    scale_names = set(FACTOR_AXES)
    for pname, p in module.named_parameters(recurse=False):
        n = p.numel()
        if isinstance(module, BinaryLayer) and pname == "weight":
            row.binary_params += n
        else:
            row.float_params += n
            if isinstance(module, BinaryLayer) and pname in scale_names:
                row.learned_scale_params += n
    for bname, b in module.named_buffers(recurse=False):
        if b.is_floating_point():  # BatchNorm running statistics (not num_batches_tracked)
            row.bn_stats += b.numel()

    if isinstance(module, nn.Conv2d):
        o, c_per_group, kh, kw = module.weight.shape
        h_out, w_out = out.shape[-2:]
        macs = o * c_per_group * kh * kw * h_out * w_out
        if isinstance(module, BinaryConv2d) and module.binarize_input:
            row.binary_macs = macs
            if module.scaling_spec.analytic_k:  # K: channel mean of |I|, then a box filter
                c, h_in, w_in = inp.shape[-3:]
                row.float_macs = c * h_in * w_in + kh * kw * h_out * w_out
        else:
            row.float_macs = macs
    elif isinstance(module, nn.Linear):
        macs = module.in_features * module.out_features
        if isinstance(module, BinaryLinear) and module.binarize_input:
            row.binary_macs = macs
            if module.scaling_spec.analytic_k:
                row.float_macs = module.in_features
        else:
            row.float_macs = macs
    return row


def _input_shape(model: nn.Module, input_size) -> tuple[int, int, int]:
    """(c, h, w) from an int, (h, w) or (c, h, w); channels from the first convolution when missing."""
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    try:
        dims = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be an int, (h, w) or (c, h, w); got {input_size!r}") from None
    if len(dims) == 2:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError("input_size (h, w) gives no channel count and the model has no convolution "
                             "to take it from; pass (c, h, w)")
        dims = (first.in_channels, *dims)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input_size must be (h, w) or (c, h, w) with positive sizes; got {tuple(input_size)}")
    return dims


def summary(model: nn.Module, input_size, *, packed: bool = True, dataset: str | None = None) -> ModelSummary:
    """Per-layer parameters, memory and MACs of ``model`` for one image of ``input_size``.

    ``input_size`` is ``(c, h, w)``, ``(h, w)`` (channels taken from the first
    convolution) or an int for square images. With ``packed=True`` the model is
    also built into the packed graph :func:`xnorpp.export.export_model` would write, whose
    exact file size is reported; models the exporter does not support get ``n/a`` and a
    note. ``dataset`` is recorded as ``xnorpp export`` does (its normalization), so the size
    is the one of the file users deploy.
    The model is left unchanged (it runs in eval mode under ``torch.no_grad``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: expected a torch.nn.Module, got {type(model).__name__}")
    shape = _input_shape(model, input_size)
    rows: dict[str, LayerSummary] = {}
    order: list[str] = []
    hooks = []

    def hook_for(name):
        def hook(module, args, output):
            if name in rows or not args or not isinstance(output, torch.Tensor):
                return
            order.append(name)
            rows[name] = _count_layer(name, module, args[0], output)
        return hook

    for name, module in model.named_modules():
        if not list(module.children()):  # leaf modules only
            hooks.append(module.register_forward_hook(hook_for(name)))
    param = next(model.parameters(), None)
    x = torch.zeros((1, *shape), dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"input size {shape} (c, h, w) does not fit the model: {err}") from err
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    result = ModelSummary(input_shape=shape, layers=[rows[n] for n in order])
    # Parameters of leaf modules that never ran (unused branches) still take memory.
    seen = set(order)
    for name, module in model.named_modules():
        if name not in seen and not list(module.children()) and any(True for _ in module.parameters()):
            result.layers.append(_count_layer(name, module, x, torch.zeros(1, 0)))  # not in the packed graph
    if packed:
        from .. import export

        try:
            graph, tensors = export.build_graph(model, shape[1:], dataset=dataset, in_channels=shape[0])
        except (export.ExportError, ValueError) as err:  # the exporter refuses the model: report, don't fail
            result.packed_note = f"packed size not available: {err}"
            return result
        by_module: dict[str, int] = {}
        for node in graph.nodes:
            module = node.attrs.get("module", "")
            by_module[module] = by_module.get(module, 0) + sum(tensors[ref].nbytes for ref in node.params.values())
        for row in result.layers:
            row.packed_bits = 8 * by_module.get(row.name, 0)
        result.packed_tensor_bytes = sum(t.nbytes for t in tensors.values())
        result.packed_bytes = len(packed_format.encode(graph.to_json(), tensors))  # what export_model writes
    return result
