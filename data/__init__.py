"""Datasets of the benchmark: real vision/text releases read from disk, and synthetic twins.

    spec = get_spec("cifar10@synthetic")
    ds = load_dataset("cifar10", split="train", root=None, seed=0, augment="basic")
    x, y = ds.get_batch(torch.arange(128))          # or ds[i], or a DataLoader
    x2, y2 = two_view_batch(x, y, spec.modality)    # contrastive "strong" batch (2N)

Files, URLs, normalisation and the synthetic naming are in docs/DATA.md.
"""
from .augment import two_view_batch
from .batched import BatchedDataset
from .errors import DatasetFileError, DatasetFormatError, UnknownDatasetError
from .glove import glove_path, load_glove
from .loading import load_dataset, text_vocab
from .sources import DATA_ROOT_ENV, data_root
from .spec import SYNTHETIC_SUFFIX, DatasetSpec, get_spec, list_datasets

__all__ = [
    "DatasetSpec", "get_spec", "list_datasets", "load_dataset", "UnknownDatasetError", "DatasetFileError",
    "DatasetFormatError", "two_view_batch", "BatchedDataset", "load_glove", "glove_path", "text_vocab",
    "data_root", "DATA_ROOT_ENV", "SYNTHETIC_SUFFIX",
]
