"""Data set registry, loaders and in-memory batching (see the package docstring)."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write

SPLITS = ("train", "test")
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


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set that models and training need."""

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


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


class InMemoryDataset(torch.utils.data.Dataset):
    """Images held as one tensor (uint8 in [0, 255] or float in [0, 1]) with int64 labels.

    Indexing returns a normalized float image and its label, like any torch
    data set; :meth:`batch` does the same for many indices at once, with the
    data set's training augmentation when asked.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.info = images.contiguous(), labels.long(), info
        self.mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x, y = self.batch(torch.tensor([i]))
        return x[0], int(y[0])

    def batch(self, idx: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None):
        """Normalized images and labels at ``idx``, augmented (crop/flip of ``info``) if ``augment``."""
        x = self.images[idx]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if augment:
            x = _augment(x, self.info.crop_padding, self.info.flip, generator)
        return (x - self.mean) / self.std, self.labels[idx]


def _augment(x: torch.Tensor, padding: int, flip: bool, g: torch.Generator | None) -> torch.Tensor:
    n, _, h, w = x.shape
    if padding:
        xp = torch.nn.functional.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=g)
        dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=g)
        rows = dy + torch.arange(h).view(1, h, 1)
        cols = dx + torch.arange(w).view(1, 1, w)
        x = xp.permute(0, 2, 3, 1)[torch.arange(n).view(n, 1, 1), rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=g) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    return x.contiguous()


class InMemoryLoader:
    """Batches of an :class:`InMemoryDataset`, reproducible from ``(seed, epoch)``.

    The order and the augmentation of epoch ``e`` depend only on ``seed`` and
    ``e`` (call :meth:`set_epoch`), so a resumed run sees the same batches as an
    uninterrupted one. With ``world_size > 1`` each rank takes every
    ``world_size``-th index: for training the permutation is padded to a
    multiple of ``world_size`` (as ``DistributedSampler`` does); for evaluation
    (``shuffle=False``) it is not, so every test image is counted exactly once.
    """

    def __init__(self, dataset: InMemoryDataset, batch_size: int, *, shuffle: bool, augment: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        self.dataset, self.batch_size, self.shuffle, self.augment = dataset, int(batch_size), shuffle, augment
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self, g: torch.Generator) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            idx = torch.randperm(n, generator=g)
            total = math.ceil(n / self.world_size) * self.world_size
            idx = torch.cat([idx, idx[: total - n]])
        else:
            idx = torch.arange(n)
        return idx[self.rank::self.world_size]

    def __len__(self) -> int:
        n = len(self.dataset)
        per_rank = math.ceil(n / self.world_size) if self.shuffle else len(range(self.rank, n, self.world_size))
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(self.epoch))
        idx = self._indices(g)
        for b in range(len(self)):
            yield self.dataset.batch(idx[b * self.batch_size:(b + 1) * self.batch_size], self.augment, g)


def make_loader(dataset, batch_size: int, *, train: bool, augment: bool = True, seed: int = 0, rank: int = 0,
                world_size: int = 1, workers: int = 0, device: str = "cpu"):
    """A loader for training (shuffled, augmented, distributed-sharded) or evaluation.

    In-memory sets get an :class:`InMemoryLoader`; folder sets (ImageNet) a
    ``DataLoader`` with a ``DistributedSampler`` for training and an exact
    (unpadded) shard for evaluation. Both have ``set_epoch(epoch)``.
    """
    if isinstance(dataset, InMemoryDataset):
        return InMemoryLoader(dataset, batch_size, shuffle=train, augment=train and augment, seed=seed, rank=rank,
                              world_size=world_size, drop_last=train and len(dataset) >= 4 * batch_size * world_size)
    from torch.utils.data import DataLoader, DistributedSampler, Subset
    pin = device.startswith("cuda")
    if train:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        loader = DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
                            drop_last=True, persistent_workers=workers > 0)
        loader.set_epoch = sampler.set_epoch
        return loader
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(shard, batch_size, shuffle=False, num_workers=workers, pin_memory=pin)
    loader.set_epoch = lambda epoch: None
    return loader


# -- loading ---------------------------------------------------------------------------------------------------


def get_dataset(name: str, split: str = "train", data_root: str | os.PathLike | None = None, *,
                download: bool = True, **kw):
    """Load split ``"train"`` or ``"test"`` of data set ``name`` (see :data:`DATASETS`).

    ``data_root`` is where to look first (and where to download to); without it
    the system copy and ``$XNORPP_DATA`` (default ``~/.cache/xnorpp``) are used.
    ``synthetic`` takes ``num_samples``, ``num_classes``, ``input_size``,
    ``in_channels``, ``seed``.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if name in IDX_SOURCES:
        return _load_idx(info, split, data_root, download)
    if name == "cifar10":
        return _load_cifar10(info, split, data_root, download)
    if name == "imagenet":
        return _load_imagenet(info, split, data_root)
    if name == "digits":
        return _load_digits(info, split)
    return make_synthetic(split, **kw)


def cache_dir() -> Path:
    return Path(os.environ.get("XNORPP_DATA", Path.home() / ".cache" / "xnorpp"))


def _find_idx_dir(name: str, data_root) -> Path | None:
    """First folder that holds the four IDX files (.gz or not)."""
    candidates = []
    if data_root is not None:
        root = Path(data_root)
        candidates += [root, root / name, root / name / "raw",
                       root / {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[name] / "raw"]
    else:
        candidates += [SYSTEM_DIRS[name], cache_dir() / name]
    for d in candidates:
        if all(_idx_path(d, f) is not None for pair in IDX_FILES.values() for f in pair):
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
    debian = ("  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu: files go to "
              "/usr/share/datasets/fashion-mnist)\n" if name == "fashion-mnist" else "")
    return (f"To get {name}, either\n{debian}"
            f"  or download {', '.join(files)} from {base} into {where}\n"
            f"  and pass --data-root {where} (the files may stay gzipped).")


def _load_idx(info: DatasetInfo, split: str, data_root, download: bool) -> InMemoryDataset:
    name = info.name
    folder = _find_idx_dir(name, data_root)
    if folder is None and data_root is not None:
        root = Path(data_root)
        if root.is_dir():
            missing = [f + ".gz" for pair in IDX_FILES.values() for f in pair if _idx_path(root, f) is None]
            if download:
                try:
                    _download_idx(name, root)
                    folder = root
                except OSError as err:
                    raise FileNotFoundError(f"data root {root} lacks {', '.join(missing)} for {name}, and the "
                                            f"download failed ({err}).\n{_how_to_get(name, root)}") from None
            else:
                raise FileNotFoundError(f"data root {root} lacks {', '.join(missing)} for {name}.\n"
                                        f"{_how_to_get(name, root)}")
        else:
            raise FileNotFoundError(f"data root {root} does not exist.\n{_how_to_get(name, root)}")
    if folder is None:
        target = cache_dir() / name
        if not download:
            raise FileNotFoundError(f"{name} not found in {SYSTEM_DIRS[name]} or {target}.\n"
                                    f"{_how_to_get(name, None)}")
        try:
            _download_idx(name, target)
            folder = target
        except OSError as err:
            raise FileNotFoundError(f"{name} not found in {SYSTEM_DIRS[name]} or {target}, and the download "
                                    f"failed ({err}).\n{_how_to_get(name, None)}") from None
    img_stem, lbl_stem = IDX_FILES[split]
    images = read_idx(_idx_path(folder, img_stem))
    labels = read_idx(_idx_path(folder, lbl_stem))
    return InMemoryDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), info)


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


def _load_cifar10(info: DatasetInfo, split: str, data_root, download: bool) -> InMemoryDataset:
    from torchvision.datasets import CIFAR10
    root = Path(data_root) if data_root is not None else cache_dir() / "cifar10"
    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except (RuntimeError, OSError) as err:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root} ({err}). Download cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root} "
            f"(giving cifar-10-batches-py/), then pass --data-root {root}") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
    return InMemoryDataset(images, torch.tensor(ds.targets), info)


def _load_imagenet(info: DatasetInfo, split: str, data_root):
    from torchvision import datasets, transforms
    if data_root is None:
        raise FileNotFoundError("imagenet needs --data-root pointing to a folder with train/<class>/*.JPEG and "
                                "val/<class>/*.JPEG (ILSVRC-2012, from https://image-net.org)")
    folder = Path(data_root) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"imagenet: {folder} is missing; expected {data_root}/train/<class>/... and "
                                f"{data_root}/val/<class>/... (ILSVRC-2012 as class folders)")
    normalize = transforms.Normalize(info.mean, info.std)
    if split == "train":
        tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), normalize])
    else:
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                 normalize])
    return datasets.ImageFolder(str(folder), tf)


def _load_digits(info: DatasetInfo, split: str) -> InMemoryDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn "
                          "(or pip install 'xnorpp[dev]')") from None
    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(round(0.8 * len(labels)))
    idx = perm[:cut] if split == "train" else perm[cut:]
    return InMemoryDataset(images[idx], labels[idx], info)


def make_synthetic(split: str = "train", num_samples: int | None = None, num_classes: int = 10,
                   input_size=(16, 16), in_channels: int = 1, noise: float = 0.35, seed: int = 0) -> InMemoryDataset:
    """A learnable toy set: each class is a fixed random smooth template plus Gaussian noise.

    Templates depend only on ``seed`` (shared by both splits); the noise differs per split.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    n = num_samples if num_samples is not None else (2000 if split == "train" else 500)
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, in_channels, max(h // 4, 1), max(w // 4, 1), generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    g_split = torch.Generator().manual_seed(seed * 7919 + (1 if split == "train" else 2))
    labels = torch.randint(0, num_classes, (n,), generator=g_split)
    images = (templates[labels] + noise * torch.randn(n, in_channels, h, w, generator=g_split)).clamp(0, 1)
    base = DATASETS["synthetic"]
    info = DatasetInfo("synthetic", num_classes, in_channels, (h, w), base.mean * in_channels,
                       base.std * in_channels, base.description)
    return InMemoryDataset(images, labels, info)
