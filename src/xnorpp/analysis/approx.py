"""How well does each scaling approximate the real convolution? (XNOR-Net++'s contribution c)

For every binary layer of a model, on held-out images, compare the real
convolution ``I ∗ W`` — real latent weights, real pre-sign input, zero padding,
no bias — with its binary approximations ``(sign(I) ⊛ sign(W)) ⊙ scale``:

=============  =============================================================
scheme         scale
=============  =============================================================
``none``       1
``xnor-alpha`` α, α_o = mean |W_o| (XNOR-Net's official code)
``xnor``       K α (XNOR-Net's paper; K = box filter of mean_c |I|)
``learned``    the layer's learned Γ (only layers trained with a ``gamma-*`` scaling)
``oracle``     the least-squares optimal per-output-channel scale on these images
=============  =============================================================

The analytic and oracle schemes are evaluated on every binary layer whatever
scaling it was trained with, on the same binary dot products; ``sign(I) ⊛
sign(W)`` uses the layer's own padding value. For a layer that keeps its input
real (``binarize_input=False``) the binary product is ``I ⊛ sign(W)`` and
``xnor`` (which needs binarized inputs) is not defined.

Two numbers per layer and scheme, accumulated over all the images (float64):

* relative error ``‖I∗W − approx‖₂ / ‖I∗W‖₂`` (over the whole output tensor);
* cosine similarity ``⟨I∗W, approx⟩ / (‖I∗W‖₂ ‖approx‖₂)``. It ignores one
  global scale: ``sqrt(1 − cos²)`` is the relative error after the best single
  rescaling, the fair number for a learned Γ whose overall magnitude a later
  normalization can absorb;
* the relative error after the best per-output-channel rescaling of the
  approximation (``rescaled_error``): it judges only the *shape* of a scale (its
  spatial pattern), not its magnitude. For the per-channel schemes (none, α,
  ``gamma-o``) it equals the oracle's error; a spatial scale (Kα, β, γ) beats
  the oracle exactly when its spatial pattern helps.

Sanity values (tested): on i.i.d. Gaussian inputs and weights the relative error
of XNOR-Net (``xnor``) tends to ``sqrt(1 − 4/π²) ≈ 0.771`` and that of binary
weights only (α) to ``sqrt(1 − 2/π) ≈ 0.603``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import BinaryConv2d, BinaryLayer

SCHEMES = ("none", "xnor-alpha", "xnor", "learned", "oracle")
SCHEME_TITLES = {"none": "none", "xnor-alpha": "xnor-alpha (α)", "xnor": "xnor (Kα)", "learned": "learned Γ",
                 "oracle": "oracle (LS per channel)"}


@dataclass
class LayerApprox:
    """Approximation quality of one binary layer under each scheme."""

    name: str
    kind: str
    scaling: str  # the scaling the layer was trained with
    output_shape: tuple[int, ...]
    relative_error: dict[str, float | None] = field(default_factory=dict)
    cosine: dict[str, float | None] = field(default_factory=dict)
    rescaled_error: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "scaling": self.scaling,
                "output_shape": list(self.output_shape), "relative_error": dict(self.relative_error),
                "cosine": dict(self.cosine), "rescaled_error": dict(self.rescaled_error)}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerApprox":
        return cls(d["name"], d["kind"], d["scaling"], tuple(d["output_shape"]), dict(d["relative_error"]),
                   dict(d["cosine"]), dict(d.get("rescaled_error", {})))


@dataclass
class ApproxReport:
    """Result of :func:`approximation_error`: one row per binary layer."""

    images: int
    layers: list[LayerApprox] = field(default_factory=list)

    def mean(self, metric: str = "relative_error") -> dict[str, float | None]:
        """Unweighted mean over layers of each scheme (over the layers where it is defined)."""
        out = {}
        for s in SCHEMES:
            vals = [getattr(r, metric)[s] for r in self.layers if getattr(r, metric).get(s) is not None]
            out[s] = sum(vals) / len(vals) if vals else None
        return out

    def to_dict(self) -> dict:
        return {"images": self.images, "schemes": list(SCHEMES), "layers": [r.to_dict() for r in self.layers],
                "mean_relative_error": self.mean("relative_error"), "mean_cosine": self.mean("cosine"),
                "mean_rescaled_error": self.mean("rescaled_error")}

    @classmethod
    def from_dict(cls, d: dict) -> "ApproxReport":
        return cls(int(d["images"]), [LayerApprox.from_dict(r) for r in d["layers"]])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self, markdown: bool = False) -> str:
        """Three tables (relative error, cosine similarity, error after per-channel rescaling): layers × schemes."""
        parts = []
        for metric, title in (("relative_error", "relative error ‖I∗W − approx‖ / ‖I∗W‖ (lower is better)"),
                              ("cosine", "cosine similarity (higher is better)"),
                              ("rescaled_error", "relative error after the best per-channel rescaling: the "
                                                 "shape of each scale (lower is better)")):
            head = ["layer", "trained with"] + [SCHEME_TITLES[s] for s in SCHEMES]
            rows = [[r.name, r.scaling] + [_fmt(getattr(r, metric).get(s)) for s in SCHEMES] for r in self.layers]
            mean = self.mean(metric)
            rows.append(["mean over layers", ""] + [_fmt(mean[s]) for s in SCHEMES])
            parts.append(("**" + title + "**" if markdown else title) + f" — {self.images} images")
            parts.append(_render(head, rows, markdown))
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.table()


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _render(head, rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


class _Accumulator:
    """Per-output-channel sums ⟨y,y⟩, ⟨y,a⟩, ⟨a,a⟩ for each scheme, in float64."""

    def __init__(self, layer: BinaryLayer):
        self.layer = layer
        self.yy = None
        self.ya: dict[str, torch.Tensor] = {}
        self.aa: dict[str, torch.Tensor] = {}
        self.output_shape: tuple[int, ...] = ()

    @staticmethod
    def _channel_sums(t: torch.Tensor, channel_dim: int) -> torch.Tensor:
        dims = [d for d in range(t.dim()) if d != channel_dim]
        return t.sum(dim=dims, dtype=torch.float64)

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        layer = self.layer
        x = x.detach()
        if isinstance(layer, BinaryConv2d):
            real = F.conv2d(layer._pad(x, 0.0), layer.weight, None, layer.stride, 0, layer.dilation, layer.groups)
            channel_dim = 1
            if x.dim() == 3:  # unbatched input
                real, channel_dim = real.unsqueeze(0), 1
                x = x.unsqueeze(0)
            alpha = layer.weight_alpha().view(-1, 1, 1)
        else:
            real = F.linear(x, layer.weight)
            channel_dim = real.dim() - 1
            alpha = layer.weight_alpha()
        binary = layer.binary_conv(x)
        self.output_shape = tuple(real.shape[1:])
        approx = {"none": binary, "xnor-alpha": binary * alpha}
        if layer.binarize_input:
            k = layer.magnitude_map(x) if isinstance(layer, BinaryConv2d) else x.abs().mean(dim=-1, keepdim=True)
            approx["xnor"] = binary * alpha * k
        if layer.scaling_spec.learned:
            approx["learned"] = binary * layer.learned_scale()
        real = real.double()
        yy = self._channel_sums(real * real, channel_dim)
        self.yy = yy if self.yy is None else self.yy + yy
        for scheme, a in approx.items():
            a = a.double()
            ya = self._channel_sums(real * a, channel_dim)
            aa = self._channel_sums(a * a, channel_dim)
            self.ya[scheme] = self.ya.get(scheme, 0) + ya
            self.aa[scheme] = self.aa.get(scheme, 0) + aa

    def metrics(self) -> tuple[dict, dict, dict]:
        yy = float(self.yy.sum())
        rel, cos, rescaled = {}, {}, {}
        for scheme in SCHEMES:
            if scheme == "oracle":
                ya, aa = self.ya["none"], self.aa["none"]
                nz = aa > 0
                captured = float((ya[nz] ** 2 / aa[nz]).sum())  # Σ_o ⟨y,b⟩²/⟨b,b⟩ at s_o = ⟨y,b⟩/⟨b,b⟩
                err2, dot, norm2 = yy - captured, captured, captured
            elif scheme in self.ya:
                dot, norm2 = float(self.ya[scheme].sum()), float(self.aa[scheme].sum())
                err2 = yy - 2 * dot + norm2
            else:
                rel[scheme] = cos[scheme] = rescaled[scheme] = None
                continue
            rel[scheme] = math.sqrt(max(err2, 0.0) / yy) if yy > 0 else None
            cos[scheme] = dot / math.sqrt(yy * norm2) if yy > 0 and norm2 > 0 else None
            # Best per-channel rescaling s_o = ⟨y,a⟩_o/⟨a,a⟩_o leaves Σ_o ⟨y,y⟩_o − ⟨y,a⟩_o²/⟨a,a⟩_o.
            key = "none" if scheme == "oracle" else scheme
            ya, aa = self.ya[key], self.aa[key]
            nz = aa > 0
            left = yy - float((ya[nz] ** 2 / aa[nz]).sum())
            rescaled[scheme] = math.sqrt(max(left, 0.0) / yy) if yy > 0 else None
        return rel, cos, rescaled


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """The (name, layer) pairs of the model's binary layers, in definition order."""
    return [(name or "(model)", m) for name, m in model.named_modules() if isinstance(m, BinaryLayer)]


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    """Image batches from a tensor, a Dataset of (image, label) or images, or an iterable of batches."""
    if isinstance(data, torch.Tensor):
        if data.dim() == 3:
            data = data.unsqueeze(0)
        yield from data.split(batch_size)
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        iterator = iter(data)
    except TypeError:
        raise TypeError("approximation_error: data must be a tensor of images, a Dataset or DataLoader, or an "
                        f"iterable of batches; got {type(data).__name__}") from None
    for batch in iterator:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"approximation_error: expected image batches as tensors, got {type(batch).__name__}")
        yield batch


def approximation_error(model: nn.Module, data, *, max_images: int | None = 256, batch_size: int = 64,
                        device: str | torch.device | None = None) -> ApproxReport:
    """Relative error and cosine similarity of each scaling scheme, for every binary layer.

    ``data``: held-out images as a tensor ``(N, C, H, W)``, a ``Dataset`` /
    ``DataLoader`` yielding ``(image, label)`` pairs or images, or any iterable of
    such batches; at most ``max_images`` are used. The model runs in eval mode
    (its BatchNorm uses running statistics) and is left as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"approximation_error: expected a torch.nn.Module, got {type(model).__name__}")
    layers = binary_layers(model)
    if not layers:
        raise ValueError("approximation_error: the model has no binary layers (BinaryConv2d / BinaryLinear); "
                         "there is no binary approximation to measure — convert it first with xnorpp.convert()")
    if max_images is not None and max_images < 1:
        raise ValueError(f"approximation_error: max_images must be ≥ 1, got {max_images}")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    accumulators = {name: _Accumulator(layer) for name, layer in layers}
    hooks = [layer.register_forward_pre_hook(lambda m, args, acc=accumulators[name]: acc.add(args[0]))
             for name, layer in layers]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in _batches(data, batch_size):
                if max_images is not None:
                    batch = batch[: max_images - seen]
                if len(batch) == 0:
                    break
                if not batch.is_floating_point():
                    batch = batch.float()
                model(batch.to(device))
                seen += len(batch)
                if max_images is not None and seen >= max_images:
                    break
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("approximation_error: the data yielded no images")
    report = ApproxReport(images=seen)
    for name, layer in layers:
        acc = accumulators[name]
        if acc.yy is None:  # layer not reached by the forward pass
            continue
        rel, cos, rescaled = acc.metrics()
        report.layers.append(LayerApprox(name, type(layer).__name__, layer.scaling, acc.output_shape, rel, cos,
                                         rescaled))
    return report
