"""BP's network as one `nn.Sequential`: the stages, then the head on the reduced output.

GPipe (both backends) and DDP partition or replicate exactly this module, so
they train the same effective network as every other method.
"""
from __future__ import annotations

from torch import nn

from models import StagedModel

__all__ = ["ReducedHead", "as_sequential"]


class ReducedHead(nn.Module):
    """The head applied to the last stage's reduced output, as one layer."""

    def __init__(self, reducer, head: nn.Module):
        super().__init__()
        self.reducer = reducer
        self.head = head

    def forward(self, x):
        return self.head(self.reducer(x))


def as_sequential(model: StagedModel) -> nn.Sequential:
    """stages[0], ..., stages[K-1], ReducedHead: K + 1 layers sharing the model's parameters."""
    return nn.Sequential(*model.stages, ReducedHead(model.reducers[-1], model.head))
