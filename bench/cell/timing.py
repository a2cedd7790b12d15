"""From the completion timestamps of a run to the step times a table reports.

Why gaps between completions: in a pipeline the gap between two batches leaving
the last stage is the steady-state time per batch (1 / throughput), which is
what an epoch is made of; for a sequential run it is simply each step's duration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, TypeVar

from bench.execution.record import RunRecord

__all__ = ["StepStats", "step_stats", "WarmupSplit", "warmup_split", "time_after_warmup"]

T = TypeVar("T")


@dataclass(frozen=True)
class WarmupSplit:
    """How a sampled cell's `warmup_steps` are run: most in a segment of their own, one at the timed segment's head.

    Why not all of them at the head of the timed run: a pipeline's first batch
    pays one-time costs (allocator, kernel selection) on every device, and a
    downstream device that is slow on it builds a backlog of batches its
    upstream has already handed on.  Draining that backlog inside the timed
    window produces completions faster than the pipeline's steady state (one
    batch per slowest-device step): measured here, SCPL on 2 CPU devices timed
    130 ms per step over 8 steps after 2 warm-up batches, against 200 ms over
    62 steps and 203 ms per step in its training run.  So the warm-up batches but
    one run first and the pipeline drains; the timed segment then starts from an
    empty pipeline whose first batch (the fill, `fill` = 1) is excluded, and every
    gap after it is a steady-state step.
    """

    drained: int  # warm-up batches run, and drained, before the timed segment
    fill: int  # untimed batches at the timed segment's head (its `warmup_steps`)


def warmup_split(warmup_steps: int) -> WarmupSplit:
    """`warmup_steps` (>= 1) as a drained segment and the timed segment's one fill batch."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be at least 1 (the timed segment's fill batch), got {warmup_steps}")
    return WarmupSplit(drained=warmup_steps - 1, fill=1)


@dataclass(frozen=True)
class StepStats:
    step_times_s: list[float]
    median_s: float
    p10_s: float
    p90_s: float
    timed_total_s: float


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def step_stats(record: RunRecord) -> StepStats:
    """Per-step times = gaps between successive batch completions after warm-up.

    In a pipeline the gap between completions is the steady-state time per
    batch (1 / throughput), which is what a training epoch is made of; for a
    sequential run it is simply each step's duration.
    """
    w = record.warmup_steps
    times = record.completion_times
    if len(times) <= w:
        raise ValueError(f"need more than {w} batches to time anything after warm-up")
    previous = times[w - 1] if w > 0 else record.start_time
    gaps = []
    for t in times[w:]:
        gaps.append(t - previous)
        previous = t
    ordered = sorted(gaps)
    return StepStats(gaps, _quantile(ordered, 0.5), _quantile(ordered, 0.1), _quantile(ordered, 0.9), sum(gaps))


def time_after_warmup(run: Callable[[Optional[Sequence], int, int], T], batches: Optional[Sequence],
                      warmup_steps: int, steps: int) -> T:
    """`run(batches, count, warmup)` on the warm-up but one (drained), then on the fill batch and `steps` more.

    What the second call returns: its step times, counted after its one fill
    batch (`warmup`), are steady-state gaps (see `WarmupSplit`).  `batches` is
    None on a rank that reads no data; its loop still runs `count` batches.
    Both executors in one process and a rank cell's loop time through it.
    """
    split = warmup_split(warmup_steps)

    def part(first: int, end: int) -> Optional[Sequence]:
        return None if batches is None else batches[first:end]

    if split.drained:
        run(part(0, split.drained), split.drained, 0)
    timed = split.fill + steps
    return run(part(split.drained, split.drained + timed), timed, split.fill)
