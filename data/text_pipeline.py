"""Text to token ids as the references make them: cleaning, a vocabulary, truncation.

The steps are DASCPL's (`utils/nlp.py`, itself from the AL reference):

* `data_preprocessing` (nlp.py:177-188): lowercase; delete tags with
  `re.sub('<.*?>', '', text)` and every ASCII punctuation character
  (`string.punctuation`) *without* putting a space in their place, so
  "movie.<br />The" becomes "moviethe" and "don't" becomes "dont"; split on
  whitespace; drop NLTK's English stop words.  The list is NLTK's (shipped
  below, no download); after punctuation is gone only its apostrophe-free
  entries can match, so "dont", "isnt" and "wont" stay, as in the reference.
  IMDB keeps its stop words (`text_files.read_imdb`).
* `data_cleansing(..., doRemove=True)` (nlp.py:64-65, 86-87, 147-174): texts
  left empty by cleaning are dropped, from training and test sets alike
  (`nonempty`).
* `create_vocab` (nlp.py:190-209): `<pad>` = 0, `<unk>` = 1, then the
  29,998 most frequent words by `Counter.most_common`, whose ties keep the
  order in which the words first occur.
* `Textset` method 1 (nlp.py:259-271): the first `max_len` words; padding
  happens per batch (`data/text_layout.py`).  Stored ids are right-padded
  with 0 to max_len, so the padding mask is token != 0.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = ["PAD", "UNK", "PAD_TOKEN", "UNK_TOKEN", "STOP_WORDS", "clean_text", "nonempty", "build_vocab",
           "encode"]

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
STOP_WORDS: frozenset[str] = frozenset(_NLTK_ENGLISH)

_TAG = re.compile(r"<.*?>")  # the reference's: non-greedy, within one line
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean_text(text: str, drop_stop_words: bool = True) -> list[str]:
    """The words of `text` as the reference's `data_preprocessing` leaves them (nlp.py:177-188).

    Tags and ASCII punctuation are deleted, not replaced by a space:
    "movie.<br />The end" -> ["moviethe", "end"].
    """
    words = _TAG.sub("", text.lower()).translate(_PUNCTUATION).split()
    return [word for word in words if word not in STOP_WORDS] if drop_stop_words else words


def nonempty(documents: Sequence[Sequence[str]], labels: Sequence[int]) -> tuple[list, list[int]]:
    """The documents with at least one word, and their labels (the reference's `data_cleansing`)."""
    kept = [i for i, doc in enumerate(documents) if doc]
    return [documents[i] for i in kept], [labels[i] for i in kept]


def build_vocab(documents: Iterable[Sequence[str]], size: int) -> list[str]:
    """`<pad>`, `<unk>`, then the `size - 2` most frequent words: index = id.

    `Counter.most_common` sorts stably, so words of equal count keep the order
    of their first occurrence, as in the reference's `create_vocab`.
    """
    counts = Counter(word for doc in documents for word in doc)
    return [PAD_TOKEN, UNK_TOKEN] + [word for word, _ in counts.most_common(max(0, size - 2))]


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
