"""How the text of a run is read and batched: truncation, padding per batch or to max_len, pad side.

Why per batch by default: the references truncate each text to `max_len` and
pad each *batch* to its longest sequence (DASCPL `utils/nlp.py:238-269`,
`Textset` with method 1: truncate, no padding; `collate`, nlp.py:288-294,
calls `pad_sequence(x, True)`: zeros on the right).  Padding every text to
the dataset's `max_len` instead makes a short text mostly pads: the forward
LSTM's final state (half of every LSTM stage's feature) has then read
hundreds of pads, the embedding stage's feature is a mean over `max_len`
positions, and on short reviews SCPL stops learning
(`tests/test_text_padding.py`); it also spends up to max_len / length times
the references' compute.

The stored token ids stay right-padded to `max_len` (the cache's layout);
`lay_out` cuts or moves the pads of each batch as it is fetched, so every
consumer of `dataset.get_batch` (sampled batches, the training stream,
evaluation, every executor) sees the same layout.

* `padding`: "batch" (the references') or "max_len" (every batch max_len wide).
* `padding_side`: "right" (the references') or "left" (pads first, so a
  forward LSTM ends on the last real token).
* `max_len`: None = the dataset's (`data/spec.py`); a grid may set its own.
* `imdb_stop_words`: "keep" (the reference's IMDB path keeps them, see
  `text_pipeline.py`) or "drop" (as for the other datasets).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from .spec import DatasetSpec

__all__ = ["PADDINGS", "PADDING_SIDES", "IMDB_STOP_WORDS", "TextOptions", "lay_out", "sequence_lengths"]

PADDINGS = ("batch", "max_len")
PADDING_SIDES = ("right", "left")
IMDB_STOP_WORDS = ("keep", "drop")
PAD = 0


def _check(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class TextOptions:
    """The text settings of a run (defaults: the references'); vision data ignores them."""

    max_len: Optional[int] = None
    padding: str = "batch"
    padding_side: str = "right"
    imdb_stop_words: str = "keep"

    def __post_init__(self) -> None:
        if self.max_len is not None and (isinstance(self.max_len, bool) or self.max_len < 1):
            raise ValueError(f"max_len must be a positive integer or None, got {self.max_len!r}")
        _check("padding", self.padding, PADDINGS)
        _check("padding_side", self.padding_side, PADDING_SIDES)
        _check("imdb_stop_words", self.imdb_stop_words, IMDB_STOP_WORDS)

    def spec_for(self, spec: DatasetSpec) -> DatasetSpec:
        """`spec` with this run's max_len (its input shape is the widest batch)."""
        if spec.modality != "text" or self.max_len is None or self.max_len == spec.max_len:
            return spec
        return dataclasses.replace(spec, max_len=self.max_len, input_shape=(self.max_len,))

    def reader_settings(self) -> dict:
        """What changes the token ids a reader stores (part of the cache key)."""
        return {"imdb_stop_words": self.imdb_stop_words}

    def lay_out(self, tokens: torch.Tensor) -> torch.Tensor:
        return lay_out(tokens, self.padding, self.padding_side)


def sequence_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Per row: the position after its last real token (0 for a row of pads only)."""
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    return ((tokens != PAD) * positions).amax(dim=1) if tokens.shape[1] else tokens.new_zeros(tokens.shape[0])


def lay_out(tokens: torch.Tensor, padding: str = "batch", side: str = "right") -> torch.Tensor:
    """A batch of right-padded ids (B, max_len) as `padding` and `side` say.

    "batch" keeps max(length) columns (at least 1, so a model never sees an
    empty sequence); "left" moves each row's tokens to the end of the row.
    """
    lengths = sequence_lengths(tokens)
    width = tokens.shape[1] if padding == "max_len" else max(1, int(lengths.max()) if len(lengths) else 1)
    if side == "right":
        return tokens[:, :width]
    # row i's token j goes to column width - length_i + j
    source = torch.arange(width, device=tokens.device)[None, :] - (width - lengths)[:, None]
    return torch.where(source >= 0, tokens.gather(1, source.clamp(min=0)), torch.zeros_like(tokens[:, :width]))
