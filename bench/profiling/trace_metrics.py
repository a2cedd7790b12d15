"""Busy time, bubbles and overlap of the devices, measured from a trace.

Why from the trace and not the executors' own clocks: the trace sees every
thread (and on CUDA the GPU streams), so the same numbers come out for every
method and backend, and they can be checked against the picture.

Definitions, over a window W (the recorded iterations' span):
- busy(lane)       = length of the union of the lane's phase intervals inside W;
- bubble_fraction  = 1 - sum(busy) / (lanes x |W|): the share of device time idle;
- overlap_fraction = |{t in W : >= 2 lanes busy}| / |W|.
A lane is a device: stages placed on one device share it (give `lanes`).  A
label that names no stage (BP's `bp/backward`, one autograd call through every
stage) counts as exactly one busy device: in a coupled backward only one
device works at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from bench.profiling.trace_events import Trace

__all__ = ["TraceSummary", "summarize_trace", "stage_lanes", "union_length"]

Interval = tuple[float, float]


@dataclass(frozen=True)
class TraceSummary:
    stage_busy_s: list[float]  # per stage, inside the window
    lane_busy_s: list[float]  # per device (lane), inside the window; the unstaged lane last if any
    span_s: float  # |W|
    bubble_fraction: float
    overlap_fraction: float


def stage_lanes(balance: Sequence[int]) -> list[int]:
    """lanes[k] = the device of stage k, from a balance (stages per device)."""
    return [d for d, count in enumerate(balance) for _ in range(count)]


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def union_length(intervals: list[Interval]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    return sum(b - a for a, b in _merge(intervals))


def _clip(intervals: list[Interval], window: Interval) -> list[Interval]:
    lo, hi = window
    return [(max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo)]


def _time_with_at_least(lanes: list[list[Interval]], count: int) -> float:
    """Time during which at least `count` lanes are busy (each lane already merged)."""
    edges = sorted([(a, 1) for lane in lanes for a, _ in lane] + [(b, -1) for lane in lanes for _, b in lane],
                   key=lambda e: (e[0], e[1]))  # at a shared edge, ends before starts: touching is not overlap
    total, busy, last = 0.0, 0, None
    for t, delta in edges:
        if last is not None and busy >= count:
            total += t - last
        busy += delta
        last = t
    return total


def summarize_trace(trace: Trace, lanes: Optional[Sequence[int]] = None,
                    window: Optional[Interval] = None) -> TraceSummary:
    """Per-stage busy time, bubble and overlap fractions of the trace inside `window` (µs).

    `lanes[k]` is stage k's device (see `stage_lanes`); without it every stage is
    its own lane.  The window defaults to the recorded iterations' extent.
    """
    lo, hi = window if window is not None else trace.extent()
    span = hi - lo
    if span <= 0:
        raise ValueError(f"empty window [{lo}, {hi}] µs")
    stages = [e.stage for e in trace.phases if e.stage is not None]
    num_stages = max([k + 1 for k in stages] + [len(lanes) if lanes is not None else 0])
    lane_of = list(lanes) if lanes is not None else list(range(num_stages))
    if len(lane_of) < num_stages:
        raise ValueError(f"lanes {lane_of} name fewer stages than the trace has ({num_stages})")
    num_lanes = max(lane_of) + 1 if lane_of else 0

    per_stage: list[list[Interval]] = [[] for _ in range(num_stages)]
    per_lane: list[list[Interval]] = [[] for _ in range(num_lanes)]
    unstaged: list[Interval] = []
    for e in trace.phases:
        target = unstaged if e.stage is None else per_stage[e.stage]
        target.append((e.start_us, e.end_us))
        if e.stage is not None:
            per_lane[lane_of[e.stage]].append((e.start_us, e.end_us))
    merged_lanes = [_merge(_clip(iv, (lo, hi))) for iv in per_lane]
    if unstaged:
        merged_lanes.append(_merge(_clip(unstaged, (lo, hi))))
    lane_busy = [union_length(iv) for iv in merged_lanes]
    devices = max(num_lanes, 1)  # an unstaged lane is one of the devices, not an extra one
    bubble = 1.0 - sum(lane_busy) / (devices * span)
    overlap = _time_with_at_least(merged_lanes, 2) / span
    return TraceSummary(
        stage_busy_s=[union_length(_clip(iv, (lo, hi))) / 1e6 for iv in per_stage],
        lane_busy_s=[b / 1e6 for b in lane_busy],
        span_s=span / 1e6,
        bubble_fraction=max(0.0, bubble),
        overlap_fraction=overlap,
    )
