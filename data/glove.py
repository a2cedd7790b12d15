"""GloVe vectors as embedding weights whose row i is the vector of vocabulary word i.

Why this module is careful about rows: the reference builds its matrix two
rows off.  Its vocabulary maps the k-th most frequent word to id k + 2 and
adds `<pad>` = 0 and `<unk>` = 1 last (DASCPL `utils/nlp.py:203-206`), and
`get_word_vector` stacks one row per word in that insertion order
(nlp.py:135-145): row i holds the vector of the word with id i + 2, and the
rows of `<pad>` and `<unk>` are the last two.  Every pretrained vector lands
on the wrong word, and `<pad>` reads the most frequent word's vector.  The
harness fixes that bug: a test writes a tiny GloVe file and checks that row i
is word i's vector.  Words GloVe lacks get seeded N(0, 0.3^2) vectors (0.3 is
close to the spread of glove.6B.300d's values; the reference's are
`torch.rand(300)`, uniform on [0, 1)), `<pad>` gets zeros.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch

from .counter_rng import item_keys, normal, stream_id
from .errors import DatasetFileError, DatasetFormatError
from .sources import data_root

__all__ = ["GLOVE_URL", "GLOVE_RELATIVE_PATH", "glove_path", "require_glove", "load_glove"]

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
GLOVE_RELATIVE_PATH = "glove/glove.6B.300d.txt"
RANDOM_STD = 0.3


def glove_path(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """`<data root>/glove/glove.6B.300d.txt`."""
    return data_root(root) / GLOVE_RELATIVE_PATH


def require_glove(path: Union[str, os.PathLike]) -> Path:
    """`path` if the GloVe file is there, else a `DatasetFileError` naming it and the download."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"glove: missing: {path} ; get glove.6B.zip from {GLOVE_URL} and unpack "
                               f"glove.6B.300d.txt to <data root>/{GLOVE_RELATIVE_PATH}")
    return path


def load_glove(path: Union[str, os.PathLike], vocab: Union[Sequence[str], Mapping[str, int]], *,
               rows: Optional[int] = None, seed: int = 0) -> tuple[torch.Tensor, float]:
    """(weights (R, D), coverage): row i = GloVe vector of the word with id i.

    `vocab` is a list (index = id) or a dict word -> id; ids 0 and 1 are
    `<pad>` (zero row) and `<unk>` (random row). `rows` pads the matrix to a
    model's embedding size (e.g. `spec.vocab_size`) with random rows.
    `coverage` = fraction of the vocabulary's words (ids >= 2) found in GloVe.
    D is read from the file (300 for glove.6B.300d).
    """
    path = require_glove(path)
    ids = dict(vocab) if isinstance(vocab, Mapping) else {word: i for i, word in enumerate(vocab)}
    size = max(max(ids.values(), default=-1) + 1, rows or 0)
    found: dict[int, list[float]] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            values = rest.split(" ")
            if dim is None:
                dim = len(values)
            index = ids.get(word)
            if index is None or index < 2:
                continue
            if len(values) != dim:
                raise DatasetFormatError(f"glove: malformed file {path}: line {number} has {len(values)} "
                                         f"values, line 1 has {dim}; expected '<word> <v1> ... <vD>'")
            try:
                found[index] = [float(v) for v in values]
            except ValueError:
                raise DatasetFormatError(f"glove: malformed file {path}: line {number}: non-numeric value") from None
    if dim is None:
        raise DatasetFormatError(f"glove: malformed file {path}: empty")
    # Row i's random vector depends on (seed, i) only, so padding to `rows` changes no other row.
    weights = normal(item_keys(seed, stream_id("glove"), 0, torch.arange(size)), dim) * RANDOM_STD
    if found:
        rows_found = torch.tensor(sorted(found))
        weights[rows_found] = torch.tensor([found[i] for i in sorted(found)], dtype=torch.float32)
    weights[0] = 0.0  # <pad>
    words = sum(1 for i in ids.values() if i >= 2)
    return weights, (len(found) / words if words else 0.0)
