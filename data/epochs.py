"""Whole epochs streamed from a DataLoader: reshuffled per epoch, augmented per sample per epoch.

Why a stream and not prepared batches: a training run makes E passes over the
training split, and building them ahead of time would hold E epochs of tensors.
Here one `DataLoader` yields the batches of epochs `first..last` in order;
nothing beyond its prefetch (workers x prefetch_factor batches) exists at once.

Why every draw is seeded from (seed, epoch, batch) rather than taken from a
running generator: the order of epoch e and the augmentation of its batch b are
then functions of those three numbers only, so a run resumed at epoch e from a
checkpoint reads exactly the batches the uninterrupted run read, and the
result does not depend on the number of workers (`data_workers`).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from .loader import private_generator, worker_options

__all__ = ["epoch_seed", "epoch_order", "batches_per_epoch", "EpochStream"]

_ORDER_STREAM = 0x0E90C
_AUGMENT_STREAM = 0xA0C


def epoch_seed(seed: int, epoch: int, stream: int = _ORDER_STREAM) -> int:
    """A generator seed for (cell seed, epoch) in one stream (orders and augmentations apart)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2 ** 62)


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of `count` training items in epoch `epoch` (1-based) of a run seeded `seed`."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def batches_per_epoch(count: int, batch_size: int) -> int:
    """Batches in one pass: the full ones, plus the remainder if it has at least 2 items.

    A 1-item tail is dropped: batch norm cannot train on it and a contrastive
    loss has no positive pair in it.
    """
    full, rest = divmod(count, batch_size)
    return full + (1 if rest >= 2 else 0)


class _EpochBatches(Dataset):
    """Item j = batch j % B of epoch first + j // B (B = batches per epoch)."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, views: int, first: int, last: int,
                 shard: Optional[tuple[int, int]] = None) -> None:
        self.dataset = dataset
        self.shard = shard
        self.batch_size = batch_size
        self.seed = seed
        self.views = views
        self.first = first
        self.per_epoch = batches_per_epoch(len(dataset), batch_size)
        self.count = (last - first + 1) * self.per_epoch
        self._order: tuple[int, Optional[torch.Tensor]] = (-1, None)  # the last epoch's order, per worker

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = self.first + j // self.per_epoch, j % self.per_epoch
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.dataset), self.seed, epoch))
        order = self._order[1]
        assert order is not None
        indices = order[b * self.batch_size:(b + 1) * self.batch_size]
        # Augmentation draws come from one generator per batch, in item order, so a
        # shard of an augmented batch is cut from the whole batch (each item gets
        # what it gets in the unsharded batch); a text batch is as wide as its
        # longest text (data/text_layout.py), so a shard is cut from the whole
        # batch to keep that width; otherwise only the shard's items are read.
        whole = (self.shard is None or self.views != 1 or getattr(self.dataset, "transform", None) is not None
                 or self.dataset.spec.modality == "text")
        if not whole:
            indices = _slice(indices, self.shard)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, _AUGMENT_STREAM) + b)
        # views 2: both views from the raw items (BatchedDataset.get_batch, augment.two_view_batch)
        x, y = self.dataset.get_batch(indices, generator=generator, views=self.views)
        if whole and self.shard is not None:
            x, y = _slice(x, self.shard), _slice(y, self.shard)
        return x, y


def _slice(batch: torch.Tensor, shard: Optional[tuple[int, int]]) -> torch.Tensor:
    """Rank r of w's contiguous part of a global batch: `batch.chunk(w)[r]` (DDP's shard of it)."""
    assert shard is not None
    rank, world = shard
    return batch.chunk(world)[rank]


class EpochStream:
    """Epochs `first..last` (1-based) of `dataset` as batches, through one DataLoader.

    Call `epoch(e)` for e = first, first + 1, ... in order; each yields that
    epoch's batches.  Workers (`workers` > 0) prefetch `prefetch_factor` batches
    each, across epoch boundaries; `pin_memory` (default: CUDA is available)
    makes host-to-GPU copies asynchronous.  `shard=(r, w)`: only rank r of w's
    contiguous slice of every batch (`x.chunk(w)[r]`), the same items and
    augmentation that slice has in the whole batch (a data-parallel rank's share).
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, views: int, first: int, last: int,
                 workers: int = 0, pin_memory: Optional[bool] = None, prefetch_factor: int = 2,
                 shard: Optional[tuple[int, int]] = None) -> None:
        if batches_per_epoch(len(dataset), batch_size) == 0:
            raise ValueError(f"{len(dataset)} training items make no batch of {batch_size}: "
                             "use a smaller batch_size or more training items")
        self.items = _EpochBatches(dataset, batch_size, seed, views, first, last, shard)
        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        extra: dict[str, Any] = {"prefetch_factor": prefetch_factor, **worker_options(workers)} if workers > 0 else {}
        self.loader = DataLoader(self.items, batch_size=None, shuffle=False, num_workers=workers,
                                 pin_memory=pin, generator=private_generator(seed), **extra)
        self.next_epoch = first
        self._iterator: Optional[Iterator] = None

    @property
    def batches_per_epoch(self) -> int:
        return self.items.per_epoch

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`, read from the shared loader (epochs must be taken in order)."""
        if epoch != self.next_epoch:
            raise ValueError(f"epoch {epoch} asked for, but the stream is at epoch {self.next_epoch}")
        self.next_epoch += 1
        if self._iterator is None:
            self._iterator = iter(self.loader)
        for _ in range(self.items.per_epoch):
            yield next(self._iterator)

    def close(self) -> None:
        """End the workers now rather than when the loader is collected."""
        self._iterator = None
