"""Reducers: the vector a local loss or exit sees from a stage's output payload.

Why plain module-level functions: a `StagedModel` is pickled into worker
processes and deep-copied for profiling, and lambdas or closures would break
pickling.  Each reducer takes a payload and returns a (batch, features) tensor.

Text payloads are tuples whose first two entries are the token states
(B, L, D) and the padding mask (B, L), True where a real token is.
"""
from __future__ import annotations

from typing import Callable

import torch

from .staged import Payload

__all__ = ["flatten_features", "mean_tokens", "masked_mean_tokens", "lstm_final_state", "EMBEDDING_FEATURES",
           "embedding_feature_reducer"]


def flatten_features(payload: Payload) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*H*W): what the papers' CNN local losses consume."""
    assert isinstance(payload, torch.Tensor), "CNN stages pass one feature map"
    return torch.flatten(payload, 1)


def mean_tokens(payload: Payload) -> torch.Tensor:
    """Mean over all L positions, padding included (the reference's embedding-stage feature)."""
    return payload[0].mean(dim=1)


def masked_mean_tokens(payload: Payload) -> torch.Tensor:
    """Mean over real tokens only; an all-padding row gives zeros, not NaN (count clamped to 1)."""
    x, mask = payload[0], payload[1]
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


EMBEDDING_FEATURES = ("mean", "masked_mean")


def embedding_feature_reducer(name: str) -> Callable[[Payload], torch.Tensor]:
    """The embedding stage's reducer: "mean" over every position, pads included, as the
    reference (`x.mean(1)`, DASCPL `model/nlp_single.py:40-41`, `model/nlp_multi.py:425`),
    or "masked_mean" over real tokens only."""
    if name not in EMBEDDING_FEATURES:
        raise ValueError(f"embedding_feature must be one of {list(EMBEDDING_FEATURES)}, got {name!r}")
    return mean_tokens if name == "mean" else masked_mean_tokens


def lstm_final_state(payload: Payload) -> torch.Tensor:
    """(h_fwd + h_bwd) / 2 of a 1-layer bidirectional LSTM's final hidden state: (B, H)."""
    h_n = payload[2]
    return (h_n[0] + h_n[1]) / 2
