"""Torch-free loading of the IDX image sets (Fashion-MNIST, MNIST) for evaluating a packed model."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

IDX_SETS = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist", "FashionMNIST"),
    "mnist": ("/usr/share/datasets/mnist", "MNIST"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_test_set(name: str, data_root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test split of an IDX data set as uint8 images (N, 1, 28, 28) and int64 labels."""
    if name not in IDX_SETS:
        raise ValueError(f"xnorpp run evaluates {', '.join(IDX_SETS)}; got {name!r}")
    system, sub = IDX_SETS[name]
    folders = [Path(p) for p in (data_root, Path(data_root) / name if data_root else None,
                                 Path(data_root) / sub / "raw" if data_root else None, system) if p]
    for folder in folders:
        images, labels = _find(folder, "t10k-images-idx3-ubyte"), _find(folder, "t10k-labels-idx1-ubyte")
        if images and labels:
            return _read_idx(images)[:, None], _read_idx(labels).astype(np.int64)
    raise FileNotFoundError(f"{name} test files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) not found in "
                            f"{', '.join(map(str, folders))}; on Debian: sudo apt-get install dataset-{name}")


def evaluate(model, name: str, data_root=None, batch_size: int = 256, limit: int | None = None) -> dict:
    """Top-1 accuracy of a packed model on a data set's test split, normalized as recorded at export."""
    import time

    pre = model.preprocess or {}
    if not pre.get("mean"):
        raise ValueError("the packed model records no input normalization; export it with dataset=... "
                         "(xnorpp export --dataset NAME)")
    images, labels = load_test_set(name, data_root)
    if limit:
        images, labels = images[:limit], labels[:limit]
    mean = np.asarray(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, -1, 1, 1)
    x = np.ascontiguousarray((images.astype(np.float32) / np.float32(255.0) - mean) / std, dtype=np.float32)
    start = time.perf_counter()
    logits = model.predict(x, batch_size)
    seconds = time.perf_counter() - start
    return {"dataset": name, "images": int(len(x)), "top1": float((logits.argmax(1) == labels).mean()),
            "seconds": seconds, "images_per_s": len(x) / seconds}
