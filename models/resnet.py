"""ResNet-18 as the SCPL paper builds it: four stages of two BasicBlocks, LeakyReLU.

It differs from torchvision's ResNet-18 in ways that change parameter counts,
so it is spelled out here (METHODS.md "Models"): a 3x3 stem (3->64, no
max-pool) that belongs to stage 1, LeakyReLU instead of ReLU, and 3x3 (not
1x1) projection shortcuts.  Stage 4 ends with a global average pool, so its
local loss and the head see a 512-vector.  12,550,218 parameters for C = 10.
"""
from __future__ import annotations

import torch
from torch import nn

from .reducers import flatten_features
from .registry import register_model
from .staged import StagedModel

__all__ = ["BasicBlock", "resnet18"]

# Per stage: (out_channels, stride of its first block).
_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 2), (512, 2))
_STEM_CHANNELS = 64
_BLOCKS_PER_STAGE = 2


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection (He et al., 2016), LeakyReLU.

    The shortcut is a 3x3 (not 1x1) conv + BN when the block strides, as in
    the references (DASCPL `model/vision_single.py:170-171`, SCPL
    `ResNet.py:20-21`), otherwise the identity.  The references test the
    stride only; here a width change at stride 1 gets the conv too (the
    references' sum would fail on it).  ResNet-18 changes width only where it
    strides, so the network is the reference's either way.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(_conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


@register_model
def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32) -> StagedModel:
    """ResNet-18 (paper variant) for `image_size` x `image_size` inputs (default 32).

    Stage features: 64x32x32, 128x16x16, 256x8x8 flattened, then 512 (pooled).
    """
    if image_size % 8:
        raise ValueError(f"resnet18 halves the image three times; image_size must be a multiple of 8, got {image_size}")
    stages: list[nn.Module] = []
    feature_dims: list[int] = []
    channels, side = _STEM_CHANNELS, image_size
    for k, (width, stride) in enumerate(_STAGES):
        layers: list[nn.Module] = []
        if k == 0:
            layers += [_conv3x3(in_channels, _STEM_CHANNELS), nn.BatchNorm2d(_STEM_CHANNELS), nn.LeakyReLU()]
        for b in range(_BLOCKS_PER_STAGE):
            layers.append(BasicBlock(channels, width, stride if b == 0 else 1))
            channels = width
        side //= stride
        if k == len(_STAGES) - 1:
            layers.append(nn.AdaptiveAvgPool2d(1))
            side = 1
        stages.append(nn.Sequential(*layers))
        feature_dims.append(channels * side * side)
    head = nn.Linear(feature_dims[-1], num_classes)
    return StagedModel(stages, [flatten_features] * len(stages), feature_dims, head, num_classes, "vision")
