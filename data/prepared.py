"""Batches built ahead of time, for the sampled (extrapolated-epoch) mode of a cell.

Why ahead of time: data loading must never sit inside a timed step.  A few
warm-up and timed steps of a large batch fit in memory; whole training runs
stream from a DataLoader instead.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["fetch_batch", "prepare_batches"]


def fetch_batch(dataset: Any, indices: torch.Tensor, views: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `indices` as one batch: the dataset's vectorised `get_batch` when it has one.

    `views=2` is the two-view batch built from the raw items (`BatchedDataset.get_batch`).
    """
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices, views=views)
    if views != 1:
        raise ValueError("a dataset without get_batch has no raw items: build its two-view batch with "
                         "data.augment.two_view_batch")
    items = [dataset[int(i)] for i in indices]
    return torch.stack([torch.as_tensor(it[0]) for it in items]), torch.as_tensor([int(it[1]) for it in items])


def prepare_batches(dataset: Any, batch_size: int, count: int, seed: int, views: int, modality: str,
                    spec: Any = None, workers: int = 0) -> list:
    """Build `count` batches ahead of time, so data loading never sits inside step time.

    `workers` > 0 decodes them in DataLoader worker processes (pinned when CUDA exists).
    """
    from .augment import two_view_batch
    from .loader import batch_loader

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)
    index_batches = []
    for b in range(count):
        idx = order[(b * batch_size) % len(dataset):][:batch_size]
        if len(idx) < batch_size:  # wrap around the end of the epoch
            idx = torch.cat([idx, order[: batch_size - len(idx)]])
        index_batches.append(idx)
    # Datasets with `get_batch` build both views from their raw items; a plain
    # Dataset's items are already augmented, so they become view 1.
    raw_views = views if hasattr(dataset, "get_batch") else 1
    if workers > 0 and count > 0:
        batches = list(batch_loader(dataset, index_batches, workers, views=raw_views, seed=seed))
    else:
        batches = [fetch_batch(dataset, idx, raw_views) for idx in index_batches]
    if views != raw_views:
        stats = {"mean": spec.mean, "std": spec.std} if spec is not None and modality == "vision" else {}
        batches = [two_view_batch(x, y, modality, **stats) for x, y in batches]
    return batches
