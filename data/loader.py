"""Batches from index lists through a DataLoader: worker processes and pinned memory.

Why a loader at all when batches are built ahead of timing: decoding real data
(JPEG folders, token lists) is the slow part of preparing a cell, and workers
spread it over the cores while no step is being timed; pinned memory makes the
host-to-GPU copies of a CUDA run asynchronous.  Each loader item is a whole
batch from `dataset.get_batch`, so the vectorised path is kept.  With workers,
augmentation draws come from per-worker streams (see `BatchedDataset`), so a
run is reproducible for a given worker count, not across worker counts.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["batch_loader"]


class _IndexedBatches(Dataset):
    """Item i = the batch of `dataset` at `index_batches[i]`."""

    def __init__(self, dataset, index_batches: Sequence[torch.Tensor], views: int = 1) -> None:
        self.dataset = dataset
        self.index_batches = list(index_batches)
        self.views = views

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.get_batch(self.index_batches[i], views=self.views)


def batch_loader(dataset, index_batches: Sequence[torch.Tensor], workers: int = 0,
                 pin_memory: Optional[bool] = None, views: int = 1) -> DataLoader:
    """A loader yielding `(x, y)` for each index batch, in order (`views=2`: two-view batches).

    `pin_memory` defaults to whether CUDA is available (pinning is useless on a CPU run).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return DataLoader(_IndexedBatches(dataset, index_batches, views), batch_size=None, shuffle=False,
                      num_workers=workers, pin_memory=pin)
