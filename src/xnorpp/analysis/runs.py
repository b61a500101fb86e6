"""Reading and writing the files of run folders (layout: see xnorpp.train and docs)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path


def write_atomic(path, text: str) -> None:
    """Write a text file via a temporary file in the same folder and os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path) -> dict:
    """A JSON file, with a clear error when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is damaged — delete it to redo that step") \
            from None


def read_metrics(run_dir) -> list[dict]:
    """Rows of a run's metrics.csv with numbers converted; clear error if it is missing."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise ValueError(f"{run_dir} has no metrics.csv: it is not a training run folder (made by `xnorpp train`) "
                         "or training stopped before its first epoch ended")
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return int(x) if x.is_integer() and "." not in str(v) else x


def learned_factors(run_dir) -> dict[str, dict]:
    """Learned Γ factors of a run's final (else latest) model: {layer name: {factor name: numpy array}}."""
    import torch

    from ..scaling import FACTOR_AXES

    run_dir = Path(run_dir)
    for name in ("model.pt", "checkpoint.pt"):
        path = run_dir / name
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
            break
    else:
        return {}
    layers: dict[str, dict] = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        if param in FACTOR_AXES:
            layers.setdefault(layer, {})[param] = value.detach().float().numpy()
    return layers


def learned_count(run_dir) -> int:
    """Number of learned scaling numbers in a run's model."""
    return int(sum(a.size for factors in learned_factors(run_dir).values() for a in factors.values()))
