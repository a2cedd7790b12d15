"""What one stage costs on one device: forward, loss, backward and update seconds per batch.

`StageCosts` is one batch size's costs (from one one-device cell, `inputs.py`);
`CostCurve` holds several batch sizes of one network and answers for any batch
(a micro-batch of GPipe, a replica's share of DDP) by interpolating linearly
between measured sizes -- small batches cost more per sample, which a
proportional rule would miss -- and proportionally outside them, except the
update, which depends on the parameters only.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

__all__ = ["StageCosts", "CostCurve"]


@dataclass(frozen=True)
class StageCosts:
    """Per stage (index k), seconds for one batch of `batch` samples."""

    batch: int
    forward: tuple[float, ...]
    loss: tuple[float, ...]
    backward: tuple[float, ...]
    update: tuple[float, ...]

    @property
    def num_stages(self) -> int:
        return len(self.forward)

    def stage_total(self, k: int) -> float:
        return self.forward[k] + self.loss[k] + self.backward[k] + self.update[k]

    @property
    def total(self) -> float:
        return sum(self.stage_total(k) for k in range(self.num_stages))

    def scaled(self, batch: int) -> "StageCosts":
        """Proportional to the batch, update unchanged (outside the measured range)."""
        r = batch / self.batch
        return StageCosts(batch, tuple(f * r for f in self.forward), tuple(v * r for v in self.loss),
                          tuple(b * r for b in self.backward), self.update)

    @staticmethod
    def uniform(num_stages: int, forward: float, backward: float = 0.0, loss: float = 0.0,
                update: float = 0.0, batch: int = 1) -> "StageCosts":
        """Equal stages (what hand-worked schedules assume)."""
        n = num_stages
        return StageCosts(batch, (forward,) * n, (loss,) * n, (backward,) * n, (update,) * n)


def _mix(a: Sequence[float], b: Sequence[float], w: float) -> tuple[float, ...]:
    return tuple((1 - w) * x + w * y for x, y in zip(a, b))


@dataclass(frozen=True)
class CostCurve:
    """One network's stage costs at several batch sizes (sorted, distinct)."""

    points: tuple[StageCosts, ...]
    source: str = ""  # the cells they come from, for the table's notes

    @property
    def num_stages(self) -> int:
        return self.points[0].num_stages

    def at(self, batch: int) -> StageCosts:
        """The costs of a batch of `batch` samples."""
        sizes = [p.batch for p in self.points]
        i = bisect.bisect_left(sizes, batch)
        if i < len(sizes) and sizes[i] == batch:
            return self.points[i]
        if i == 0:
            return self.points[0].scaled(batch)
        if i == len(sizes):
            return self.points[-1].scaled(batch)
        lo, hi = self.points[i - 1], self.points[i]
        w = (batch - lo.batch) / (hi.batch - lo.batch)
        return StageCosts(batch, _mix(lo.forward, hi.forward, w), _mix(lo.loss, hi.loss, w),
                          _mix(lo.backward, hi.backward, w), _mix(lo.update, hi.update, w))
