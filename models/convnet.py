"""The vanilla ConvNet of the SCPL/AL experiments: eight plain 3x3 convs in four stages.

Layout (METHODS.md "Models"): channels 3->32->32->32->32(stride 2)->64->64->64
->64(stride 2), every conv 3x3, pad 1, with bias, ReLU, no BatchNorm; two convs
per stage.  On 32x32 inputs the last stage outputs 64x8x8; head Flatten(4096)
-> Linear(4096, 1500) -> Sigmoid -> Linear(1500, C).  6,318,430 parameters for C = 10.
"""
from __future__ import annotations

from torch import nn

from .reducers import flatten_features
from .registry import register_model
from .staged import StagedModel

__all__ = ["convnet"]

# Per stage: (out_channels, stride) of its two convs.
_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((32, 1), (32, 1)),
    ((32, 1), (32, 2)),
    ((64, 1), (64, 1)),
    ((64, 1), (64, 2)),
)
_HEAD_HIDDEN = 1500


@register_model
def convnet(num_classes: int, in_channels: int = 3, image_size: int = 32) -> StagedModel:
    """Vanilla ConvNet for `image_size` x `image_size` inputs (default 32; must be a multiple of 4)."""
    if image_size % 4:
        raise ValueError(f"convnet halves the image twice; image_size must be a multiple of 4, got {image_size}")
    stages: list[nn.Module] = []
    feature_dims: list[int] = []
    channels, side = in_channels, image_size
    for convs in _STAGES:
        layers: list[nn.Module] = []
        for width, stride in convs:
            layers += [nn.Conv2d(channels, width, kernel_size=3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            channels, side = width, side // stride
        stages.append(nn.Sequential(*layers))
        feature_dims.append(channels * side * side)
    head = nn.Sequential(
        nn.Linear(feature_dims[-1], _HEAD_HIDDEN),
        nn.Sigmoid(),
        nn.Linear(_HEAD_HIDDEN, num_classes),
    )
    return StagedModel(stages, [flatten_features] * len(stages), feature_dims, head, num_classes, "vision")
