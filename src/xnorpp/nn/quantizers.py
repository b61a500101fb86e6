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
    return _sign(x)[0]


def _shortcuts_allowed(t: torch.Tensor) -> bool:
    """Whether ``t`` may take the eager CPU shortcuts: on the CPU and outside torch.compile (which fuses the
    plain formulas into one loop anyway; on a GPU the check of a sum would cost a synchronisation per call).
    Each shortcut also needs one sum of its tensor to be NaN-free: a sum is NaN when any element is (or when
    +inf and -inf meet, which only sends a tensor without NaN down the exact path too)."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _sign(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(sign of ``x``, whether the NaN-free shortcut was taken)."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    if _shortcuts_allowed(x) and not torch.isnan(x.sum()):
        # Two passes instead of four: x + 0.0 turns -0.0 into +0.0, so copysign gives sign(±0) = +1.
        return torch.copysign(one, x + 0.0), True
    return torch.where(torch.isnan(x), x, torch.where(x < 0, -one, one)), False


def _clipped_grad(grad: torch.Tensor, x: torch.Tensor, x_had_no_nan: bool) -> torch.Tensor:
    """grad · 1[|x| ≤ 1]. With no NaN in x and a finite grad, multiplying by 0 or 1 is selecting: one fused
    kernel does it, with bounds one ulp beyond ±1 so that |x| = 1 exactly keeps its gradient (latent
    weights clipped to [-1, 1] sit there). Otherwise the multiplication itself, so that a NaN or inf in
    grad still reaches the optimizer (and AMP's overflow check) as it always did."""
    if x_had_no_nan and grad.dtype == x.dtype and _shortcuts_allowed(grad) and torch.isfinite(grad.sum()):
        bound = 1.0 + torch.finfo(x.dtype).eps  # the next representable value above 1
        return torch.ops.aten.hardtanh_backward(grad, x, -bound, bound)
    return grad * (x.abs() <= 1).to(grad.dtype)


class _ClippedSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s, ctx.no_nan = _sign(x)
        ctx.save_for_backward(x)
        return s

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return _clipped_grad(grad, x, ctx.no_nan)


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
