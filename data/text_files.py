"""Readers of the text releases (CSV / TSV) into padded token-id tensors and a vocabulary.

Why one reader per layout and one shared tokenising step: the four datasets
differ only in columns and label coding; cleaning, the training-split
vocabulary and truncation are the same for all (`text_pipeline`). The
vocabulary is built from the whole official training file (including the
items later held out for validation, which uses no labels) so that it does not
change with the seed or `val_fraction`, and never from the test file.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from .sources import bad_file, register_reader
from .spec import get_spec
from .text_pipeline import build_vocab, clean_text, encode

__all__ = ["TextArrays", "Rows"]

Rows = tuple[list[str], list[int]]  # texts and 0-based labels


@dataclass
class TextArrays:
    """A text dataset's vocabulary (index = id) and its official splits as ids (int16/int32)."""

    vocab: list[str]
    train_tokens: torch.Tensor  # (N, max_len)
    train_labels: torch.Tensor  # int64 (N,)
    test_tokens: torch.Tensor
    test_labels: torch.Tensor


def _tokenise(name: str, train: Rows, test: Rows) -> TextArrays:
    spec = get_spec(name)
    train_docs = [clean_text(t) for t in train[0]]
    test_docs = [clean_text(t) for t in test[0]]
    vocab = build_vocab(train_docs, int(spec.vocab_size or 0))
    max_len = int(spec.max_len or 0)
    return TextArrays(vocab, encode(train_docs, vocab, max_len), torch.tensor(train[1], dtype=torch.long),
                      encode(test_docs, vocab, max_len), torch.tensor(test[1], dtype=torch.long))


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


def _class_title_text(name: str, classes: int) -> Callable[[Path], Rows]:
    """Reader of the Zhang et al. (2015) CSV layout: class index (1-based), title, text; no header."""

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
            texts.append(fields[1] + " " + fields[2])
        if not texts:
            raise bad_file(name, path, "no data rows")
        return texts, labels

    return read


_read_agnews = _class_title_text("agnews", 4)
_read_dbpedia = _class_title_text("dbpedia14", 14)


@register_reader("agnews", ("ag_news/train.csv", "ag_news/test.csv"),
                 "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz",
                 "the AG News CSVs of Zhang et al. 2015 (class 1-4, title, description; no header) "
                 "in <root>/ag_news/", cache=True)
def read_agnews(root: Path) -> TextArrays:
    return _tokenise("agnews", _read_agnews(root / "ag_news/train.csv"), _read_agnews(root / "ag_news/test.csv"))


@register_reader("dbpedia14", ("dbpedia_csv/train.csv", "dbpedia_csv/test.csv"),
                 "https://s3.amazonaws.com/fast-ai-nlp/dbpedia_csv.tgz",
                 "the DBpedia-14 CSVs of Zhang et al. 2015 (class 1-14, title, content; no header) "
                 "in <root>/dbpedia_csv/", cache=True)
def read_dbpedia14(root: Path) -> TextArrays:
    base = root / "dbpedia_csv"
    return _tokenise("dbpedia14", _read_dbpedia(base / "train.csv"), _read_dbpedia(base / "test.csv"))


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
def read_imdb(root: Path) -> TextArrays:
    texts, labels = _read_imdb_rows(root / "IMDB_Dataset.csv")
    half = len(texts) // 2  # as the AL reference: first 25,000 rows train, last 25,000 test
    return _tokenise("imdb", (texts[:half], labels[:half]), (texts[half:], labels[half:]))


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
def read_sst2(root: Path) -> TextArrays:
    return _tokenise("sst2", _read_sst2_rows(root / "SST-2/train.tsv"), _read_sst2_rows(root / "SST-2/dev.tsv"))
