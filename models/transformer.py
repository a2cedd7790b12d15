"""The SCPL paper's Transformer text classifier: an embedding stage, then three encoder blocks.

Layout (METHODS.md "Models"): embedding (vocab x 300) and three stages of one
reference encoder block each (`models/encoder_block.py`: pre-norm sublayers and
a final LayerNorm, xavier-uniform matrices; d_model 300, 6 heads, d_ff 300,
dropout 0.1); head Linear(300, 300) -> Tanh -> Linear(300, C).  Each block has
543,600 parameters.  The reference also registers an unused copy of every
block (543,000 dead parameters each); that copy is left out here, so parameter
counts and memory reflect the network actually trained.

Payload between stages: (states (B, L, 300), mask (B, L)); attention ignores
padded keys.  Local features: plain mean over tokens after the embedding, as
the reference (`embedding_feature: masked_mean` counts real tokens only),
mean over real tokens after each block.  The reference has no positional
encoding; `positional_encoding=True` adds sinusoidal codes in the embedding
stage (no parameters).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .embedding import TokenEmbedding
from .encoder_block import EncoderBlockStage
from .reducers import embedding_feature_reducer, masked_mean_tokens
from .registry import register_model
from .staged import StagedModel

__all__ = ["EncoderBlockStage", "transformer"]


@register_model
def transformer(num_classes: int, vocab_size: int = 30000, embed_dim: int = 300, num_heads: int = 6,
                ff_dim: int = 300, dropout: float = 0.1, blocks: int = 3, positional_encoding: bool = False,
                embedding_weights: Optional[torch.Tensor] = None, embedding_feature: str = "mean") -> StagedModel:
    """Embedding + `blocks` encoder stages (default 3, i.e. 4 stages) for token-id inputs (B, L).

    `embedding_weights` (vocab_size, embed_dim) initialises the embedding (GloVe).
    """
    if blocks < 1:
        raise ValueError(f"transformer needs at least one encoder block, got blocks={blocks}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    stages: list[nn.Module] = [TokenEmbedding(vocab_size, embed_dim, embedding_weights, positional_encoding)]
    stages += [EncoderBlockStage(embed_dim, num_heads, ff_dim, dropout) for _ in range(blocks)]
    reducers = [embedding_feature_reducer(embedding_feature)] + [masked_mean_tokens] * blocks
    feature_dims = [embed_dim] * (blocks + 1)
    head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Linear(embed_dim, num_classes))
    return StagedModel(stages, reducers, feature_dims, head, num_classes, "text")
