"""Find the model and image size the analysis commands work on (a run folder, checkpoint or model name)."""

from __future__ import annotations

import json
from pathlib import Path


def dataset_shape(dataset: str) -> tuple[int, int, int]:
    """(c, h, w) of a dataset's images, from :data:`xnorpp.data.DATASETS`."""
    from ..data import dataset_info

    info = dataset_info(dataset)
    return (info.in_channels, *info.input_size)


def run_config(path) -> dict | None:
    """The config.json of a run folder, or of the folder holding a checkpoint file (None if absent)."""
    p = Path(path)
    for candidate in (p / "config.json", p.parent / "config.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def load_for_analysis(spec: str, *, input_size=None, dataset: str | None = None, scaling: str | None = None,
                      num_classes: int | None = None, model_opts: dict | None = None):
    """(model, (c, h, w), dataset name or None) for a run folder, a checkpoint file or a registered model name.

    A path is loaded with :func:`xnorpp.train.load_model`; its image size comes
    from its training dataset unless ``input_size`` is given. A model name is
    built with :func:`xnorpp.models.create` for ``dataset`` (default
    fashion-mnist) or for ``input_size`` ``(c, h, w)``, with ``model_opts``.
    """
    path = Path(spec)
    if path.exists():
        if model_opts:
            raise ValueError("model options (--model-opt) apply to model names; a run keeps the ones it was "
                             "trained with")
        from ..train import load_model

        model = load_model(path)
        config = run_config(path) or {}
        dataset = dataset or config.get("dataset")
        if input_size is None:
            if dataset is None:
                raise ValueError(f"{spec}: no config.json with the training dataset next to it; give the input "
                                 "size (--input-size C H W)")
            input_size = dataset_shape(dataset)
        return model, tuple(input_size), dataset
    from ..models import create, list_models

    if spec not in list_models():
        raise ValueError(f"{spec!r} is neither an existing run folder / checkpoint file nor a model name; "
                         f"model names: {', '.join(list_models())}")
    if dataset is not None:
        dataset_shape(dataset)  # a clear error for an unknown name
    if input_size is None:
        dataset = dataset or "fashion-mnist"
        input_size = dataset_shape(dataset)
    input_size = tuple(input_size)
    if len(input_size) != 3:
        raise ValueError(f"--input-size for a model name must be C H W, got {input_size}")
    kwargs = {**(model_opts or {}), "in_channels": input_size[0], "input_size": input_size[1:]}
    if scaling:
        kwargs["scaling"] = scaling
    if num_classes:
        kwargs["num_classes"] = num_classes
    elif dataset is not None:
        from ..data import dataset_info

        kwargs["num_classes"] = dataset_info(dataset).num_classes
    return create(spec, **kwargs), input_size, dataset
