"""What a simulated schedule predicts: the step time as the harness measures it, and each device's idle share."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from .schedules import Schedule
from .simulator import TimedTask, simulate

__all__ = ["Outcome", "run_schedule"]


@dataclass(frozen=True)
class Outcome:
    """`step_s`: the median gap between batch completions after `warmup` batches (bench/cell/timing.py's rule).

    `bubble`: per device, the idle share of the timed window (from the warm-up's
    last completion to the last batch's); `timed`: every task's start and end.
    """

    step_s: float
    bubble: tuple[float, ...]
    completions: tuple[float, ...]
    timed: dict[str, TimedTask]
    lanes: tuple[int, ...]

    @property
    def mean_bubble(self) -> float:
        return sum(self.bubble) / len(self.bubble) if self.bubble else 0.0


def run_schedule(schedule: Schedule, devices: int, warmup: int) -> Outcome:
    """Simulate `schedule` and measure it like the harness measures a cell."""
    timed = simulate(schedule.tasks)
    completions = [max(timed[name].end for name in names) for names in schedule.completions]
    warmup = min(warmup, len(completions) - 1)
    previous = completions[warmup - 1] if warmup > 0 else 0.0
    gaps = []
    for end in completions[warmup:]:
        gaps.append(end - previous)
        previous = end
    lo, hi = (completions[warmup - 1] if warmup > 0 else 0.0), completions[-1]
    busy = [0.0] * devices
    for item in timed.values():
        stage = item.task.stage
        if stage is None or not item.task.resource.startswith("device"):
            continue  # a transfer or a collective on a link: no device computes
        # by the stage's device, not the queue: on one thread (torchgpipe on CPU) each stage keeps its device
        busy[schedule.lanes[stage]] += max(0.0, min(item.end, hi) - max(item.start, lo))
    span = hi - lo
    bubble = tuple(max(0.0, 1.0 - b / span) if span > 0 else 0.0 for b in busy)
    return Outcome(statistics.median(gaps), bubble, tuple(completions), timed, tuple(schedule.lanes))
