"""What a run actually trains on: the classes and sizes of the data read, not the published ones.

Why: a data root may hold less than the release (ten Tiny-ImageNet classes copied
for a trial, a truncated CIFAR batch, a `max_train_items` subset).  The head size,
label noise, steps per epoch and parameter counts must follow the files, or a
200-way head is trained on ten classes and every number is quietly off.  The
published spec (`data/spec.py`) stays what the grid checks against; where the two
differ a one-line note says so (the row's `data_note`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from .spec import DatasetSpec, get_spec
from .text_layout import TextOptions

__all__ = ["ObservedData", "observe_dataset"]


@dataclass(frozen=True)
class ObservedData:
    """The spec of what was read, and how it differs from the published dataset (None: it does not)."""

    spec: DatasetSpec
    note: Optional[str]


def _limit(count: int, limit: Optional[int]) -> int:
    return min(count, limit) if limit else count


def observe_dataset(name: str, root=None, max_train_items: Optional[int] = None,
                    max_test_items: Optional[int] = None, text: Optional[TextOptions] = None,
                    seed: int = 0) -> ObservedData:
    """Classes (distinct training labels) and official train/test sizes of the data `name` reads.

    The head gets `max(label) + 1` outputs, so every label read indexes a logit;
    with the usual contiguous labels 0..k-1 that is the number of distinct labels.
    Synthetic twins generate every published class, so only their sizes can differ.
    `text` sets a text dataset's max_len (the spec's) and reading options;
    `seed` draws IMDB's train/test split (`TextArrays.split`).
    """
    text = text or TextOptions()
    published = text.spec_for(get_spec(name))
    notes = []
    if published.kind == "real":
        from .loading import read_real
        from .text_files import TextArrays

        arrays = read_real(published, root, text)
        if isinstance(arrays, TextArrays):
            arrays = arrays.split(seed)
        train_labels = arrays.train_labels[:_limit(len(arrays.train_labels), max_train_items)]
        train_size, test_size = len(train_labels), _limit(len(arrays.test_labels), max_test_items)
        distinct = int(torch.unique(train_labels).numel()) if len(train_labels) else 0
        head = int(train_labels.max()) + 1 if len(train_labels) else published.num_classes
        if distinct != published.num_classes:
            notes.append(f"{distinct} classes in the training files, {published.num_classes} published"
                         + (f" (head of {head}: labels are not 0..{distinct - 1})" if head != distinct else ""))
        classes = head
    else:
        train_size = _limit(published.train_size, max_train_items)
        test_size = _limit(published.test_size, max_test_items)
        classes = published.num_classes
    if train_size != published.train_size:
        notes.append(f"{train_size} training items read, {published.train_size} published")
    if test_size != published.test_size:
        notes.append(f"{test_size} test items read, {published.test_size} published")
    spec = dataclasses.replace(published, num_classes=classes, train_size=train_size, test_size=test_size)
    return ObservedData(spec, f"{name}: " + "; ".join(notes) if notes else None)
