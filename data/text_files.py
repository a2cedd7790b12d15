"""Readers of the text releases (CSV / TSV) into padded token-id tensors and a vocabulary.

Why one reader per layout and one shared tokenising step: the four datasets
differ only in columns and label coding; cleaning, dropping the texts that
cleaning leaves empty, the vocabulary and truncation are the same for all
(`text_pipeline`), as in the reference (DASCPL `utils/nlp.py:25-99`). The
vocabulary is built from the whole official training file (including the
items later held out for validation, which uses no labels) so that it does not
change with the seed or `val_fraction`, and never from the test file.

IMDB is the exception, as in the reference (nlp.py:69-87): one file of 50,000
reviews, no official split.  The vocabulary comes from all 50,000, stop words
are kept (the reference's `df['review'].apply(data_preprocessing, True)`
passes True as pandas' `convert_dtype`, not as `remove_stopword`), and the
80/20 split is drawn per run: `train_test_split(test_size=0.2)` after
`np.random.seed(seed)` (DASCPL `train_nlp.py:354-356`, `utils/utils.py:303-322`)
is `numpy.random.RandomState(seed).permutation(50000)`, test = its first
10,000, train = the rest.  The harness draws it with the cell's seed, so a
cell seeded s reads the split of the reference run with `--seed s` (the
reference's default `--seed -1` draws a new split every run).  Empty reviews
are then dropped from each part (none are, with the stop words kept).
DBpedia's text is its `content` only (nlp.py:32-33); AG News' is title and
description joined by a space (the `text` of the Hugging Face `ag_news`
the reference loads).
"""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .sources import bad_file, register_reader
from .spec import get_spec
from .text_layout import TextOptions
from .text_pipeline import build_vocab, clean_text, encode, nonempty

__all__ = ["TextArrays", "Rows", "IMDB_TEST_FRACTION"]

IMDB_TEST_FRACTION = 0.2  # the reference's train_test_split(test_size=0.2)

Rows = tuple[list[str], list[int]]  # texts and 0-based labels


@dataclass
class TextArrays:
    """A text dataset's vocabulary (index = id) and its official splits as ids (int16/int32).

    `test_fraction` > 0 marks a dataset without an official split (IMDB): the
    train fields hold every item and `split(seed)` draws the two parts.
    """

    vocab: list[str]
    train_tokens: torch.Tensor  # (N, max_len)
    train_labels: torch.Tensor  # int64 (N,)
    test_tokens: torch.Tensor
    test_labels: torch.Tensor
    test_fraction: float = 0.0

    def split(self, seed: int) -> "TextArrays":
        """The train/test parts for a run seeded `seed`, as the reference's `train_test_split` draws them.

        sklearn's ShuffleSplit: test = the first ceil(fraction x N) of
        `RandomState(seed).permutation(N)`, train = the rest, both in that
        order; then empty texts (all-pad rows) leave each part.
        """
        if not self.test_fraction:
            return self
        count = len(self.train_labels)
        order = torch.from_numpy(np.random.RandomState(seed).permutation(count))
        n_test = math.ceil(self.test_fraction * count)
        test, train = order[:n_test], order[n_test:]
        train = train[self.train_tokens[train, 0] != 0]
        test = test[self.train_tokens[test, 0] != 0]
        return dataclasses.replace(self, train_tokens=self.train_tokens[train], train_labels=self.train_labels[train],
                                   test_tokens=self.train_tokens[test], test_labels=self.train_labels[test],
                                   test_fraction=0.0)


def _labels(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def _tokenise(name: str, train: Rows, test: Rows, max_len: int) -> TextArrays:
    """Clean, drop the texts left empty, build the vocabulary from the training texts, encode."""
    spec = get_spec(name)
    train_docs, train_labels = nonempty([clean_text(t) for t in train[0]], train[1])
    test_docs, test_labels = nonempty([clean_text(t) for t in test[0]], test[1])
    vocab = build_vocab(train_docs, int(spec.vocab_size or 0))
    return TextArrays(vocab, encode(train_docs, vocab, max_len), _labels(train_labels),
                      encode(test_docs, vocab, max_len), _labels(test_labels))


def _csv_rows(path: Path, **options) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each record; fields may span lines (quoted newlines)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))  # long reviews and articles
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, **options)
        for fields in reader:
            if fields:
                yield reader.line_num, fields


def _label(value: str, classes: int, name: str, path: Path, line: int) -> int:
    """A 1-based class index from the file as a 0-based label."""
    try:
        label = int(value) - 1
    except ValueError:
        raise bad_file(name, path, f"line {line}: class index {value!r} is not an integer") from None
    if not 0 <= label < classes:
        raise bad_file(name, path, f"line {line}: class index {value} outside 1..{classes}")
    return label


def _class_title_text(name: str, classes: int, title: bool) -> Callable[[Path], Rows]:
    """Reader of the Zhang et al. (2015) CSV layout: class index (1-based), title, text; no header.

    `title`: the text is title + " " + text (AG News), else the text alone (DBpedia).
    """

    def read(path: Path) -> Rows:
        texts: list[str] = []
        labels: list[int] = []
        for line, fields in _csv_rows(path):
            if not texts and not fields[0].strip().isdigit():
                continue  # a header row (some mirrors add one)
            if len(fields) != 3:
                raise bad_file(name, path, f"line {line}: expected 3 columns (class index, title, text), "
                                           f"found {len(fields)}")
            labels.append(_label(fields[0], classes, name, path, line))
            texts.append(fields[1] + " " + fields[2] if title else fields[2])
        if not texts:
            raise bad_file(name, path, "no data rows")
        return texts, labels

    return read


_read_agnews = _class_title_text("agnews", 4, title=True)
_read_dbpedia = _class_title_text("dbpedia14", 14, title=False)


@register_reader("agnews", ("ag_news/train.csv", "ag_news/test.csv"),
                 "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz",
                 "the AG News CSVs of Zhang et al. 2015 (class 1-4, title, description; no header) "
                 "in <root>/ag_news/", cache=True)
def read_agnews(root: Path, max_len: int, text: TextOptions) -> TextArrays:
    return _tokenise("agnews", _read_agnews(root / "ag_news/train.csv"), _read_agnews(root / "ag_news/test.csv"),
                     max_len)


@register_reader("dbpedia14", ("dbpedia_csv/train.csv", "dbpedia_csv/test.csv"),
                 "https://s3.amazonaws.com/fast-ai-nlp/dbpedia_csv.tgz",
                 "the DBpedia-14 CSVs of Zhang et al. 2015 (class 1-14, title, content; no header) "
                 "in <root>/dbpedia_csv/", cache=True)
def read_dbpedia14(root: Path, max_len: int, text: TextOptions) -> TextArrays:
    base = root / "dbpedia_csv"
    return _tokenise("dbpedia14", _read_dbpedia(base / "train.csv"), _read_dbpedia(base / "test.csv"), max_len)


def _header_columns(name: str, path: Path, header: list[str], wanted: tuple[str, ...]) -> list[int]:
    columns = [c.strip().lower() for c in header]
    missing = [w for w in wanted if w not in columns]
    if missing:
        raise bad_file(name, path, f"header {header} lacks column(s) {missing}; expected columns {list(wanted)}")
    return [columns.index(w) for w in wanted]


def _read_imdb_rows(path: Path) -> Rows:
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise bad_file("imdb", path, "empty file")
    text_col, label_col = _header_columns("imdb", path, first[1], ("review", "sentiment"))
    texts, labels = [], []
    for line, fields in rows:
        if len(fields) != len(first[1]):
            raise bad_file("imdb", path, f"line {line}: {len(fields)} columns, header has {len(first[1])}")
        sentiment = fields[label_col].strip().lower()
        if sentiment not in ("negative", "positive"):
            raise bad_file("imdb", path, f"line {line}: sentiment {fields[label_col]!r} is not positive/negative")
        texts.append(fields[text_col])
        labels.append(int(sentiment == "positive"))
    if len(texts) < 2:
        raise bad_file("imdb", path, "fewer than 2 reviews")
    return texts, labels


@register_reader("imdb", ("IMDB_Dataset.csv",),
                 "https://www.kaggle.com/datasets/lakshmi25npathi/imdb-dataset-of-50k-movie-reviews",
                 "the 50k-review CSV (columns review, sentiment) saved as <root>/IMDB_Dataset.csv "
                 "(Kaggle names it 'IMDB Dataset.csv')", cache=True)
def read_imdb(root: Path, max_len: int, text: TextOptions) -> TextArrays:
    """Every review, split per run by `TextArrays.split` (see the module docstring)."""
    texts, labels = _read_imdb_rows(root / "IMDB_Dataset.csv")
    docs = [clean_text(t, drop_stop_words=text.imdb_stop_words == "drop") for t in texts]
    vocab = build_vocab(docs, int(get_spec("imdb").vocab_size or 0))
    return TextArrays(vocab, encode(docs, vocab, max_len), _labels(labels), encode([], vocab, max_len), _labels([]),
                      test_fraction=IMDB_TEST_FRACTION)


def _read_sst2_rows(path: Path) -> Rows:
    rows = _csv_rows(path, delimiter="\t", quoting=csv.QUOTE_NONE)
    first = next(rows, None)
    if first is None:
        raise bad_file("sst2", path, "empty file")
    text_col, label_col = _header_columns("sst2", path, first[1], ("sentence", "label"))
    texts, labels = [], []
    for line, fields in rows:
        if len(fields) != len(first[1]):
            raise bad_file("sst2", path, f"line {line}: {len(fields)} tab-separated columns, header has {len(first[1])}")
        value = fields[label_col].strip()
        if value not in ("0", "1"):
            raise bad_file("sst2", path, f"line {line}: label {value!r} is not 0 or 1")
        texts.append(fields[text_col])
        labels.append(int(value))
    if not texts:
        raise bad_file("sst2", path, "no data rows")
    return texts, labels


@register_reader("sst2", ("SST-2/train.tsv", "SST-2/dev.tsv"), "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
                 "GLUE's SST-2.zip unpacked into the data root (train.tsv, dev.tsv: sentence<TAB>label "
                 "with a header); dev.tsv is the test set", cache=True)
def read_sst2(root: Path, max_len: int, text: TextOptions) -> TextArrays:
    return _tokenise("sst2", _read_sst2_rows(root / "SST-2/train.tsv"), _read_sst2_rows(root / "SST-2/dev.tsv"),
                     max_len)
