"""One device: every step runs in the calling thread, batch after batch.

Used for every method on 1 device and for coupled methods (BP as naive model
parallelism) on N devices, where the chain rule leaves nothing to overlap.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from .devices import DeviceSet, synchronize
from .record import RunRecord, check_finite

if TYPE_CHECKING:
    from methods.base import Method

__all__ = ["run_sequential"]


def run_sequential(method: Method, batches: Iterable, devices: DeviceSet, warmup_steps: int,
                   on_batch_done: Optional[Callable[[int], None]] = None) -> RunRecord:
    """Train on `batches` in order; stage busy times are kept for decoupled methods.

    `on_batch_done(i)` runs after batch i completed (the profiler's step boundary).
    """
    steps = method.stage_steps() if method.decoupled else None
    stage_busy = [0.0] * (len(steps) if steps else 0)
    completions: list[float] = []
    losses: list[float] = []
    intervals: list[tuple[int, int, float, float]] = []
    per_stage: list[list[float]] = [[] for _ in steps] if steps else []
    synchronize(devices)
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if steps is None:
            loss = method.train_step(x, y)
        else:
            loss = 0.0
            for k, step in enumerate(steps):
                t0 = time.perf_counter()
                x, stage_loss = step(x, y)
                stage_loss = float(stage_loss)  # waits for the stage's device
                t1 = time.perf_counter()
                intervals.append((k, i, t0, t1))
                if i >= warmup_steps:
                    stage_busy[k] += t1 - t0
                check_finite(stage_loss, f"stage {k}", i)
                per_stage[k].append(stage_loss)
                loss += stage_loss
        check_finite(loss, method.name, i)
        synchronize(devices)
        completions.append(time.perf_counter())
        losses.append(loss)
        if on_batch_done is not None:
            on_batch_done(i)
    busy_total = completions[-1] - (completions[warmup_steps - 1] if warmup_steps else start)
    return RunRecord(
        start_time=start,
        completion_times=completions,
        losses=losses,
        warmup_steps=warmup_steps,
        stage_busy_s=stage_busy,
        device_busy_s=[busy_total],
        stage_intervals=intervals,
        stage_losses=per_stage,
    )
