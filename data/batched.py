"""The one Dataset shape of this package: a split view with a vectorised `get_batch`.

Why batches first: the harness pre-builds whole batches (`dataset.get_batch`)
so that data loading never sits inside a timed step, and a DataLoader asks
for batches through `__getitems__` (torch >= 2.0) so it gets the same fast
path; `__getitem__` is the single-item case of the same code. Every dataset
here (synthetic or read from files) is a list of *positions* in its official
train or test set, plus optional label-noise offsets and augmentation;
subclasses only say how to fetch the items at some positions.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset, get_worker_info

from .augment import two_view_batch
from .spec import DatasetSpec

__all__ = ["BatchedDataset", "BatchTransform", "Indices"]

Indices = Union[torch.Tensor, Sequence[int]]
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class BatchedDataset(Dataset):
    """Items at `positions` of an official split, returned as `(x, y)`.

    Subclasses implement `_fetch(positions) -> (x, y)` for a 1-D int64 tensor
    of positions. `label_offsets` (aligned with `positions`) implements label
    noise; `transform` is a batch augmentation drawing from this dataset's own
    generator, seeded, so a run is reproducible.
    """

    def __init__(self, spec: DatasetSpec, split: str, positions: torch.Tensor,
                 label_offsets: Optional[torch.Tensor] = None,
                 transform: Optional[BatchTransform] = None, seed: int = 0) -> None:
        self.spec = spec
        self.split = split
        self.positions = positions
        self.label_offsets = label_offsets
        self.transform = transform
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed + 0xA5)  # augmentation draws only
        self._worker: Optional[int] = None

    def _fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def get_batch(self, indices: Indices, generator: Optional[torch.Generator] = None,
                  views: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Items `indices` (positions in *this* split) as one batch `(x, y)`, y int64.

        `generator` draws the augmentation instead of this dataset's own stream: a
        training run seeds one per (epoch, batch), so the draws do not depend on
        worker count or on where a resumed run started (data/epochs.py).
        `views=2`: the two-view batch `[transform(x); strong(x)]`, `[y; y]`, both
        views from the raw items (`augment.two_view_batch`), as the references.
        """
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views!r}")
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        x, y = self._fetch(self.positions[idx])
        if self.label_offsets is not None:
            y = (y + self.label_offsets[idx]) % self.spec.num_classes
        if generator is None and (self.transform is not None or views == 2):
            self._reseed_in_worker()
        draws = generator if generator is not None else self.generator
        if views == 2:
            vision = self.spec.modality == "vision"
            return two_view_batch(x, y, self.spec.modality, generator=draws, weak=self.transform,
                                  mean=self.spec.mean if vision else None, std=self.spec.std if vision else None)
        if self.transform is not None:
            x = self.transform(x, draws)
        return x, y

    def _reseed_in_worker(self) -> None:
        """DataLoader workers start with copies of one generator: give each its own stream."""
        info = get_worker_info()
        if info is not None and info.id != self._worker:
            self._worker = info.id
            self.generator.manual_seed(self.seed + 0xA5 + 1_000_003 * (info.id + 1))

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        x, y = self.get_batch(indices)
        return list(zip(x.unbind(0), y.tolist()))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.spec.name} {self.split} split of {len(self)} items")
        x, y = self.get_batch([index])
        return x[0], int(y[0])

    def _fetch_labels(self, positions: torch.Tensor) -> torch.Tensor:
        """True labels at `positions`; subclasses override when images need not be made."""
        return self._fetch(positions)[1]

    def labels(self) -> torch.Tensor:
        """Every label of this split in order, after label noise (for class counts, noise checks)."""
        y = self._fetch_labels(self.positions)
        if self.label_offsets is not None:
            y = (y + self.label_offsets) % self.spec.num_classes
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, split={self.split!r}, items={len(self)})"
