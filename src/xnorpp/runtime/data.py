"""Inputs for ``xnorpp run``, without PyTorch: a data set's test split, a ``.npy`` file or a folder of images.

Each source becomes :class:`Inputs` (a reader of raw images, optional labels, a name per image);
:func:`classify` normalizes them as recorded at export and runs the model a batch at a time, so a
folder of 50 000 images never sits in memory at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.sources import (DATASETS, FOLDER_DATASETS, dataset_info, list_images, load_arrays, normalized,
                             read_images)


@dataclass
class Inputs:
    """``count`` images: ``read(i, j)`` gives images i..j-1 as (n, C, H, W), uint8 in [0, 255] or float in
    [0, 1] (or, with ``normalized``, float32 model inputs as they are); ``labels`` are int64 or None."""

    count: int
    read: Callable[[int, int], np.ndarray]
    labels: np.ndarray | None
    names: Callable[[int], str]
    source: str
    normalized: bool = False


def dataset_inputs(name: str, data_root: str | os.PathLike | None, model) -> Inputs:
    """The test split of a registered data set (see :data:`xnorpp.data.DATASETS`), as found on disk."""
    info = dataset_info(name)
    shape, want = (info.in_channels, *info.input_size), (model.in_channels, *model.input_size)
    if shape != want and name not in FOLDER_DATASETS:  # folder images are resized to the model's input
        exported = (model.preprocess or {}).get("dataset")
        raise ValueError(f"{name} images are {'×'.join(map(str, shape))} but the model takes "
                         f"{'×'.join(map(str, want))}" + (f": it was exported for {exported}" if exported else ""))
    if name in FOLDER_DATASETS:
        if data_root is None:
            raise FileNotFoundError(f"{name} needs --data-root: a folder with val/<class>/ images")
        return folder_inputs(Path(data_root) / "val", model)
    images, labels = load_arrays(name, "test", data_root, download=False)
    return Inputs(len(images), lambda i, j: images[i:j], labels, lambda i: f"{name}[{i}]", f"{name} test split")


def file_inputs(path: str | os.PathLike, model, labels_path: str | os.PathLike | None = None) -> Inputs:
    """A ``.npy`` array of images, or a folder of image files (class folders give labels)."""
    path = Path(path)
    if path.is_dir():
        inputs = folder_inputs(path, model)
    elif path.suffix == ".npy":
        inputs = _npy_inputs(path, model)
    elif not path.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    else:
        raise ValueError(f"--input {path}: give a .npy array of images or a folder of images")
    if labels_path is not None:
        labels = _load_npy(Path(labels_path), "--labels")
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != inputs.count:
            raise ValueError(f"--labels {labels_path}: expected {inputs.count} integer class indices (one per "
                             f"input), got dtype {labels.dtype} and shape {labels.shape}")
        inputs.labels = labels.astype(np.int64)
    return inputs


def _load_npy(path: Path, option: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:  # pickled object arrays, or not a .npy file
        raise ValueError(f"{option} {path}: not a numeric .npy array ({err})") from None


def _npy_inputs(path: Path, model) -> Inputs:
    array = _load_npy(path, "--input")
    if array.ndim == 3 and model.in_channels == 1 and model.input_size:
        array = array[:, None]
    want = (model.in_channels, *model.input_size)
    if array.ndim != 1 + len(want) or tuple(array.shape[1:]) != want:
        raise ValueError(f"--input {path}: expected {'images' if model.input_size else 'vectors'} of shape "
                         f"(N, {', '.join(map(str, want))}), got {array.shape}")
    if array.dtype == np.uint8:  # pixels, normalized as at export
        return Inputs(len(array), lambda i, j: array[i:j], None, lambda i: f"{path.name}[{i}]", str(path))
    if array.dtype.kind != "f":
        raise ValueError(f"--input {path}: expected uint8 pixels or float32 model inputs, got dtype {array.dtype}")
    return Inputs(len(array), lambda i, j: array[i:j].astype(np.float32), None, lambda i: f"{path.name}[{i}]",
                  str(path), normalized=True)


def folder_inputs(folder: Path, model) -> Inputs:
    """Images of ``folder`` resized to the model's input; class folders are labelled by name when the model
    records class names that include them, else by sorted position (as ImageFolder does in training)."""
    if not model.input_size:
        raise ValueError(f"{folder}: the model takes vectors of {model.in_channels} features, not images; pass them "
                         "as a .npy array (N, features)")
    paths, labels, classes = list_images(folder)
    known = list(model.classes or [])
    if labels is not None and known and set(classes) <= set(known):
        labels = np.asarray([known.index(classes[k]) for k in labels], np.int64)
    return Inputs(len(paths), lambda i, j: read_images(paths[i:j], model.input_size, model.in_channels), labels,
                  lambda i: str(paths[i].relative_to(folder)), str(folder))


def normalize(model, images: np.ndarray) -> np.ndarray:
    """Raw images (uint8 in [0, 255] or float in [0, 1]) → float32 model inputs, as recorded at export."""
    pre = model.preprocess or {}
    if not pre.get("mean"):
        raise ValueError("the packed model records no input normalization; export it with --dataset NAME "
                         f"(one of {', '.join(DATASETS)}), or pass already-normalized float32 inputs as a .npy")
    return normalized(images, pre["mean"], pre["std"])


def classify(model, inputs: Inputs, batch_size: int = 256, limit: int | None = None) -> dict:
    """Predicted classes (and top-1 when labelled) of ``inputs``, with throughput of the model alone."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    count = min(inputs.count, limit) if limit else inputs.count
    predictions = np.empty(count, np.int64)
    confidence = np.empty(count, np.float32)
    seconds = 0.0
    for i in range(0, count, batch_size):
        raw = inputs.read(i, min(i + batch_size, count))
        x = np.ascontiguousarray(raw, np.float32) if inputs.normalized else normalize(model, raw)
        start = time.perf_counter()
        logits = model(x)
        seconds += time.perf_counter() - start
        predictions[i:i + len(x)] = logits.argmax(1)
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        confidence[i:i + len(x)] = 1.0 / shifted.sum(1)  # softmax of the top class: exp(0) / sum
    result = {"source": inputs.source, "images": int(count), "predictions": predictions, "confidence": confidence,
              "seconds": seconds, "images_per_s": count / seconds if seconds else float("inf"), "top1": None}
    if inputs.labels is not None:
        result["top1"] = float((predictions == inputs.labels[:count]).mean()) if count else 0.0
    return result
