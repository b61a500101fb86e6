"""Registry of model constructors: ``create(name, **kw)`` and ``list_models()``.

Every family registers a binary constructor under its name and a float baseline
under ``float-<name>`` (same architecture, real convolutions, no scaling).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..packed.geometry import size_pair

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, float_variant: bool = True):
    """Decorator: register ``fn(**kw)`` as ``name`` and, unless disabled, ``float-<name>``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        if float_variant:
            def make_float(**kw):
                kw["binary"] = False
                return fn(**kw)
            make_float.__doc__ = f"Float baseline of {name!r}: same architecture, real layers, no scaling."
            _MODELS[f"float-{name}"] = make_float
        return fn

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_MODELS)


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, scaling: str = "gamma-o-h-w",
           input_size=(224, 224), **layer_opts) -> nn.Module:
    """Build the model ``name`` (see :func:`list_models`).

    ``scaling`` is the scaling scheme of the hidden binary layers (ignored by
    ``float-*`` models); ``input_size`` is the (h, w) of the images the model
    will see (spatial scalings fix it; small inputs select a small stem).
    ``layer_opts`` go to the constructor: ``ste``, ``binarize_input``,
    ``pad_value`` and the family's own options.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    model = _MODELS[name](num_classes=num_classes, in_channels=in_channels, scaling=scaling,
                          input_size=size_pair(input_size), **layer_opts)
    model.xnorpp_name = name
    from ..nn import name_layers
    return name_layers(model)
