"""Data set registry, loaders and in-memory batching (see the package docstring)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .sources import (CIFAR10_MD5, CIFAR10_URL, DATASETS, FOLDER_DATASETS, DatasetInfo, cache_dir, dataset_info,
                      load_arrays, synthetic_arrays)

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
    ``in_channels``, ``seed``. The arrays come from :mod:`xnorpp.data.sources`.
    """
    info = dataset_info(name)
    if name in FOLDER_DATASETS:
        return _load_imagenet(info, split, data_root)
    if name == "synthetic":
        return make_synthetic(split, **kw)
    if name == "cifar10" and download:
        _download_cifar10(data_root)
    images, labels = load_arrays(name, split, data_root, download=download)
    return InMemoryDataset(torch.from_numpy(images), torch.from_numpy(labels), info)


def _download_cifar10(data_root) -> None:
    """Fetch and extract CIFAR-10's python version into ``data_root`` (or the cache) unless it is there."""
    root = Path(data_root) if data_root is not None else cache_dir() / "cifar10"
    if (root / "cifar-10-batches-py").is_dir() or (root / "cifar-10-batches-bin").is_dir():
        return
    from torchvision.datasets.utils import download_and_extract_archive
    try:
        download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)
    except (RuntimeError, OSError) as err:
        raise FileNotFoundError(f"CIFAR-10 not found under {root} and the download failed ({err}). Download "
                                f"{CIFAR10_URL}, extract it into {root} (giving cifar-10-batches-py/), then pass "
                                f"--data-root {root}") from None


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


def make_synthetic(split: str = "train", num_samples: int | None = None, num_classes: int = 10,
                   input_size=(16, 16), in_channels: int = 1, noise: float = 0.35, seed: int = 0) -> InMemoryDataset:
    """The synthetic set of :func:`xnorpp.data.sources.synthetic_arrays` as an :class:`InMemoryDataset`."""
    images, labels = synthetic_arrays(split, num_samples, num_classes, input_size, in_channels, noise, seed)
    base = DATASETS["synthetic"]
    info = DatasetInfo("synthetic", num_classes, in_channels, tuple(images.shape[-2:]), base.mean * in_channels,
                       base.std * in_channels, base.description)
    return InMemoryDataset(torch.from_numpy(images), torch.from_numpy(labels), info)
