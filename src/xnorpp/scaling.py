"""The scaling schemes of XNOR-Net and XNOR-Net++, defined once.

This module is the single source of truth for the scaling names used by the
training layers (``xnorpp.nn``), the exporter, the analysis tools and the packed
runtime. It imports neither torch nor numpy, so the runtime can use it too.

Notation (docs/design.md, The method): a binary convolution computes
``(sign(I) ⊛ sign(W)) ⊙ scale`` where the scale depends on the scheme:

========================  =================================================  ==========================
name                      scale                                              learned numbers per layer
========================  =================================================  ==========================
``none``                  1                                                  0
``xnor``                  K α  (α_o = mean|W_o|, K = box filter of mean_c|I|)  0 (analytic, per input)
``xnor-alpha``            α    (XNOR-Net's official code: K dropped)          0 (analytic)
``gamma-o``               Γ ∈ R^o                                            o
``gamma-ohw``             Γ ∈ R^{o×h×w}                                      o·h·w
``gamma-o-hw``            α ⊗ β, α ∈ R^o, β ∈ R^{h×w}                        o + h·w
``gamma-o-h-w``           α ⊗ β ⊗ γ, α ∈ R^o, β ∈ R^h, γ ∈ R^w               o + h + w
========================  =================================================  ==========================

Learned factors are stored as separate parameters whose names and axes are
listed in :data:`FACTOR_AXES`; the full scale is their product broadcast over
the output layout ``(o, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each learned factor: its parameter name and the output axes it spans, in
# (o, h, w) order. Γ = product of a scheme's factors, broadcast over (o, h, w).
FACTOR_AXES: dict[str, tuple[str, ...]] = {
    "scale_channel": ("o",),
    "scale_height": ("h",),
    "scale_width": ("w",),
    "scale_spatial": ("h", "w"),
    "scale_full": ("o", "h", "w"),
}


@dataclass(frozen=True)
class Scaling:
    """One scaling scheme: what it multiplies the binary dot products by."""

    name: str
    meaning: str
    factors: tuple[str, ...] = ()  # learned parameters (keys of FACTOR_AXES)
    analytic_alpha: bool = False  # α_o = mean |W_o|, computed from the latent weights
    analytic_k: bool = False  # K: per-input magnitude map of XNOR-Net

    @property
    def learned(self) -> bool:
        return bool(self.factors)

    @property
    def spatial(self) -> bool:
        """True when the scale depends on the output position (fixes the input size)."""
        return any("h" in FACTOR_AXES[f] or "w" in FACTOR_AXES[f] for f in self.factors)

    def factor_shapes(self, out_channels: int, out_size: tuple[int, int] | None) -> dict[str, tuple[int, ...]]:
        """Shape of each learned factor for a layer with ``out_channels`` and output ``(h, w)``."""
        if self.spatial and out_size is None:
            raise ValueError(f"scaling {self.name!r} needs the layer's output size (h, w)")
        sizes = {"o": out_channels}
        if out_size is not None:
            sizes.update(h=int(out_size[0]), w=int(out_size[1]))
        return {f: tuple(sizes[a] for a in FACTOR_AXES[f]) for f in self.factors}

    def learned_count(self, out_channels: int, out_size: tuple[int, int] | None) -> int:
        """Number of learned scaling numbers of one layer."""
        total = 0
        for shape in self.factor_shapes(out_channels, out_size).values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total


SCALINGS: dict[str, Scaling] = {
    s.name: s
    for s in (
        Scaling("none", "sign(I) ⊛ sign(W), no scaling"),
        Scaling("xnor", "XNOR-Net: ⊙ K α, α = mean|W| per output channel, K = box filter of mean_c |I|",
                analytic_alpha=True, analytic_k=True),
        Scaling("xnor-alpha", "XNOR-Net without K (its official code): ⊙ α, α = mean|W| per output channel",
                analytic_alpha=True),
        Scaling("gamma-o", "XNOR-Net++: learned Γ ∈ R^o (one factor per output channel)",
                factors=("scale_channel",)),
        Scaling("gamma-ohw", "XNOR-Net++: learned Γ ∈ R^{o×h×w} (one factor per output value)",
                factors=("scale_full",)),
        Scaling("gamma-o-hw", "XNOR-Net++: learned α ⊗ β, α ∈ R^o, β ∈ R^{h×w}",
                factors=("scale_channel", "scale_spatial")),
        Scaling("gamma-o-h-w", "XNOR-Net++: learned α ⊗ β ⊗ γ, α ∈ R^o, β ∈ R^h, γ ∈ R^w (best in the paper)",
                factors=("scale_channel", "scale_height", "scale_width")),
    )
}

DEFAULT_CONV_SCALING = "gamma-o-h-w"
DEFAULT_LINEAR_SCALING = "gamma-o"
# A fully connected layer has no spatial output: these schemes apply to it.
LINEAR_SCALINGS = ("none", "xnor", "xnor-alpha", "gamma-o")


def get_scaling(name: str, *, linear: bool = False, owner: str = "layer") -> Scaling:
    """Look up a scaling scheme by name; a clear ``ValueError`` for an unknown or unfit name."""
    valid = LINEAR_SCALINGS if linear else tuple(SCALINGS)
    if name not in valid:
        if linear and name in SCALINGS:
            raise ValueError(
                f"{owner}: scaling {name!r} has a spatial factor and a linear layer has no spatial "
                f"output; valid scalings for linear layers: {', '.join(valid)}"
            )
        raise ValueError(f"{owner}: unknown scaling {name!r}; valid names: {', '.join(valid)}")
    return SCALINGS[name]


def linear_equivalent(name: str) -> str:
    """The scheme a linear layer uses when a model asks for ``name`` (spatial Γ → per channel)."""
    get_scaling(name)
    return name if name in LINEAR_SCALINGS else "gamma-o"
