"""xnorpp: binary neural networks with XNOR-Net++ learned scaling, and a packed CPU runtime.

``import xnorpp`` stays light and torch-free so that ``xnorpp.runtime`` can be
used where PyTorch is not installed; the PyTorch parts load on first use.
"""

from importlib import import_module

from .scaling import SCALINGS

__version__ = "0.2.0"

_LAZY_SUBMODULES = ("nn", "models", "data", "train", "export", "analysis", "runtime")
_LAZY_ATTRS = {"convert": "models"}


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        return getattr(import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
    raise AttributeError(f"module 'xnorpp' has no attribute {name!r}")


__all__ = ["SCALINGS", "__version__", *_LAZY_SUBMODULES, *_LAZY_ATTRS]
