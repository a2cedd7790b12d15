"""What each dataset is (shapes, classes, sizes), kept as data in one registry.

Why a spec separate from the loaders: the grid validator and the model factory
need the shapes of a dataset without reading a byte of it, and every real
dataset has a synthetic twin (`<name>@synthetic`) with exactly the same spec
except `kind`, so a benchmark on the twin measures the same tensor traffic.
Sizes are those of the official releases (Tiny-ImageNet: its labelled
validation split serves as the test set).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

from .errors import UnknownDatasetError

__all__ = ["DatasetSpec", "get_spec", "list_datasets", "SYNTHETIC_SUFFIX", "TEXT_VOCAB_SIZE"]

SYNTHETIC_SUFFIX = "@synthetic"
TEXT_VOCAB_SIZE = 30_000  # <pad>, <unk> + the 29,998 most frequent training words


@dataclass(frozen=True)
class DatasetSpec:
    """Shapes and sizes of one dataset; `input_shape` excludes the batch dimension.

    `mean`/`std` are the per-channel normalisation constants of vision data
    (a synthetic twin carries its real dataset's, so strong augmentation can
    treat twin images as if they were normalised real images).
    """

    name: str
    base: str
    kind: Literal["synthetic", "real"]
    modality: Literal["vision", "text"]
    num_classes: int
    input_shape: tuple[int, ...]
    train_size: int
    test_size: int
    vocab_size: Optional[int] = None
    max_len: Optional[int] = None
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None


def _vision(name: str, classes: int, side: int, train: int, test: int,
            mean: tuple[float, float, float], std: tuple[float, float, float]) -> DatasetSpec:
    return DatasetSpec(name, name, "real", "vision", classes, (3, side, side), train, test, mean=mean, std=std)


def _text(name: str, classes: int, max_len: int, train: int, test: int) -> DatasetSpec:
    return DatasetSpec(name, name, "real", "text", classes, (max_len,), train, test,
                       vocab_size=TEXT_VOCAB_SIZE, max_len=max_len)


# Normalisation: CIFAR and Tiny-ImageNet constants as the reference uses them;
# SVHN and STL-10 the commonly published per-channel training-set statistics.
_REAL = [
    _vision("cifar10", 10, 32, 50_000, 10_000, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    _vision("cifar100", 100, 32, 50_000, 10_000, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    _vision("tinyimagenet", 200, 32, 100_000, 10_000, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    _vision("svhn", 10, 32, 73_257, 26_032, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    _vision("stl10", 10, 96, 5_000, 8_000, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    _text("agnews", 4, 60, 120_000, 7_600),
    _text("imdb", 2, 350, 40_000, 10_000),  # one file of 50,000, split 80/20 per run (data/text_files.py)
    _text("dbpedia14", 14, 400, 560_000, 70_000),
    _text("sst2", 2, 15, 67_349, 872),
]

_SPECS: dict[str, DatasetSpec] = {}
for _spec in _REAL:
    _SPECS[_spec.name] = _spec
    _twin = _spec.name + SYNTHETIC_SUFFIX
    _SPECS[_twin] = dataclasses.replace(_spec, name=_twin, kind="synthetic")


def get_spec(name: str) -> DatasetSpec:
    """The spec of `name`; raise `UnknownDatasetError` listing the valid names."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of {list_datasets()} "
            f"(real data needs files under the data root, see docs/DATA.md; "
            f"'<name>{SYNTHETIC_SUFFIX}' needs none)"
        ) from None


def list_datasets() -> list[str]:
    """Every registered name: the real datasets and their synthetic twins."""
    return sorted(_SPECS)
