"""Binarization with straight-through estimators (pseudo-gradients for sign).

Forward, every estimator computes the same sign with the conventions that
training and deployment share (docs/design.md, Conventions):

* ``sign(0) = +1`` — a packed bit has two values, so zero maps to +1;
* ``sign(NaN) = NaN`` — a NaN is never silently turned into a valid sign: it
  propagates to the layer output (and the loss), where it is visible. The packed
  runtime refuses NaN inputs with an error.

Backward, they differ (``ste=`` of the binary layers):

* ``"clipped"`` (default): hard-tanh STE, gradient 1 where |x| ≤ 1, else 0;
* ``"approx"``: Bi-Real Net's ApproxSign, gradient 2 − 2|x| inside [−1, 1], else 0;
* ``"identity"``: gradient passed through unchanged.
"""

from __future__ import annotations

import torch


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 and NaN propagated; no gradient definition (see :func:`sign_ste`)."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    s = torch.where(x < 0, -one, one)
    return torch.where(torch.isnan(x), x, s)


class _ClippedSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return binarize(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return binarize(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 - 2 * x.abs()).clamp_min(0)


class _IdentitySign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return binarize(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


STE_FUNCTIONS = {"clipped": _ClippedSign, "approx": _ApproxSign, "identity": _IdentitySign}
STE_NAMES = tuple(STE_FUNCTIONS)


def check_ste(name: str, owner: str = "layer") -> str:
    if name not in STE_FUNCTIONS:
        raise ValueError(f"{owner}: unknown ste {name!r}; valid names: {', '.join(STE_NAMES)}")
    return name


def sign_ste(x: torch.Tensor, ste: str = "clipped") -> torch.Tensor:
    """Binarize ``x`` to ±1 with the pseudo-gradient named by ``ste``."""
    return STE_FUNCTIONS[check_ste(ste, "sign_ste")].apply(x)
