"""Datasets over decoded real data held in memory: uint8 images or token ids.

Why keep uint8 and normalise per batch: CIFAR's 50k images are 150 MB as
uint8 and 600 MB as float32; converting the few hundred items of a batch costs
microseconds. Token ids likewise stay int16 and widen to int64 per batch.
"""
from __future__ import annotations

from typing import Optional

import torch

from .batched import BatchedDataset, BatchTransform
from .spec import DatasetSpec
from .text_layout import TextOptions

__all__ = ["InMemoryVision", "InMemoryText"]


class InMemoryVision(BatchedDataset):
    """Real images, returned as float (3, H, W) normalised with the spec's mean and std."""

    def __init__(self, spec: DatasetSpec, split: str, positions: torch.Tensor, images: torch.Tensor,
                 labels: torch.Tensor, label_offsets: Optional[torch.Tensor] = None,
                 transform: Optional[BatchTransform] = None, seed: int = 0) -> None:
        super().__init__(spec, split, positions, label_offsets, transform, seed)
        self.images, self.targets = images, labels
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0

    def _fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.images[positions].float() - self.mean) / self.std
        return x, self.targets[positions]

    def _fetch_labels(self, positions: torch.Tensor) -> torch.Tensor:
        return self.targets[positions]


class InMemoryText(BatchedDataset):
    """Real token ids int64, 0 = `<pad>`, 1 = `<unk>`; `vocab[i]` is the word of id i.

    A batch is laid out by `layout` (`data/text_layout.py`): by default as wide
    as its longest text, pads on the right.
    """

    def __init__(self, spec: DatasetSpec, split: str, positions: torch.Tensor, tokens: torch.Tensor,
                 labels: torch.Tensor, vocab: list[str], label_offsets: Optional[torch.Tensor] = None,
                 transform: Optional[BatchTransform] = None, seed: int = 0,
                 layout: Optional[TextOptions] = None) -> None:
        super().__init__(spec, split, positions, label_offsets, transform, seed)
        self.tokens, self.targets, self.vocab = tokens, labels, vocab
        self.layout = layout or TextOptions()

    def _fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layout.lay_out(self.tokens[positions].long()), self.targets[positions]

    def _fetch_labels(self, positions: torch.Tensor) -> torch.Tensor:
        return self.targets[positions]
