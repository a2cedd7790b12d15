"""BP's network as one `nn.Sequential`: the stages, then the head on the reduced output.

GPipe (both backends) and DDP partition or replicate exactly this module, so
they train the same effective network as every other method.  Pipeline
libraries split only tensors (or tuples of tensors) along dim 0, so GPipe gets
`as_pipeline`: the same layers, each wrapped to take and return a payload in
`to_batch_first` form (text payloads carry LSTM states with the batch on dim 1
and None before the first LSTM).
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

from models import StagedModel
from models.staged import from_batch_first, to_batch_first

__all__ = ["ReducedHead", "BatchFirstLayer", "PipelineSequential", "as_sequential", "as_pipeline"]

BatchFirst = Union[torch.Tensor, tuple[torch.Tensor, ...]]


class ReducedHead(nn.Module):
    """The head applied to the last stage's reduced output, as one layer."""

    def __init__(self, reducer, head: nn.Module):
        super().__init__()
        self.reducer = reducer
        self.head = head

    def forward(self, x):
        return self.head(self.reducer(x))


class BatchFirstLayer(nn.Module):
    """A stage (or the head) between batch-first payloads: what a pipeline library can split."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: BatchFirst) -> BatchFirst:
        return to_batch_first(self.layer(from_batch_first(x)))


class PipelineSequential(nn.Sequential):
    """An `nn.Sequential` that also takes a tuple payload as separate arguments.

    torch.distributed.pipelining calls a stage module with `*args`; torchgpipe
    with one tensor or tuple.
    """

    def forward(self, *inputs: torch.Tensor) -> BatchFirst:
        x = inputs[0] if len(inputs) == 1 else inputs
        for layer in self:
            x = layer(x)
        return x


def as_sequential(model: StagedModel) -> nn.Sequential:
    """stages[0], ..., stages[K-1], ReducedHead: K + 1 layers sharing the model's parameters."""
    return nn.Sequential(*model.stages, ReducedHead(model.reducers[-1], model.head))


def as_pipeline(model: StagedModel) -> PipelineSequential:
    """`as_sequential` with every layer between batch-first payloads (vision: the same maths, unwrapped data)."""
    return PipelineSequential(*[BatchFirstLayer(layer) for layer in as_sequential(model)])
