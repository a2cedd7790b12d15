"""VGG8, the SCPL paper's vision network, cut into its four components.

Layout (METHODS.md "Models"): stage 1 [conv 3->128, conv 128->256, maxpool],
stage 2 [conv 256->256, conv 256->512, maxpool], stages 3 and 4
[conv 512->512, maxpool]; every conv 3x3, pad 1, no bias (BatchNorm follows),
ReLU.  On 32x32 inputs the stage outputs are 256x16x16, 512x8x8, 512x4x4 and
512x2x2; local losses see them flattened.  Head: Linear(2048, 2500) -> Sigmoid
-> Linear(2500, C).  11,938,294 parameters for C = 10.
"""
from __future__ import annotations

from torch import nn

from .reducers import flatten_features
from .registry import register_model
from .staged import StagedModel

__all__ = ["vgg8"]

# Per stage: conv output channels, then a 2x2 max-pool.
_STAGE_CHANNELS: tuple[tuple[int, ...], ...] = ((128, 256), (256, 512), (512,), (512,))
_HEAD_HIDDEN = 2500


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # bias=False: BatchNorm's shift makes a conv bias redundant.
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@register_model
def vgg8(num_classes: int, in_channels: int = 3, image_size: int = 32) -> StagedModel:
    """VGG8 for `image_size` x `image_size` inputs (default 32: CIFAR, resized Tiny-ImageNet).

    `image_size` only changes the head's input width (512 * (image_size / 16)^2).
    """
    if image_size % 16:
        raise ValueError(f"vgg8 halves the image four times; image_size must be a multiple of 16, got {image_size}")
    stages: list[nn.Module] = []
    feature_dims: list[int] = []
    channels, side = in_channels, image_size
    for widths in _STAGE_CHANNELS:
        layers: list[nn.Module] = []
        for width in widths:
            layers += _conv_bn_relu(channels, width)
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        side //= 2
        stages.append(nn.Sequential(*layers))
        feature_dims.append(channels * side * side)
    head = nn.Sequential(
        nn.Linear(feature_dims[-1], _HEAD_HIDDEN),
        nn.Sigmoid(),
        nn.Linear(_HEAD_HIDDEN, num_classes),
    )
    return StagedModel(stages, [flatten_features] * len(stages), feature_dims, head, num_classes, "vision")
