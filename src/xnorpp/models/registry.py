"""Registry of model constructors: ``create(name, **kw)``, ``list_models(pattern)`` and ``model_options(name)``.

Every family registers a binary constructor under its name and a float baseline
under ``float-<name>`` (same architecture, real convolutions, no scaling).
"""

from __future__ import annotations

import fnmatch
import inspect
import typing
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
            make_float.__wrapped__ = fn  # its options are fn's
            _MODELS[f"float-{name}"] = make_float
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Names accepted by :func:`create` that match the glob ``pattern`` (e.g. ``"resnet*"``), sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


# Set by create() itself, so not options a user passes through layer_opts.
_FIXED = frozenset({"num_classes", "in_channels", "scaling", "input_size", "binary", "layers"})


def model_options(name: str) -> list[str]:
    """The constructor options of model ``name`` that :func:`create` passes on (``width``, ``ste``, ...).

    Read from the registered function's keyword parameters and, when it forwards ``**kw``, from the
    ``__init__`` of the class it is annotated to return.
    """
    fn = inspect.unwrap(_model(name))
    found, targets = set(), [fn]
    hints = typing.get_type_hints(fn)
    if inspect.isclass(hints.get("return")):
        targets.append(hints["return"].__init__)
    for target in targets:
        for p in inspect.signature(target).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                found.add(p.name)
    return sorted(found - _FIXED)


def check_options(name: str, options) -> None:
    """``ValueError`` naming the options that model ``name`` does not take, and the ones it does."""
    unknown = sorted(set(options) - set(model_options(name)))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(model_options(name))}")


def _model(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name]


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, scaling: str = "gamma-o-h-w",
           input_size=(224, 224), **layer_opts) -> nn.Module:
    """Build the model ``name`` (see :func:`list_models`).

    ``scaling`` is the scaling scheme of the hidden binary layers (ignored by
    ``float-*`` models); ``input_size`` is the (h, w) of the images the model
    will see (spatial scalings fix it; small inputs select a small stem).
    ``in_chans`` (timm's spelling) is accepted for ``in_channels``.
    ``layer_opts`` go to the constructor: ``ste``, ``binarize_input``,
    ``pad_value`` and the family's own options (:func:`model_options`).
    """
    fn = _model(name)
    if "in_chans" in layer_opts:
        in_channels = layer_opts.pop("in_chans")
    check_options(name, layer_opts)
    try:
        model = fn(num_classes=num_classes, in_channels=in_channels, scaling=scaling,
                   input_size=size_pair(input_size), **layer_opts)
    except TypeError as err:  # an option of the wrong type (e.g. width="abc"): name the options given
        if not layer_opts:
            raise
        raise ValueError(f"model {name!r}: an option has a value of the wrong type ({err}); given: "
                         + ", ".join(f"{k}={v!r}" for k, v in layer_opts.items())) from None
    model.xnorpp_name = name
    from ..nn import name_layers
    return name_layers(model)
