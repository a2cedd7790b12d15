"""Datasets of the benchmark: real vision/text releases read from disk, and synthetic twins.

    spec = get_spec("cifar10@synthetic")
    ds = load_dataset("cifar10", split="train", root=None, seed=0, augment="basic")
    x, y = ds.get_batch(torch.arange(128))          # or ds[i], or a DataLoader
    x2, y2 = ds.get_batch(torch.arange(128), views=2)  # the two-view "strong" batch (2N) from raw items

Files, URLs, normalisation and the synthetic naming are in docs/DATA.md.

The specs, errors and sources import no torch, and the names that need it are
loaded on first use: the runner asks `get_spec` for the rows of cells that never
finished without importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DatasetFileError, DatasetFormatError, UnknownDatasetError
from .sources import DATA_ROOT_ENV, data_root
from .spec import SYNTHETIC_SUFFIX, DatasetSpec, get_spec, list_datasets

if TYPE_CHECKING:
    from .augment import two_view_batch
    from .batched import BatchedDataset
    from .glove import glove_path, load_glove
    from .loading import load_dataset, text_vocab

__all__ = [
    "DatasetSpec", "get_spec", "list_datasets", "load_dataset", "UnknownDatasetError", "DatasetFileError",
    "DatasetFormatError", "two_view_batch", "BatchedDataset", "load_glove", "glove_path", "text_vocab",
    "data_root", "DATA_ROOT_ENV", "SYNTHETIC_SUFFIX",
]

_NEEDS_TORCH = {"two_view_batch": "augment", "BatchedDataset": "batched", "glove_path": "glove",
                "load_glove": "glove", "load_dataset": "loading", "text_vocab": "loading"}


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported from their module on first use (PEP 562)."""
    if name in _NEEDS_TORCH:
        return getattr(importlib.import_module(f".{_NEEDS_TORCH[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
