"""One stage of the Transformer text classifier: the reference's encoder block.

Why not `nn.TransformerEncoderLayer`: the reference's block (DASCPL
`model/transformer/encoder/`, built with `n_layers=1` per stage,
`model/nlp_single.py:23`) differs from it in three ways that change what
trains:

* it ends with a LayerNorm of its own (`Encoder.norm`, `encoder.py:18,24`):
  pre-norm sublayers `x + dropout(sublayer(norm(x)))` (`encoder_layer.py:24-25,41`),
  then `norm` over the block's output;
* its LayerNorm is `a * (x - mean) / (std + eps) + b` with the *unbiased* std
  and eps 1e-6 added to the std (`layer_norm.py:15-17`); `nn.LayerNorm` divides
  by sqrt(biased var + 1e-5);
* every matrix starts xavier-uniform (`encoder.py:48-51`), each of the four
  attention projections on its own (`multihead_attention.py:47`); biases keep
  `nn.Linear`'s default init (PyTorch's attention zeroes them).

The rest is as `nn.TransformerEncoderLayer(norm_first=True)`: ReLU feed-forward
`Linear(d, d_ff) -> ReLU -> Dropout -> Linear(d_ff, d)` (`feed_forward.py:9-21`),
dropout on the attention weights (`multihead_attention.py:35-36`) and on each
sublayer's output.  Padded keys are masked (the reference fills their scores
with -1e9, `multihead_attention.py:32-33`; here -inf, the same softmax).

Parameters per block: 4 (d^2 + d) attention + 2 d d_ff + d_ff + d feed-forward
+ 3 x 2d norms; 543,600 at d = d_ff = 300.  The reference's module also
registers the unused original of the layer it clones (`encoder.py:17`,
`TransformerEncoder.__init__` keeps `multi_headed_attention`, `feed_forward`
and `encoder_layer`: 543,000 dead parameters per block); that copy is left out.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ReferenceLayerNorm", "EncoderBlockStage", "reference_init"]


class ReferenceLayerNorm(nn.Module):
    """`weight * (x - mean) / (std + eps) + bias`, std unbiased: the reference's LayerNorm."""

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


def _linear_default_bias(bias: torch.Tensor, fan_in: int) -> None:
    bound = 1 / math.sqrt(fan_in)
    nn.init.uniform_(bias, -bound, bound)


def reference_init(block: "EncoderBlockStage") -> None:
    """Xavier-uniform on every matrix, one per projection; `nn.Linear`'s bias init everywhere."""
    attention = block.attention
    d = attention.embed_dim
    with torch.no_grad():
        for projection in attention.in_proj_weight.split(d):  # q, k, v: three d x d matrices
            nn.init.xavier_uniform_(projection)
        _linear_default_bias(attention.in_proj_bias, d)
        nn.init.xavier_uniform_(attention.out_proj.weight)
        _linear_default_bias(attention.out_proj.bias, d)
    for linear in (block.feed_forward[0], block.feed_forward[3]):
        assert isinstance(linear, nn.Linear)
        nn.init.xavier_uniform_(linear.weight)  # its bias keeps nn.Linear's init


class EncoderBlockStage(nn.Module):
    """The reference's encoder block over a (states, mask) payload (module docstring)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = ReferenceLayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.feed_forward_norm = ReferenceLayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = ReferenceLayerNorm(d_model)
        reference_init(self)

    def forward(self, payload: tuple) -> tuple:
        x, mask = payload[0], payload[1]
        padding = ~mask
        # A row with no real token would mask every key, and softmax over
        # nothing is NaN; let such a row attend to its first position instead.
        # (Its features are still zeros: masked_mean_tokens counts real tokens.)
        padding[:, 0] &= mask.any(dim=1)
        h = self.attention_norm(x)
        x = x + self.dropout(self.attention(h, h, h, key_padding_mask=padding, need_weights=False)[0])
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return self.norm(x), mask
