"""CIFAR-style ResNet-32 / ResNet-110 (He et al., 2016, sec. 4.2) cut into K local modules.

Why these: ContSup (and InfoPro before it) measure greedy local learning on
these networks split into K = 2, 4, 8, 16 modules.  The network is a stem
(conv3x3 3->16 + BN + ReLU) then three stages of n BasicBlocks with 16, 32 and
64 channels (n = 5 for ResNet-32, 18 for ResNet-110), global average pooling
and Linear(64, C).

Splitting: the sequence [stem, block_1, ..., block_3n] (3n + 1 units) is cut
into K contiguous modules at ContSup's boundaries ("equal layers" strategy,
`iso_module_loc` in their configs), kept here as data: `(stage, block)` pairs
after which a module ends, stage 0 being the stem and blocks counted from 0
inside a stage.  They balance modules by unit count: ResNet-32 (16 units) gets
equal modules for every K (K = 4 ends modules after (1, 2), (2, 1), (3, 0));
ResNet-110 (55 units) gets [28, 27] for K = 2, [13, 14, 14, 14] for K = 4, etc.

Shortcuts are option B (conv1x1 + BN projection where the shape changes) and
convs get He-normal (fan-out) initialisation, both as in ContSup's code; the
paper's parameter-free option A would give slightly fewer parameters.

Every module's local feature is its output flattened, like the other CNNs
here (ContSup's auxiliary heads pool it themselves); the last module ends with
the global average pool, so its feature is 64-d.
"""
from __future__ import annotations

import torch
from torch import nn

from .reducers import flatten_features
from .registry import register_model
from .staged import StagedModel

__all__ = ["CifarBasicBlock", "cifar_resnet", "module_sizes", "resnet32", "resnet110", "MODULE_BOUNDARIES"]

_WIDTHS: tuple[int, ...] = (16, 32, 64)

# depth -> K -> the (stage, block) after which each of the first K - 1 modules ends (ContSup's table).
MODULE_BOUNDARIES: dict[int, dict[int, tuple[tuple[int, int], ...]]] = {
    32: {
        2: ((2, 1),),
        4: ((1, 2), (2, 1), (3, 0)),
        8: ((1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2)),
        16: ((0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4),
             (3, 0), (3, 1), (3, 2), (3, 3)),
    },
    110: {
        2: ((2, 8),),
        4: ((1, 11), (2, 7), (3, 3)),
        8: ((1, 4), (1, 11), (2, 0), (2, 7), (2, 14), (3, 3), (3, 10)),
        16: ((1, 1), (1, 4), (1, 7), (1, 10), (1, 13), (1, 16), (2, 1), (2, 4), (2, 7), (2, 11), (2, 15),
             (3, 1), (3, 5), (3, 9), (3, 13)),
    },
}


def module_sizes(depth: int, modules: int) -> list[int]:
    """Units (stem or block) per module for ResNet-`depth` split into `modules` modules."""
    table = MODULE_BOUNDARIES.get(depth)
    if table is None:
        raise ValueError(f"no module boundaries for resnet{depth}; choose depth in {sorted(MODULE_BOUNDARIES)}")
    if modules not in table:
        raise ValueError(f"resnet{depth} is split into modules in {sorted(table)}, got {modules!r}")
    n = (depth - 2) // 6
    # unit index of (stage, block): the stem is unit 0, block b of stage s is unit 1 + (s - 1) n + b
    ends = [0 if stage == 0 else 1 + (stage - 1) * n + block for stage, block in table[modules]]
    cuts = [0] + [end + 1 for end in ends] + [3 * n + 1]
    return [b - a for a, b in zip(cuts, cuts[1:])]


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv+BN layers, ReLU, identity or conv1x1+BN (option B) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def cifar_resnet(depth: int, num_classes: int, modules: int = 4, in_channels: int = 3,
                 image_size: int = 32) -> StagedModel:
    """ResNet-`depth` (32 or 110) split into `modules` stages; see the module docstring."""
    sizes = module_sizes(depth, modules)
    if image_size % 4:
        raise ValueError(f"a CIFAR ResNet halves the image twice; image_size must be a multiple of 4, got {image_size}")
    n = (depth - 2) // 6

    # (unit, channels and side of its output), in forward order
    units: list[tuple[nn.Module, int, int]] = []
    stem = nn.Sequential(
        nn.Conv2d(in_channels, _WIDTHS[0], 3, padding=1, bias=False), nn.BatchNorm2d(_WIDTHS[0]), nn.ReLU()
    )
    units.append((stem, _WIDTHS[0], image_size))
    channels, side = _WIDTHS[0], image_size
    for s, width in enumerate(_WIDTHS):
        for b in range(n):
            stride = 2 if s > 0 and b == 0 else 1
            units.append((CifarBasicBlock(channels, width, stride), width, side // stride))
            channels, side = width, side // stride
    _he_init([unit for unit, _, _ in units])

    stages: list[nn.Module] = []
    feature_dims: list[int] = []
    start = 0
    for k, count in enumerate(sizes):
        group = units[start:start + count]
        start += count
        layers = [unit for unit, _, _ in group]
        out_channels, out_side = group[-1][1], group[-1][2]
        if k == len(sizes) - 1:
            layers.append(nn.AdaptiveAvgPool2d(1))
            out_side = 1
        stages.append(nn.Sequential(*layers))
        feature_dims.append(out_channels * out_side * out_side)
    head = nn.Linear(feature_dims[-1], num_classes)
    return StagedModel(stages, [flatten_features] * len(stages), feature_dims, head, num_classes, "vision")


def _he_init(units: list[nn.Module]) -> None:
    """He-normal (fan-out) convs and unit BatchNorm, the initialisation ContSup trains from."""
    for unit in units:
        for m in unit.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


@register_model
def resnet32(num_classes: int, modules: int = 4, in_channels: int = 3, image_size: int = 32) -> StagedModel:
    """ResNet-32 (n = 5 blocks per stage) in `modules` stages (2, 4, 8 or 16; default 4)."""
    return cifar_resnet(32, num_classes, modules, in_channels, image_size)


@register_model
def resnet110(num_classes: int, modules: int = 4, in_channels: int = 3, image_size: int = 32) -> StagedModel:
    """ResNet-110 (n = 18 blocks per stage) in `modules` stages (2, 4, 8 or 16; default 4)."""
    return cifar_resnet(110, num_classes, modules, in_channels, image_size)
