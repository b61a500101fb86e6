"""Binary AlexNet of XNOR-Net / XNOR-Net++ (real first conv and last linear layer).

Hidden layers follow XNOR-Net's order BN → sign → binary conv → ⊙ scale, then
PReLU and, where AlexNet has one, max-pool. For inputs under 64×64 the first conv
becomes 3×3 stride 1 and pools are skipped where the map is already too small.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import conv_out, make_factory
from .registry import register_model


class AlexNet(nn.Module):
    """Attributes: ``features`` (``nn.Sequential``), ``pool`` (adaptive average pool to 6×6),
    ``classifier`` (``nn.Sequential`` ending with the real ``nn.Linear``)."""

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, scaling: str = "gamma-o-h-w",
                 input_size=(224, 224), binary: bool = True, fc_features: int = 4096, dropout: float = 0.0,
                 ste: str = "clipped", binarize_input: bool = True, pad_value: float = 0.0,
                 gamma_init: str = "ones"):
        super().__init__()
        factory = make_factory(binary, scaling, ste, binarize_input, pad_value, gamma_init)
        small = min(input_size) < 64
        layers: list[nn.Module] = []
        if small:
            layers.append(nn.Conv2d(in_channels, 96, 3, 1, 1, bias=False))
            size = input_size
        else:
            layers.append(nn.Conv2d(in_channels, 96, 11, 4, 2, bias=False))
            size = conv_out(input_size, 11, 4, 2)
        layers += [nn.BatchNorm2d(96), nn.PReLU(96)]

        def maybe_pool(size):
            if min(size) >= 3:
                layers.append(nn.MaxPool2d(3, 2))
                return conv_out(size, 3, 2)
            return size

        size = maybe_pool(size)
        plan = [(96, 256, 5, 2, True), (256, 384, 3, 1, False), (384, 384, 3, 1, False), (384, 256, 3, 1, True)]
        for cin, cout, k, p, pool in plan:
            layers += [nn.BatchNorm2d(cin), factory.conv(cin, cout, k, 1, p, size), nn.PReLU(cout)]
            size = conv_out(size, k, 1, p)
            if pool:
                size = maybe_pool(size)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.BatchNorm1d(256 * 36), factory.linear(256 * 36, fc_features), nn.PReLU(fc_features),
            nn.Dropout(dropout),
            nn.BatchNorm1d(fc_features), factory.linear(fc_features, fc_features), nn.PReLU(fc_features),
            nn.Dropout(dropout),
            nn.BatchNorm1d(fc_features), nn.Linear(fc_features, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model("alexnet")
def alexnet(**kw) -> AlexNet:
    """Binary AlexNet (XNOR-Net's ImageNet network). Options: see :class:`AlexNet`."""
    return AlexNet(**kw)
