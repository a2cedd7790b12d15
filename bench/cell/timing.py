"""From the completion timestamps of a run to the step times a table reports.

Why gaps between completions: in a pipeline the gap between two batches leaving
the last stage is the steady-state time per batch (1 / throughput), which is
what an epoch is made of; for a sequential run it is simply each step's duration.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.execution.record import RunRecord

__all__ = ["StepStats", "step_stats"]


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
