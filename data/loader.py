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

import multiprocessing
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["batch_loader", "worker_options", "private_generator"]


def worker_options(workers: int) -> dict:
    """DataLoader keywords for `workers` worker processes: started by fork where the platform has it.

    Why explicit: a process started from a fork server (every rank of a
    distributed cell, bench/execution/ranks.py) inherits `forkserver` as its
    default start method, and workers started that way receive the dataset's
    tensors as shared-memory file descriptors, which failed inside ranks here
    ("unable to resize file ... Invalid argument").  A forked worker inherits
    the dataset instead; fork is PyTorch's default on Linux anyway.  Workers
    never touch CUDA (pinning happens in the loading process), so forking a
    process that uses a GPU is safe for them.
    """
    if workers <= 0:
        return {}
    return {"multiprocessing_context": "fork"} if "fork" in multiprocessing.get_all_start_methods() else {}


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


def private_generator(seed: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from: its own, not torch's global one.

    Why: every DataLoader iterator draws that seed when it starts, by default
    from the global generator, so reading data would move the global stream that
    model initialisation and dropout draw from; a cell's network would then
    depend on its `data_workers` (measured: BP's ConvNet ended 2 epochs at loss
    1.6951 without workers, 1.6885 with one, on identical batches).
    """
    return torch.Generator().manual_seed(seed)


def batch_loader(dataset, index_batches: Sequence[torch.Tensor], workers: int = 0,
                 pin_memory: Optional[bool] = None, views: int = 1, seed: int = 0) -> DataLoader:
    """A loader yielding `(x, y)` for each index batch, in order (`views=2`: two-view batches).

    `pin_memory` defaults to whether CUDA is available (pinning is useless on a CPU run);
    `seed` seeds the loader's own generator (`private_generator`).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return DataLoader(_IndexedBatches(dataset, index_batches, views), batch_size=None, shuffle=False,
                      num_workers=workers, pin_memory=pin, generator=private_generator(seed),
                      **worker_options(workers))
