"""Text to token ids: cleaning, a training-split vocabulary, truncation and padding.

Why these steps: they are the references' (METHODS.md "Data"): lowercase,
strip HTML tags, drop punctuation, drop English stop words, split on
whitespace; the vocabulary is the 29,998 most frequent *training* words plus
`<pad>` = 0 and `<unk>` = 1; sequences are truncated to max_len and padded
with 0 at the end (so the padding mask is token != 0). Details we fix where
the references leave them open: apostrophes are deleted (so "don't" is one
word, "dont") and other punctuation becomes a space (so "end.Next" is two);
the stop words are NLTK's English list (shipped below, no download), plus
each one without its apostrophe; frequency ties are broken alphabetically so
the vocabulary does not depend on file order.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = ["PAD", "UNK", "PAD_TOKEN", "UNK_TOKEN", "STOP_WORDS", "clean_text", "build_vocab", "encode"]

PAD, UNK = 0, 1
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"

_NLTK_ENGLISH = """
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
he him his himself she she's her hers herself it it's its itself they them their theirs themselves
what which who whom this that that'll these those am is are was were be been being have has had
having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each few more most other
some such no nor not only own same so than too very s t can will just don don't should should've
now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split()
STOP_WORDS: frozenset[str] = frozenset(_NLTK_ENGLISH) | frozenset(w.replace("'", "") for w in _NLTK_ENGLISH)

_TAG = re.compile(r"<[^>]*>")
_APOSTROPHE = re.compile(r"['\u2019`]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def clean_text(text: str) -> list[str]:
    """The words of `text` after lowercasing, tag and punctuation removal and stop-word removal."""
    text = _PUNCTUATION.sub(" ", _APOSTROPHE.sub("", _TAG.sub(" ", text.lower())))
    return [word for word in text.split() if word not in STOP_WORDS]


def build_vocab(documents: Iterable[Sequence[str]], size: int) -> list[str]:
    """`<pad>`, `<unk>`, then the `size - 2` most frequent words (ties alphabetical): index = id."""
    counts = Counter(word for doc in documents for word in doc)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, size - 2)]
    return [PAD_TOKEN, UNK_TOKEN] + words


def encode(documents: Sequence[Sequence[str]], vocab: Sequence[str], max_len: int) -> torch.Tensor:
    """Ids (N, max_len): the first max_len words, unknown words as `<unk>`, padded with `<pad>`.

    Stored as int16 when the vocabulary fits (DBpedia's 560k x 400 ids take
    448 MB instead of 1.8 GB); datasets widen batches to int64.
    """
    index = {word: i for i, word in enumerate(vocab)}
    dtype = np.int16 if len(vocab) <= np.iinfo(np.int16).max else np.int32
    ids = np.zeros((len(documents), max_len), dtype=dtype)
    for row, doc in enumerate(documents):
        kept = [index.get(word, UNK) for word in doc[:max_len]]
        ids[row, : len(kept)] = kept
    return torch.from_numpy(ids)
