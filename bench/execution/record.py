"""What an executor hands back: when each batch finished, and who was busy for how long."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["RunRecord", "NonFiniteLossError", "check_finite"]


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
