"""Checkpoints: atomic writes, safe loading (``weights_only=True``), rebuilding a model from a run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write
from ..packed.format import is_packed_model
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a half-written file."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def load_file(path: str | os.PathLike) -> dict:
    """Load a checkpoint.pt / model.pt with ``weights_only=True`` (tensors and primitives only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if is_packed_model(path):
        raise ValueError(f"{path} is a packed model (.xnor) already, not a checkpoint: run it with `xnorpp run "
                         f"{path}`; export takes a run folder or its checkpoint.pt / model.pt")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text advises weights_only=False: never for a file one did not make
        raise ValueError(f"{path} holds Python objects other than tensors and plain values (e.g. a whole pickled "
                         "model), which xnorpp does not load, as they could run code; an xnorpp checkpoint holds "
                         "a state_dict ({'model': model.state_dict(), 'config': ...})") from None
    except Exception as err:  # not a torch file, or a damaged one
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"{path} is not an xnorpp checkpoint: expected a dict with a 'model' state_dict")
    return data


def resolve_path(path: str | os.PathLike) -> Path:
    """A run folder → its model.pt (finished run) or checkpoint.pt; a file → itself."""
    path = Path(path)
    if path.is_dir():
        for name in (FINAL_MODEL, CHECKPOINT):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} is not a run folder: it has neither {FINAL_MODEL} nor {CHECKPOINT} (give a "
                                f"folder made by `xnorpp train`, or its {CHECKPOINT} or {FINAL_MODEL})")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (give a run folder made by `xnorpp train`, or its "
                                f"{CHECKPOINT} or {FINAL_MODEL})")
    return path


def build_model(config: TrainConfig) -> nn.Module:
    """The model a config describes, sized for its data set."""
    from ..data import dataset_info
    from ..models import create
    info = dataset_info(config.dataset)
    opts = dict(config.model_opts)
    if config.model.startswith("float-"):
        opts.pop("ste", None)
    else:
        opts.setdefault("ste", config.ste)
    return create(config.model, num_classes=info.num_classes, in_channels=info.in_channels, scaling=config.scaling,
                  input_size=info.input_size, **opts)


def load_state_checked(model: nn.Module, state: dict, source: str = "checkpoint") -> None:
    """``load_state_dict`` with one clear error listing what does not match (keys and shapes)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(items):
            return ", ".join(items[:4]) + (f", … ({len(items)} in all)" if len(items) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing from the {source}: {few(missing)}")
        if unexpected:
            parts.append(f"not in the model: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {few(shapes)}")
        name = getattr(model, "xnorpp_name", type(model).__name__)
        raise ValueError(f"the {source} does not fit model {name!r} — " + "; ".join(parts) +
                         ". Was it saved from another model, scaling or data set?")
    model.load_state_dict(state)


def load_model(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """Rebuild the trained model of a run folder, model.pt or checkpoint.pt (in eval mode)."""
    file = resolve_path(path)
    data = load_file(file)
    if "config" not in data:
        raise ValueError(f"{file} has no 'config': cannot tell which model to build; load its 'model' "
                         "state_dict into a model you create yourself")
    config = TrainConfig.from_dict(data["config"])
    model = build_model(config)
    load_state_checked(model, data["model"], f"checkpoint {file}")
    model.xnorpp_config = config.to_dict()
    return model.to(device).eval()


def load_config(path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig stored in a run folder or checkpoint."""
    data = load_file(resolve_path(path))
    return TrainConfig.from_dict(data["config"])
