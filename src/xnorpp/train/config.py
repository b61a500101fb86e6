"""``TrainConfig``: everything a training run depends on, as primitives (saved as config.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """A training run. ``None`` fields take the recipe's value (see :mod:`xnorpp.train.recipes`).

    ``batch_size`` is per process (as in torchvision's reference scripts): with
    ``torchrun --nproc-per-node N`` the global batch is ``N × batch_size``.
    ``model_opts`` go to the model constructor (e.g. ``{"width": 32}``).
    ``stop_after`` ends this invocation after that many epochs (the run stays
    resumable), for time-sliced jobs and for testing ``resume``.
    """

    model: str = "fmnist-net"
    dataset: str = "fashion-mnist"
    scaling: str = "gamma-o-h-w"
    recipe: str = "xnorpp-paper"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    clip_weights: bool | None = None
    ste: str = "clipped"
    augment: bool = True
    label_smoothing: float = 0.0
    model_opts: dict = field(default_factory=dict)
    seed: int = 0
    data_root: str | None = None
    out_dir: str = "runs"
    run_dir: str | None = None
    resume: bool = False
    stop_after: int | None = None
    workers: int = 0
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda", "cuda:1"
    amp: bool = True  # mixed precision, only on CUDA
    channels_last: bool = True  # only on CUDA
    threads: int | None = None  # torch.set_num_threads on CPU; None = cores / processes
    compile: bool | None = None  # torch.compile the training step; None = when the run is long enough to gain
    progress: bool = True
    tensorboard: bool = True
    train_subset: int | None = None  # use only the first N training images (quick experiments)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)

    def resolved(self) -> "TrainConfig":
        """A copy with the recipe's values filled in for the ``None`` fields (checks names)."""
        from ..data import dataset_info
        from ..models import list_models
        from ..models.registry import check_options
        from ..scaling import get_scaling
        from .recipes import get_recipe
        recipe = get_recipe(self.recipe)
        dataset_info(self.dataset)
        get_scaling(self.scaling)
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; valid names: {', '.join(list_models())}")
        check_options(self.model, self.model_opts)
        out = dataclasses.replace(self)
        for name in ("epochs", "batch_size", "lr", "weight_decay", "clip_weights"):
            if getattr(out, name) is None:
                setattr(out, name, getattr(recipe, name))
        if out.epochs < 1 or out.batch_size < 1 or out.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive, got {out.epochs}, {out.batch_size}, "
                             f"{out.lr}")
        return out
