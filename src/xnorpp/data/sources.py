"""Where the data sets come from, as numpy arrays: no PyTorch, so that ``xnorpp run`` can read them too.

:data:`DATASETS` holds the facts about each data set; :func:`load_arrays` gives a split of an
in-memory data set as ``(images, labels)``: uint8 images ``(N, C, H, W)`` in [0, 255] (float32
in [0, 1] for ``synthetic``) and int64 labels. Folder data sets (``imagenet``, or any folder of
images) are read a batch at a time with :func:`list_images` and :func:`read_images` (Pillow).
:mod:`xnorpp.data.datasets` wraps these arrays as PyTorch data sets for training.
No file is unpickled except CIFAR-10's python batches, through an unpickler that only
rebuilds numpy arrays and plain values.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set that models, training and deployment need."""

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    crop_padding: int = 0  # training augmentation: random crop after zero padding (in-memory sets)
    flip: bool = False  # training augmentation: random horizontal flip
    classes: tuple[str, ...] = field(default=())


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("fashion-mnist", 10, 1, (28, 28), (0.2860,), (0.3530,),
                "Zalando's Fashion-MNIST, 60k/10k 28×28 grey images of clothes", crop_padding=2, flip=True,
                classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")),
    DatasetInfo("mnist", 10, 1, (28, 28), (0.1307,), (0.3081,), "MNIST handwritten digits, 60k/10k 28×28",
                crop_padding=2, classes=tuple("0123456789")),
    DatasetInfo("cifar10", 10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                "CIFAR-10, 50k/10k 32×32 colour images", crop_padding=4, flip=True,
                classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    DatasetInfo("imagenet", 1000, 3, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                "ImageNet (ILSVRC-2012) as class folders train/ and val/; random resized crop + flip for "
                "training, resize 256 + center crop 224 for evaluation"),
    DatasetInfo("digits", 10, 1, (8, 8), (0.3,), (0.38,), "scikit-learn's 8×8 digits, 1438/359 split (fast tests)",
                classes=tuple("0123456789")),
    DatasetInfo("synthetic", 10, 1, (16, 16), (0.5,), (0.25,),
                "random class templates plus noise, 2000/500 images (no files needed)"),
)}
FOLDER_DATASETS = frozenset({"imagenet"})  # read image by image; the others are held in memory


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def load_arrays(name: str, split: str = "test", data_root: str | os.PathLike | None = None, *,
                download: bool = False, **synthetic_options) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of split ``split`` of the in-memory data set ``name`` (see the module docstring).

    ``data_root`` is where to look first (and where to download to); without it the system copy
    and ``$XNORPP_DATA`` (default ``~/.cache/xnorpp``) are used. ``synthetic`` takes the options
    of :func:`synthetic_arrays`.
    """
    info = dataset_info(name)
    _check_split(split)
    if name in IDX_SOURCES:
        return _load_idx(info.name, split, data_root, download)
    if name == "cifar10":
        return read_cifar10(data_root if data_root is not None else cache_dir() / "cifar10", split)
    if name == "digits":
        return digits_arrays(split)
    if name == "synthetic":
        return synthetic_arrays(split, **synthetic_options)
    raise ValueError(f"{name} is a folder of images, not an in-memory data set: read it with list_images")


def normalized(images: np.ndarray, mean, std) -> np.ndarray:
    """Raw images (uint8 in [0, 255] or float in [0, 1], (N, C, H, W)) as float32 ``(x - mean) / std`` per channel."""
    x = images.astype(np.float32)
    if images.dtype == np.uint8:
        x /= np.float32(255.0)
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def cache_dir() -> Path:
    return Path(os.environ.get("XNORPP_DATA", Path.home() / ".cache" / "xnorpp"))


# -- IDX (Fashion-MNIST, MNIST) ----------------------------------------------------------------------------------

SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist"), "mnist": Path("/usr/share/datasets/mnist")}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# Official sources and the MD5 of each .gz file (the values torchvision checks too).
IDX_SOURCES = {
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
}


def _find_idx_dir(name: str, data_root, split: str) -> Path | None:
    """First folder that holds the two IDX files of ``split`` (.gz or not)."""
    candidates = []
    if data_root is not None:
        root = Path(data_root)
        candidates += [root, root / name, root / name / "raw",
                       root / {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[name] / "raw"]
    else:
        candidates += [SYSTEM_DIRS[name], cache_dir() / name]
    for d in candidates:
        if all(_idx_path(d, f) is not None for f in IDX_FILES[split]):
            return d
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for p in (folder / (stem + ".gz"), folder / stem):
        if p.is_file():
            return p
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_idx(name: str, target: Path) -> None:
    base, files = IDX_SOURCES[name]
    target.mkdir(parents=True, exist_ok=True)
    for fname, md5 in files.items():
        dest = target / fname
        if dest.is_file() and _md5(dest) == md5:
            continue
        with atomic_write(dest) as out, urllib.request.urlopen(base + fname, timeout=30) as resp:
            digest = hashlib.md5()
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != md5:  # raising here discards the download
                raise OSError(f"checksum mismatch for {base + fname}: MD5 {digest.hexdigest()}, expected {md5}")


def _how_to_get(name: str, data_root) -> str:
    base, files = IDX_SOURCES[name]
    where = Path(data_root) if data_root is not None else cache_dir() / name
    download = (f"download {', '.join(files)} from {base} into {where} and pass --data-root {where} "
                "(the files may stay gzipped).")
    if name == "fashion-mnist":
        return (f"To get {name}, either\n  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu: files go to "
                f"/usr/share/datasets/fashion-mnist)\n  or {download}")
    return f"To get {name}, {download}"


def _load_idx(name: str, split: str, data_root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = _find_idx_dir(name, data_root, split)
    if folder is None:  # not on disk: say where it was looked for, and download it if allowed
        if data_root is not None:
            target = Path(data_root)
            if not target.is_dir():
                raise FileNotFoundError(f"data root {target} does not exist.\n{_how_to_get(name, target)}")
            missing = [f + ".gz" for f in IDX_FILES[split] if _idx_path(target, f) is None]
            absent = f"data root {target} lacks {', '.join(missing)} for {name}"
        else:
            target = cache_dir() / name
            absent = f"{name} not found in {SYSTEM_DIRS[name]} or {target}"
        how = _how_to_get(name, data_root)
        if not download:
            raise FileNotFoundError(f"{absent}.\n{how}")
        try:
            _download_idx(name, target)
        except OSError as err:
            raise FileNotFoundError(f"{absent}, and the download failed ({err}).\n{how}") from None
        folder = target
    img_stem, lbl_stem = IDX_FILES[split]
    images = read_idx(_idx_path(folder, img_stem))
    labels = read_idx(_idx_path(folder, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images[:, None], labels.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array; clear error for a damaged file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {body.size} values")
    return body.reshape(dims).copy()


# -- CIFAR-10 ----------------------------------------------------------------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR_IMAGE = 3 * 32 * 32


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain values only: any other global is refused (no code runs)."""

    # (module, name) -> the object; _codecs.encode turns text back into bytes in protocol-2 pickles of Python 3.
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
                ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")
        return self._ALLOWED[module, name]


def read_cifar10(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from ``root/cifar-10-batches-bin`` (binary version) or ``root/cifar-10-batches-py``."""
    _check_split(split)
    root = Path(root)
    binary, python = root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
    images, labels = [], []
    if binary.is_dir():
        for stem in _CIFAR_BATCHES[split]:
            raw = np.fromfile(binary / f"{stem}.bin", dtype=np.uint8)
            if raw.size % (1 + _CIFAR_IMAGE):
                raise ValueError(f"{binary / (stem + '.bin')} is truncated ({raw.size} bytes)")
            records = raw.reshape(-1, 1 + _CIFAR_IMAGE)
            labels.append(records[:, 0].astype(np.int64))
            images.append(records[:, 1:].reshape(-1, 3, 32, 32))
    elif python.is_dir():
        for stem in _CIFAR_BATCHES[split]:
            with open(python / stem, "rb") as f:
                batch = _ArrayUnpickler(f, encoding="bytes").load()
            if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
                raise ValueError(f"{python / stem} is not a CIFAR-10 batch (no data and labels)")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    else:
        raise FileNotFoundError(f"CIFAR-10 not found under {root}: download {CIFAR10_URL} (or the binary version) "
                                f"and extract it there (giving cifar-10-batches-py/), then pass --data-root {root}")
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


# -- scikit-learn's digits and the synthetic set -------------------------------------------------------------------

def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits scaled to [0, 255], split 80/20 by a fixed permutation."""
    _check_split(split)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn "
                          "(or pip install 'xnorpp[dev]')") from None
    d = load_digits()
    images = (d.images * (255.0 / 16.0)).round().astype(np.uint8)[:, None]
    labels = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(labels))
    cut = int(round(0.8 * len(labels)))
    idx = perm[:cut] if split == "train" else perm[cut:]
    return images[idx], labels[idx]


def synthetic_arrays(split: str = "train", num_samples: int | None = None, num_classes: int = 10,
                     input_size=(16, 16), in_channels: int = 1, noise: float = 0.35,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy set: each class is a fixed random smooth template plus Gaussian noise, in [0, 1].

    Templates depend only on ``seed`` (shared by both splits); the noise differs per split.
    """
    _check_split(split)
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    n = num_samples if num_samples is not None else (2000 if split == "train" else 500)
    coarse = np.random.default_rng(seed).random((num_classes, in_channels, max(h // 4, 1), max(w // 4, 1)))
    templates = _upsample_bilinear(_upsample_bilinear(coarse, h, axis=2), w, axis=3)
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = rng.integers(0, num_classes, n)
    images = templates[labels] + noise * rng.standard_normal((n, in_channels, h, w))
    return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


def _upsample_bilinear(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` to ``size`` samples (pixel centres aligned, edges clamped)."""
    n = x.shape[axis]
    src = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = (src - lo).reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


# -- folders of images ------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RESIZE_RATIO = 256 / 224  # evaluation convention: resize the shorter side to size · 256/224, then center crop


def list_images(folder: str | os.PathLike) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """``(paths, labels, classes)`` of a folder of images.

    A folder of class folders (``folder/<class>/*.jpg``, as ImageNet's ``val/``) gives labels by the
    sorted class names, as ``torchvision.datasets.ImageFolder`` does; a flat folder gives ``labels``
    None and no classes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")

    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and images_in(d))
    if classes:
        paths, labels = [], []
        for index, name in enumerate(classes):
            found = images_in(folder / name)
            paths += found
            labels += [index] * len(found)
        return paths, np.asarray(labels, np.int64), classes
    paths = images_in(folder)
    if not paths:
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or in class "
                                "folders")
    return paths, None, []


def read_images(paths: list[Path], size: tuple[int, int], channels: int) -> np.ndarray:
    """Images as float32 ``(N, channels, H, W)`` in [0, 1]: resized so the shorter side is
    ``max(size) · 256/224``, then center-cropped to ``size`` (images already of ``size`` are kept)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image files needs Pillow: pip install pillow") from None
    h, w = size
    out = np.empty((len(paths), channels, h, w), np.float32)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("L" if channels == 1 else "RGB")
                if img.size != (w, h):  # sizes and offsets rounded as torchvision's Resize and CenterCrop do
                    short = int(max(h, w) * RESIZE_RATIO)
                    iw, ih = img.size
                    new = (short, int(short * ih / iw)) if iw <= ih else (int(short * iw / ih), short)
                    img = img.resize(new, Image.BILINEAR)
                    left, top = int(round((new[0] - w) / 2.0)), int(round((new[1] - h) / 2.0))
                    img = img.crop((left, top, left + w, top + h))
                pixels = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        except OSError as err:
            raise ValueError(f"{path}: not a readable image ({err})") from None
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out
