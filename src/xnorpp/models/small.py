"""``fmnist-net``: a compact binary ResNet for 28×28 images (Fashion-MNIST, MNIST).

It is :class:`xnorpp.models.resnet.ResNet` with three stages of one
:class:`~xnorpp.models.resnet.BasicBlock` each, sized so that ``make demo``
(``fast-cpu`` recipe, two CPU cores) reaches ≥ 90 % test accuracy on
Fashion-MNIST in a few minutes. Real first conv and last linear layer.
"""

from __future__ import annotations

from .registry import register_model
from .resnet import ResNet


@register_model("fmnist-net")
def fmnist_net(*, input_size=(28, 28), width: int = 64, stages: tuple[int, ...] = (1, 1, 1),
               stem: str = "small-pool", **kw) -> ResNet:
    """Small binary ResNet: stem 3×3 conv + 2×2 max-pool, then ``stages`` blocks of widths
    ``width``, ``2·width``, ``4·width``. Options: see :class:`~xnorpp.models.resnet.ResNet`."""
    return ResNet(tuple(stages), input_size=input_size, width=width, stem=stem, **kw)
