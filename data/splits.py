"""Which training items are held out for validation, and which labels are corrupted.

Why here and seeded: the reference reports the best *test* accuracy over epochs
(model selection on the test set); a seeded, deterministic validation hold-out
lets the harness select on validation and report test honestly. Label noise is
a robustness axis; it touches the training split only, so validation and test
accuracy stay measured against the true labels.
"""
from __future__ import annotations

from typing import Literal

import torch

__all__ = ["Split", "SPLITS", "split_positions", "label_noise_offsets"]

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Offsets keep the streams of the hold-out and the noise apart for one seed.
_HOLDOUT_STREAM = 0x5EED_0001
_NOISE_STREAM = 0x5EED_0002


def split_positions(split: Split, train_count: int, test_count: int, val_fraction: float, seed: int) -> torch.Tensor:
    """Positions (sorted, int64) in the official train or test set that make up `split`.

    `val` is round(val_fraction * train_count) training items drawn by `seed`;
    `train` is the rest; `test` is the whole official test set.
    """
    if split == "test":
        return torch.arange(test_count, dtype=torch.long)
    generator = torch.Generator().manual_seed(_HOLDOUT_STREAM + seed)
    order = torch.randperm(train_count, generator=generator)
    val_count = int(round(val_fraction * train_count))
    chosen = order[:val_count] if split == "val" else order[val_count:]
    return chosen.sort().values


def label_noise_offsets(count: int, noise_rate: float, num_classes: int, seed: int) -> torch.Tensor:
    """Per-item label offsets in [0, num_classes): noisy label = (label + offset) % num_classes.

    Exactly round(noise_rate * count) items get an offset in 1..C-1, which
    always yields a *different* class without knowing the true label (so
    lazily generated datasets can apply it per batch); the rest get 0.
    """
    offsets = torch.zeros(count, dtype=torch.long)
    noisy = int(round(noise_rate * count))
    if noisy == 0 or num_classes < 2:
        return offsets
    generator = torch.Generator().manual_seed(_NOISE_STREAM + seed)
    chosen = torch.randperm(count, generator=generator)[:noisy]
    offsets[chosen] = torch.randint(1, num_classes, (noisy,), generator=generator)
    return offsets
