"""The first stage of every text model: token ids -> (embeddings, padding mask).

Why the mask travels in the payload: later stages (attention, masked means)
need to know which positions are padding, and a stage sees only its payload.
Token id 0 is `<pad>` (data/ builds vocabularies that way); the mask is True
where a real token is.  `padding_idx=0` keeps the `<pad>` row fixed (zero
unless initial weights say otherwise) without changing the parameter count.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

__all__ = ["PAD_ID", "TokenEmbedding", "sinusoidal_positions"]

PAD_ID = 0


def sinusoidal_positions(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """(length, dim) sinusoidal position codes (Vaswani et al., 2017, sec. 3.5); no parameters."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device, dtype=torch.float32)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes.to(dtype) if dtype is not None else codes


class TokenEmbedding(nn.Module):
    """(B, L) token ids -> payload (emb (B, L, D), mask (B, L) bool) + `extra` trailing Nones.

    Args:
        vocab_size, embed_dim: table size (vocab_size * embed_dim parameters).
        weights: optional (vocab_size, embed_dim) initial table (e.g. GloVe
            rows from `data.load_glove`); it stays trainable.
        positional_encoding: add sinusoidal position codes (parameter-free).
        extra: number of `None` slots appended to the payload, for stages
            that expect more entries (the LSTM's initial (h, c)).
    """

    def __init__(self, vocab_size: int, embed_dim: int, weights: Optional[torch.Tensor] = None,
                 positional_encoding: bool = False, extra: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        if weights is not None:
            if tuple(weights.shape) != (vocab_size, embed_dim):
                raise ValueError(
                    f"embedding_weights has shape {tuple(weights.shape)}; this model needs "
                    f"({vocab_size}, {embed_dim}) (vocab_size, embed_dim)"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(weights)
        self.positional_encoding = positional_encoding
        self.extra = extra

    def forward(self, tokens: torch.Tensor) -> tuple:
        emb = self.embedding(tokens)
        if self.positional_encoding:
            emb = emb + sinusoidal_positions(tokens.shape[1], emb.shape[-1], emb.device, emb.dtype)
        return (emb, tokens != PAD_ID) + (None,) * self.extra
