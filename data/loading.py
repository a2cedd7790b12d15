"""`load_dataset`: a name and a split in, a `BatchedDataset` out.

Why one entry point: the harness never needs to know whether a dataset is a
synthetic twin or files on disk, vision or text; it asks by name. Real data is
read through the reader registered for the base name (`vision_files`,
`text_files`) and is never replaced by synthetic data when files are missing.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Optional, Union, cast

from . import text_files, vision_files  # noqa: F401 - importing registers the readers
from .augment import BasicAugment
from .batched import BatchedDataset
from .cache import cached, fingerprint
from .in_memory import InMemoryText, InMemoryVision
from .sources import bad_file, data_root, require_files, source_for
from .spec import DatasetSpec, get_spec
from .splits import SPLITS, Split, label_noise_offsets, split_positions
from .synthetic import SyntheticText, SyntheticVision, synthetic_vocab
from .text_files import TextArrays
from .text_layout import TextOptions
from .vision_files import VisionArrays

__all__ = ["AUGMENTS", "load_dataset", "read_real", "text_vocab", "check_split_options"]

AUGMENTS = ("none", "basic")
PathLike = Union[str, os.PathLike]


# The last dataset read in this process: a cell loads "train" then "test" of the same files.
_LAST_READ: dict[tuple, Union[VisionArrays, TextArrays]] = {}


def read_real(spec: DatasetSpec, root: Optional[PathLike] = None,
              text: Optional[TextOptions] = None) -> Union[VisionArrays, TextArrays]:
    """The decoded official splits of real dataset `spec` (through the cache where it pays).

    Text is read with `spec.max_len` and `text`'s reading options; a dataset
    without an official split (IMDB) comes back whole (`TextArrays.split`).
    """
    source = source_for(spec.base)
    base = data_root(root)
    paths = require_files(source, base)
    settings = {"dataset": spec.base, "max_len": spec.max_len, "vocab_size": spec.vocab_size}
    read = source.read
    if spec.modality == "text":
        text = text or TextOptions()
        settings.update(text.reader_settings())
        read = functools.partial(source.read, max_len=int(spec.max_len or 0), text=text)
    files_key = fingerprint(paths, settings)
    key = (spec.base, str(base.resolve()), files_key)
    if key in _LAST_READ:
        return _LAST_READ[key]
    arrays: Union[VisionArrays, TextArrays]
    if source.cache:
        cls = TextArrays if spec.modality == "text" else VisionArrays
        arrays = cast(Union[VisionArrays, TextArrays], cached(base, spec.base, files_key, cls, lambda: read(base)))
    else:
        arrays = cast(Union[VisionArrays, TextArrays], read(base))
    if spec.modality == "vision":
        for part in ("train_images", "test_images"):
            shape = tuple(getattr(arrays, part).shape[1:])
            if shape != spec.input_shape:
                raise bad_file(spec.base, paths[0], f"{part} have shape {shape}, expected {spec.input_shape}")
    _LAST_READ.clear()
    _LAST_READ[key] = arrays
    return arrays


def _check(name: str, split: str, augment: str, val_fraction: float, noise_rate: float) -> DatasetSpec:
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; choose one of {list(AUGMENTS)} "
                         "(the two-view 'strong' batch is two_view_batch(x, y, modality))")
    check_split_options(val_fraction, noise_rate)
    return spec


def check_split_options(val_fraction: float, noise_rate: float) -> None:
    """ValueError unless the hold-out and noise fractions are usable (also checked for grids)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not 0.0 <= noise_rate <= 1.0:
        raise ValueError(f"noise_rate must be in [0, 1], got {noise_rate!r}")


def load_dataset(name: str, split: str = "train", root: Optional[PathLike] = None, seed: int = 0,
                 augment: str = "none", val_fraction: float = 0.1, noise_rate: float = 0.0,
                 max_train_items: Optional[int] = None, max_test_items: Optional[int] = None,
                 spec: Optional[DatasetSpec] = None, text: Optional[TextOptions] = None) -> BatchedDataset:
    """Dataset `name` ("cifar10", "imdb@synthetic", ...; see `list_datasets()`), split `split`.

    * split: "train" (the official training set minus the hold-out), "val"
      (a `val_fraction` hold-out of the training set drawn by `seed`) or
      "test" (the official test set; SST-2's GLUE dev set; Tiny-ImageNet's val set).
    * augment: "basic" = random crop (padding side/8) + horizontal flip, on
      the training split of vision data only (a no-op for text, val and test).
    * noise_rate: fraction of *training* labels replaced by a different class.
    * root: data root for real files (else $SCPLBENCH_DATA, else ./datasets).
    * max_train_items / max_test_items: use only the first N items of the official
      training / test set (a subset; the hold-out is drawn from the N).
    * spec: the spec of what was read (`data.observed.observe_dataset`: classes and
      sizes of the files) instead of the published one; label noise draws its classes from it.
    * text: text options (`data.text_layout.TextOptions`: max_len, padding per
      batch or to max_len, pad side, IMDB's stop words); default the references'.
    Items are `(x, y)`: vision x float (3, H, W) normalised; text x int64
    (L,) with 0 = <pad>, 1 = <unk>, L <= max_len: a batch is as wide as its
    longest text (`text.padding`). `dataset.get_batch(indices)` returns a whole
    batch at once.
    """
    published = _check(name, split, augment, val_fraction, noise_rate)
    text = text or TextOptions()
    spec = spec or text.spec_for(published)
    if spec.kind == "real":
        arrays = read_real(spec, root, text)
        if isinstance(arrays, TextArrays):
            arrays = arrays.split(seed)
        train_count, test_count = len(arrays.train_labels), len(arrays.test_labels)
    else:
        arrays, train_count, test_count = None, spec.train_size, spec.test_size
    train_count = min(train_count, max_train_items or train_count)
    test_count = min(test_count, max_test_items or test_count)
    positions = split_positions(cast(Split, split), train_count, test_count, val_fraction, seed)
    offsets = (label_noise_offsets(len(positions), noise_rate, spec.num_classes, seed)
               if split == "train" and noise_rate > 0 else None)
    transform = (BasicAugment(max(1, spec.input_shape[-1] // 8))
                 if augment == "basic" and split == "train" and spec.modality == "vision" else None)
    common: dict[str, Any] = dict(label_offsets=offsets, transform=transform, seed=seed)
    if arrays is None:
        if spec.modality == "vision":
            return SyntheticVision(spec, split, positions, **common)
        return SyntheticText(spec, split, positions, layout=text, **common)
    pool = "test" if split == "test" else "train"
    if isinstance(arrays, VisionArrays):
        return InMemoryVision(spec, split, positions, getattr(arrays, f"{pool}_images"),
                              getattr(arrays, f"{pool}_labels"), **common)
    return InMemoryText(spec, split, positions, getattr(arrays, f"{pool}_tokens"),
                        getattr(arrays, f"{pool}_labels"), arrays.vocab, layout=text, **common)


def text_vocab(name: str, root: Optional[PathLike] = None, text: Optional[TextOptions] = None) -> list[str]:
    """The vocabulary (index = token id) of text dataset `name` read with `text`, e.g. for `load_glove`."""
    spec = get_spec(name)
    if spec.modality != "text":
        raise ValueError(f"{name!r} is a {spec.modality} dataset; it has no vocabulary")
    if spec.kind == "synthetic":
        return synthetic_vocab(spec)
    text = text or TextOptions()
    arrays = read_real(text.spec_for(spec), root, text)
    assert isinstance(arrays, TextArrays)
    return arrays.vocab
