"""The one shape every model takes: ordered stages, a reducer per stage, a head.

Why: every training method in this harness (BP, GPipe, SCPL, AL, ...) must train
*the same effective network*. A `StagedModel` is that network cut at the
component boundaries of the papers; BP sees it as one `nn.Sequential`, decoupled
methods see the stages one by one, and local losses see each stage's output
through its *reducer* (the vector a local loss or an exit classifier consumes).

A stage's input and output are a *payload*: a tensor, or a tuple of tensors for
text models (hidden states, the padding mask, LSTM states).  `detach_payload`
and `payload_to` handle both so executors never need to know which.

Batch dimension of a text payload (states (B, L, D), mask (B, L), *rnn): the
first two entries are batch-first; every later entry is an RNN state in
PyTorch's (layers * directions, B, H) layout, batch on dim 1, or None (no
state yet).  Micro-batching methods split and join payloads with
`split_payload` / `cat_payloads`; pipeline libraries, which split only tuples
of batch-first tensors on dim 0, get `to_batch_first` / `from_batch_first`.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

__all__ = [
    "Payload", "StagedModel", "detach_payload", "payload_to", "count_parameters",
    "split_payload", "cat_payloads", "to_batch_first", "from_batch_first",
]

Payload = Union[torch.Tensor, tuple]
RNN_STATES_FROM = 2  # text payload entries from this index on are (layers * directions, B, H) RNN states


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


def _batch_dim(index: int) -> int:
    return 0 if index < RNN_STATES_FROM else 1


def split_payload(payload: Payload, chunks: int) -> list[Payload]:
    """Micro-batches of a payload: every entry chunked along its own batch dimension."""
    if isinstance(payload, torch.Tensor):
        return list(payload.chunk(chunks))
    parts = [p.chunk(chunks, dim=_batch_dim(i)) if p is not None else None for i, p in enumerate(payload)]
    n = len(next(p for p in parts if p is not None))
    return [tuple(p[c] if p is not None else None for p in parts) for c in range(n)]


def cat_payloads(payloads: Sequence[Payload]) -> Payload:
    """Join micro-batch payloads back into one batch (the inverse of `split_payload`)."""
    if isinstance(payloads[0], torch.Tensor):
        return torch.cat([p for p in payloads if isinstance(p, torch.Tensor)])
    return tuple(
        torch.cat([p[i] for p in payloads], dim=_batch_dim(i)) if first is not None else None
        for i, first in enumerate(payloads[0])
    )


def to_batch_first(payload: Payload) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A payload as pipeline libraries take it: a tensor, or a tuple of tensors each batch-first.

    RNN states are transposed to (B, layers * directions, H); a missing state
    (None) becomes an empty (B, 0) bool tensor, so every entry splits on dim 0
    and the placeholder asks for no gradient.
    """
    if isinstance(payload, torch.Tensor):
        return payload
    batch = payload[0].shape[0]
    return tuple(
        torch.empty(batch, 0, dtype=torch.bool, device=payload[0].device) if p is None
        else p if _batch_dim(i) == 0 else p.transpose(0, 1).contiguous()
        for i, p in enumerate(payload)
    )


def from_batch_first(tensors: Union[torch.Tensor, tuple[torch.Tensor, ...]]) -> Payload:
    """The inverse of `to_batch_first`: a tensor stays one; a tuple is a text payload again."""
    if isinstance(tensors, torch.Tensor):
        return tensors
    return tuple(
        t if _batch_dim(i) == 0
        else None if t.dim() == 2 and t.shape[1] == 0
        else t.transpose(0, 1).contiguous()
        for i, t in enumerate(tensors)
    )


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
        name: the registry name it was built under (methods with per-model reference sizes read it).
    """

    name: str = ""

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
