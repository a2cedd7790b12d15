"""Where one rank of a distributed cell stands: its number, the world, its device, the stages it owns.

A distributed cell (DDP, torch.distributed GPipe, decoupled stages with
`executor: processes`) runs as one job of N rank processes that live for the
whole cell; every phase that runs inside a rank (training, evaluation,
checkpoints, the profiled run) takes this context rather than re-deriving it
from the environment.  Two layouts exist:

- a pipeline (decoupled stages, torch.distributed GPipe): rank r owns the
  contiguous stage group `groups[r]`; inputs enter at rank 0 and outputs
  leave at the last rank;
- replicas (DDP): every rank owns every stage and reads its own shard of each
  global batch (`replica` is True; `groups[r]` is every stage).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["RankContext", "pipeline_context", "replica_context"]


@dataclass(frozen=True)
class RankContext:
    rank: int
    world: int
    device: torch.device
    groups: tuple[tuple[int, ...], ...]  # the stage indices each rank owns, by rank
    replica: bool = False  # DDP: every rank holds the whole network

    @property
    def first(self) -> bool:
        return self.rank == 0

    @property
    def last(self) -> bool:
        return self.rank == self.world - 1

    @property
    def stages(self) -> tuple[int, ...]:
        """The stages this rank owns."""
        return self.groups[self.rank]


def pipeline_context(rank: int, world: int, device: torch.device, balance: Sequence[int]) -> RankContext:
    """Rank `rank` of a pipeline whose rank r owns `balance[r]` consecutive stages."""
    if len(balance) != world:
        raise ValueError(f"balance {list(balance)} names {len(balance)} devices but {world} ranks run")
    groups, first = [], 0
    for count in balance:
        groups.append(tuple(range(first, first + count)))
        first += count
    return RankContext(rank, world, device, tuple(groups))


def replica_context(rank: int, world: int, device: torch.device, num_stages: int) -> RankContext:
    """Rank `rank` of `world` data-parallel replicas of a `num_stages`-stage network."""
    every = tuple(range(num_stages))
    return RankContext(rank, world, device, tuple(every for _ in range(world)), replica=True)
