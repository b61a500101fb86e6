"""Named training recipes: documented presets of optimizer, schedule and binarization stages.

=================  ==========================================================================================
recipe             what it does
=================  ==========================================================================================
``xnorpp-paper``   XNOR-Net++ (Bulat & Tzimiropoulos 2019). Known from the paper: Adam, initial learning rate
                   1e-3, learning rate decayed in steps, binary weights and activations from the start,
                   scaling factors initialised to 1 and learned by backpropagation. *Our assumptions* (the
                   paper's exact values are not restated here): decay ×0.1 at 50 % and 75 % of the epochs,
                   weight decay 0 on the latent weights, batch 256, latent weights clipped to [−1, 1].
``bnn-two-step``   The authors' code (Bulat et al., "Improved training of binary networks"): stage 1 trains
                   real weights with binary activations, stage 2 (from the stage-1 weights) makes both binary.
                   Half the epochs each; Adam 1e-3 with a cosine decay restarted at stage 2.
``fast-cpu``       ``make demo``: Adam 2e-3, one-cycle (linear warm-up 1/6 of the steps, cosine to 0),
                   batch 128, 5 epochs; sized for two CPU cores.
=================  ==========================================================================================

In every recipe the learned scaling factors, PReLU slopes, BatchNorm parameters
and biases get no weight decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """A training preset; every field can be overridden from :class:`~xnorpp.train.TrainConfig`."""

    name: str
    description: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "step" | "cosine" | "onecycle"
    warmup_fraction: float = 0.0
    two_step: bool = False  # stage 1: real weights + binary activations; stage 2: both binary
    clip_weights: bool = True

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Learning-rate multiplier at optimizer step ``step`` of ``total_steps`` (a pure function: resumable)."""
        if self.two_step:  # each stage has its own schedule, restarted at the boundary
            half = max(total_steps // 2, 1)
            stage_step, stage_total = (step, half) if step < half else (step - half, max(total_steps - half, 1))
            return _schedule(self.schedule, self.warmup_fraction, stage_step, stage_total)
        return _schedule(self.schedule, self.warmup_fraction, step, total_steps)

    def stage(self, epoch: int, epochs: int) -> int:
        """Binarization stage of 0-based ``epoch``: 1 (real weights, binary activations) or 2 (all binary)."""
        return 1 if self.two_step and epoch < epochs // 2 else 2


def _schedule(kind: str, warmup_fraction: float, step: int, total: int) -> float:
    total = max(total, 1)
    warm = int(warmup_fraction * total)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    if kind == "step":
        return 0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("xnorpp-paper", "Adam 1e-3, step decay ×0.1 at 50%/75% of the epochs (XNOR-Net++; decay points assumed)",
           epochs=40, batch_size=256, lr=1e-3, schedule="step"),
    Recipe("bnn-two-step", "real weights + binary activations, then both binary (authors' code); Adam 1e-3, "
           "cosine per stage", epochs=40, batch_size=256, lr=1e-3, schedule="cosine", two_step=True),
    Recipe("fast-cpu", "the demo: Adam 2e-3, one-cycle (warm-up 1/6, cosine), batch 128, few epochs",
           epochs=5, batch_size=128, lr=2e-3, schedule="onecycle", warmup_fraction=1 / 6),
)}


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names: {', '.join(RECIPES)}")
    return RECIPES[name]
