"""The SCPL paper's LSTM text classifier: an embedding stage, then three BiLSTM stages.

Layout (METHODS.md "Models"): embedding (vocab x 300, GloVe-initialisable,
trainable); three 1-layer bidirectional LSTMs of hidden 300 (input 300, then
600); head Linear(300, 300) -> Tanh -> Linear(300, C).  14,865,904 parameters
for vocab 30,000 and C = 4.

Payload between stages: (states (B, L, D), mask (B, L), h, c).  Each LSTM
stage starts from the previous LSTM stage's final (h, c), each (2, B, 300)
(zeros for the first one), as in the reference; decoupled methods detach them
with the rest of the payload.

Padding: sequences are *not* packed.  Every LSTM runs over all L positions
of its batch, pads included, like the reference (no `pack_padded_sequence`
in DASCPL `model/nlp_single.py:18-33`).  Batches are padded to their longest
text by default, as the reference's `collate` does (`data/text_layout.py`),
so only the pads of texts shorter than the batch's longest are read; with
`padding_side: left` the forward direction ends on the last real token.
Packing would need the lengths on the CPU (a device sync per stage, which
would distort pipeline timings) and cannot run on the `meta` device the
harness validates models with.

The `<pad>` row (id 0) is zero and stays zero (`padding_idx=0`).  The
reference's is not: its GloVe matrix is built two rows off (row i holds the
vector of word i + 2, and `<pad>` and `<unk>` get the last two rows,
DASCPL `utils/nlp.py:135-145, 203-206`), so its id 0 reads the most frequent
word's vector, trainable.  The harness fixes that bug (`data/glove.py`):
row i is word i's vector and pads embed to zeros.

`embedding_feature`: the embedding stage's local feature, "mean" over every
position as the reference, or "masked_mean" over real tokens only.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .embedding import TokenEmbedding
from .reducers import embedding_feature_reducer, lstm_final_state
from .registry import register_model
from .staged import StagedModel

__all__ = ["BiLSTMStage", "lstm"]


class BiLSTMStage(nn.Module):
    """One 1-layer bidirectional LSTM: (x, mask, h, c) -> (out (B, L, 2H), mask, h_n, c_n)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, payload: tuple) -> tuple:
        x, mask, h, c = payload
        state = None if h is None else (h, c)
        out, (h_n, c_n) = self.lstm(x, state)
        return out, mask, h_n, c_n


@register_model
def lstm(num_classes: int, vocab_size: int = 30000, embed_dim: int = 300, hidden_size: int = 300,
         blocks: int = 3, embedding_weights: Optional[torch.Tensor] = None,
         embedding_feature: str = "mean") -> StagedModel:
    """Embedding + `blocks` BiLSTM stages (default 3, i.e. 4 stages) for token-id inputs (B, L).

    `embedding_weights` (vocab_size, embed_dim) initialises the embedding (GloVe);
    `embedding_feature` is "mean" (the reference's) or "masked_mean".
    """
    if blocks < 1:
        raise ValueError(f"lstm needs at least one LSTM stage, got blocks={blocks}")
    stages: list[nn.Module] = [TokenEmbedding(vocab_size, embed_dim, embedding_weights, extra=2)]
    reducers = [embedding_feature_reducer(embedding_feature)]
    feature_dims = [embed_dim]
    width = embed_dim
    for _ in range(blocks):
        stages.append(BiLSTMStage(width, hidden_size))
        reducers.append(lstm_final_state)
        feature_dims.append(hidden_size)
        width = 2 * hidden_size
    head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, num_classes))
    return StagedModel(stages, reducers, feature_dims, head, num_classes, "text")
