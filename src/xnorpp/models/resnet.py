"""Binary ResNet of XNOR-Net++ (ResNet-18 / ResNet-34), and its float baseline.

Block (the authors' placement): BN → sign → binary conv → ⊙Γ → PReLU, twice,
plus the shortcut. The first conv and the last linear layer are real; the
downsample shortcuts are average pool + real 1×1 conv + BN (``binary_downsample``
binarizes the 1×1 conv). ``stem="auto"`` picks the small-image stem (3×3,
stride 1, no max-pool) for inputs up to 64×64 and the ImageNet stem (7×7,
stride 2, max-pool) above, so one family runs on 28×28, 32×32 and 224×224.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerFactory, conv_out, make_factory
from .registry import register_model

STEMS = ("auto", "small", "small-pool", "imagenet")


class BasicBlock(nn.Module):
    """Pre-activation binary basic block.

    Attributes (all ``nn.Module``), in the order ``forward`` uses them::

        out = act1(conv1(bn1(x)))          # conv1: 3×3, stride = self.stride
        out = act2(conv2(bn2(out)))        # conv2: 3×3, stride 1
        return out + shortcut(x)           # shortcut = downsample(x), or x if downsample is None

    ``conv1``/``conv2`` are ``BinaryConv2d`` (``nn.Conv2d`` in the float baseline);
    ``act1``/``act2`` are ``nn.PReLU(planes)``; ``downsample`` is ``None`` or
    ``nn.Sequential(nn.AvgPool2d(stride), conv 1×1, nn.BatchNorm2d)``
    (``nn.Identity`` replaces the pool when the stride is 1).
    """

    def __init__(self, inplanes: int, planes: int, stride: int, input_size: tuple[int, int],
                 factory: LayerFactory, binary_downsample: bool = False):
        super().__init__()
        self.stride = stride
        mid_size = conv_out(input_size, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = factory.conv(inplanes, planes, 3, stride, 1, input_size)
        self.act1 = nn.PReLU(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = factory.conv(planes, planes, 3, 1, 1, mid_size)
        self.act2 = nn.PReLU(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            pool_size = conv_out(input_size, stride, stride, 0) if stride != 1 else input_size
            pool = (nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                    if stride != 1 else nn.Identity())
            conv = factory.conv(inplanes, planes, 1, 1, 0, pool_size,
                                binary=factory.binary and binary_downsample)
            self.downsample = nn.Sequential(pool, conv, nn.BatchNorm2d(planes))
        self.output_size = mid_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.conv1(self.bn1(x)))
        out = self.act2(self.conv2(self.bn2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class ResNet(nn.Module):
    """Binary ResNet: real stem, binary basic blocks, real classifier.

    Options: ``width`` (channels of the first stage, doubled per stage), ``stem``
    (``auto``, ``small``, ``small-pool``, ``imagenet``), ``binary_downsample``,
    ``gamma_init`` (``ones`` as in the paper, or ``alpha``: the per-channel Γ
    starts at XNOR-Net's α of the initial weights), and the layer options
    ``ste``, ``binarize_input``, ``pad_value``; ``binary=False`` gives the float
    baseline.

    Attributes: ``stem`` (``nn.Sequential``: conv, BN, PReLU, max-pool for ``imagenet``;
    conv, max-pool, BN, PReLU for ``small-pool``; conv, BN, PReLU for ``small``),
    ``layer1``…``layer4`` (``nn.Sequential`` of :class:`BasicBlock`), ``head``
    (``nn.Sequential``: BN, ReLU, adaptive average pool, flatten) and ``fc``
    (real ``nn.Linear``).
    """

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), *, num_classes: int = 10, in_channels: int = 3,
                 scaling: str = "gamma-o-h-w", input_size=(224, 224), binary: bool = True,
                 width: int = 64, stem: str = "auto", binary_downsample: bool = False, ste: str = "clipped",
                 binarize_input: bool = True, pad_value: float = 0.0, gamma_init: str = "ones"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if stem == "auto":
            stem = "small" if max(input_size) <= 64 else "imagenet"
        factory = make_factory(binary, scaling, ste, binarize_input, pad_value, gamma_init)
        if stem in ("small", "small-pool"):
            # small-pool halves the resolution right after the conv, so BN and PReLU run on 4× fewer values
            pool = [nn.MaxPool2d(2, 2)] if stem == "small-pool" else []
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), *pool,
                                      nn.BatchNorm2d(width), nn.PReLU(width))
            size = conv_out(input_size, 2, 2) if pool else input_size
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.PReLU(width), nn.MaxPool2d(3, 2, 1))
            size = conv_out(conv_out(input_size, 7, 2, 3), 3, 2, 1)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = []
            for b in range(blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                block = BasicBlock(inplanes, planes, stride, size, factory, binary_downsample)
                size, inplanes = block.output_size, planes
                stage.append(block)
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.head(x))


@register_model("resnet18")
def resnet18(**kw) -> ResNet:
    """Binary ResNet-18 (XNOR-Net++'s main network). Options: see :class:`ResNet`."""
    return ResNet((2, 2, 2, 2), **kw)


@register_model("resnet34")
def resnet34(**kw) -> ResNet:
    """Binary ResNet-34. Options: see :class:`ResNet`."""
    return ResNet((3, 4, 6, 3), **kw)
