"""The one shape every model takes: ordered stages, a reducer per stage, a head.

Why: every training method in this harness (BP, GPipe, SCPL, AL, ...) must train
*the same effective network*. A `StagedModel` is that network cut at the
component boundaries of the papers; BP sees it as one `nn.Sequential`, decoupled
methods see the stages one by one, and local losses see each stage's output
through its *reducer* (the vector a local loss or an exit classifier consumes).

A stage's input and output are a *payload*: a tensor, or a tuple of tensors for
text models (hidden states, the padding mask, LSTM states).  `detach_payload`
and `payload_to` handle both so executors never need to know which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import nn

__all__ = ["Payload", "StagedModel", "detach_payload", "payload_to", "count_parameters"]

Payload = Union[torch.Tensor, tuple]


def detach_payload(payload: Payload) -> Payload:
    """Cut the graph between stages: a decoupled stage must not send gradients back."""
    if isinstance(payload, torch.Tensor):
        return payload.detach()
    return tuple(detach_payload(p) if p is not None else None for p in payload)


def payload_to(payload: Payload, device: torch.device, non_blocking: bool = False) -> Payload:
    """Copy a payload to the device of the stage that consumes it."""
    if isinstance(payload, torch.Tensor):
        return payload.to(device, non_blocking=non_blocking)
    return tuple(payload_to(p, device, non_blocking) if p is not None else None for p in payload)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in a module."""
    return sum(p.numel() for p in module.parameters())


class StagedModel(nn.Module):
    """A network split into `len(stages)` stages, with a head after the last one.

    Attributes:
        stages: stage k maps payload r_{k-1} to payload r_k.
        reducers: reducers[k](r_k) -> (batch, feature_dims[k]) tensor that local
            losses and exits see (flatten for CNN blocks, pooled tokens for text).
        feature_dims: width of each reducer's output.
        head: classifier applied to reducers[-1](r_K); logits = head(reduce(r_K)).
        num_classes: output width of the head.
        modality: "vision" or "text" (selects projector/predictor defaults).
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        reducers: Sequence[Callable[[Payload], torch.Tensor]],
        feature_dims: Sequence[int],
        head: nn.Module,
        num_classes: int,
        modality: str,
    ) -> None:
        super().__init__()
        if not (len(stages) == len(reducers) == len(feature_dims)):
            raise ValueError("stages, reducers and feature_dims must have the same length")
        self.stages = nn.ModuleList(stages)
        self.reducers = list(reducers)
        self.feature_dims = list(feature_dims)
        self.head = head
        self.num_classes = num_classes
        self.modality = modality

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: Payload) -> torch.Tensor:
        """Plain end-to-end inference: all stages, then the head."""
        for stage in self.stages:
            x = stage(x)
        return self.head(self.reducers[-1](x))

    def reduce(self, k: int, payload: Payload) -> torch.Tensor:
        """The vector stage k's local loss sees."""
        return self.reducers[k](payload)
