"""Data sets: ``get_dataset(name, split, data_root=None)`` and ``DATASETS`` (their facts).

=================  ======================================================================
name               source
=================  ======================================================================
``fashion-mnist``  IDX files: ``--data-root``, /usr/share/datasets/fashion-mnist (Debian's
                   ``dataset-fashion-mnist``), the cache, or a download with MD5 check
``mnist``          IDX files, found and downloaded the same way
``cifar10``        torchvision's CIFAR-10 under ``--data-root`` or the cache (downloads)
``imagenet``       class folders ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``
``digits``         scikit-learn's 8×8 digits (1797 images; for fast tests)
``synthetic``      random class templates plus noise, made on the fly (no files)
=================  ======================================================================

Small sets are held in memory as tensors (:class:`InMemoryDataset`) and batched
by :class:`InMemoryLoader` with vectorized augmentation, no worker processes.
The facts and the files (:mod:`xnorpp.data.sources`) need only numpy, so that the torch-free runtime
reads the same test splits; importing ``xnorpp.data`` loads PyTorch only when a name of
:mod:`xnorpp.data.datasets` is used.
"""

from importlib import import_module

from .sources import DATASETS, DatasetInfo, dataset_info

_TORCH_NAMES = ("InMemoryDataset", "InMemoryLoader", "get_dataset", "make_loader")


def __getattr__(name):
    if name in _TORCH_NAMES:
        return getattr(import_module(".datasets", __name__), name)
    raise AttributeError(f"module 'xnorpp.data' has no attribute {name!r}")


__all__ = ["DATASETS", "DatasetInfo", "dataset_info", *_TORCH_NAMES]
