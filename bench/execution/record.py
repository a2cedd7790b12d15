"""What an executor hands back: when each batch finished, and who was busy for how long."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["RunRecord", "GroupRecord", "NonFiniteLossError", "check_finite", "record_from_groups"]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the cell is marked failed, not silently kept."""


def check_finite(loss: float, where: str, batch: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss} at {where}, batch {batch}")


@dataclass
class RunRecord:
    """Timestamps (perf_counter seconds) and busy times of one training run.

    completion_times[i] is when batch i left the last stage with every device it
    used synchronised; start_time is just before the first batch was handed over.
    stage_busy_s / device_busy_s sum the timed (post warm-up) batches only.
    """

    start_time: float
    completion_times: list[float]
    losses: list[float]
    warmup_steps: int
    stage_busy_s: list[float] = field(default_factory=list)
    device_busy_s: list[float] = field(default_factory=list)
    # (stage, batch, start, end) of every stage step: shows what overlapped with what
    stage_intervals: list[tuple[int, int, float, float]] = field(default_factory=list)
    # stage_losses[k][i]: stage k's local loss on batch i (decoupled methods; empty otherwise)
    stage_losses: list[list[float]] = field(default_factory=list)


@dataclass
class GroupRecord:
    """What one device's stage loop measured (bench/execution/stage_loop.py), on that device's clock.

    Times are perf_counter seconds; a rank in another process sends them as
    offsets from its start (`shifted`), and the caller puts them on one clock.
    """

    stages: list[int]
    stage_losses: dict[int, dict[int, float]]  # stage -> batch -> that stage's loss on it
    stage_busy_s: dict[int, float]  # timed (post warm-up) batches only
    device_busy_s: float = 0.0
    intervals: list[tuple[int, int, float, float]] = field(default_factory=list)  # (stage, batch, start, end)
    completion_times: list[float] = field(default_factory=list)  # the last device's only

    def shifted(self, offset: float) -> GroupRecord:
        """The same record with every time moved by `offset` seconds (onto another clock)."""
        return GroupRecord(self.stages, self.stage_losses, self.stage_busy_s, self.device_busy_s,
                           [(k, i, a + offset, b + offset) for k, i, a, b in self.intervals],
                           [t + offset for t in self.completion_times])


def record_from_groups(groups: list[GroupRecord], start_time: float, warmup_steps: int) -> RunRecord:
    """The `RunRecord` of a pipelined run from its devices' records (in device order, on one clock).

    A batch's loss is the sum of its stages' local losses; the batches are those
    that left the last device.
    """
    num_stages = sum(len(g.stages) for g in groups)
    n = len(groups[-1].completion_times)
    stage_losses: dict[int, dict[int, float]] = {}
    stage_busy = [0.0] * num_stages
    intervals: list[tuple[int, int, float, float]] = []
    for g in groups:
        stage_losses.update(g.stage_losses)
        for k, busy in g.stage_busy_s.items():
            stage_busy[k] = busy
        intervals += g.intervals
    per_stage = [[stage_losses[k].get(i, 0.0) for i in range(n)] for k in range(num_stages)]
    return RunRecord(
        start_time=start_time,
        completion_times=list(groups[-1].completion_times),
        losses=[sum(per_stage[k][i] for k in range(num_stages)) for i in range(n)],
        warmup_steps=warmup_steps,
        stage_busy_s=stage_busy,
        device_busy_s=[g.device_busy_s for g in groups],
        stage_intervals=sorted(intervals, key=lambda iv: iv[2]),
        stage_losses=per_stage,
    )
