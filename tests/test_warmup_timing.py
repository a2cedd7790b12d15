"""A sampled cell's step time is a pipeline's steady state, not the drain of a warm-up backlog.

A downstream device that is slow on its first batch (one-time costs) lets its
upstream run ahead by the queue's depth; timing right after the warm-up
batches then counts that backlog leaving at the downstream device's own pace,
faster than the pipeline's bottleneck.  The timed segment must start from a
drained pipeline (bench/cell/timing.py `WarmupSplit`).

Stage times are sleeps, so load can only lengthen the gaps: the lower bound
asserted here cannot fail on a busy machine.
"""
import time

import pytest
import torch

from bench.cell.timing import step_stats, time_after_warmup, warmup_split
from bench.execution import resolve_devices, run_pipelined


class _SleepStep:
    """A stage step that takes `seconds` (plus `first_extra` on its first batch ever) and passes x on."""

    device = torch.device("cpu")

    def __init__(self, seconds: float, first_extra: float = 0.0) -> None:
        self.seconds, self.first_extra, self.calls = seconds, first_extra, 0

    def accept(self, x, y, chunk, chunks):
        time.sleep(self.seconds + (self.first_extra if self.calls == 0 else 0.0))
        self.calls += 1
        return x, torch.tensor(0.0)


def _batches(n):
    return [(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)) for _ in range(n)]


def test_timed_steps_after_a_drained_warmup_are_the_bottleneck_stage():
    bottleneck = 0.04
    # stage 1 is faster in steady state (30 ms) but pays 400 ms on its first batch
    steps = [_SleepStep(bottleneck), _SleepStep(0.03, first_extra=0.4)]
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    record = time_after_warmup(lambda b, _count, w: run_pipelined(steps, [1, 1], devices, b, w, queue_depth=2),
                               _batches(2 + 10), warmup_steps=2, steps=10)
    stats = step_stats(record)
    assert len(stats.step_times_s) == 10
    assert stats.median_s >= 0.9 * bottleneck, stats.step_times_s
    assert steps[1].calls == 12  # every batch trained: 1 drained warm-up, 1 fill, 10 timed


def test_warmup_split():
    assert (warmup_split(1).drained, warmup_split(1).fill) == (0, 1)
    assert (warmup_split(5).drained, warmup_split(5).fill) == (4, 1)
    with pytest.raises(ValueError, match="at least 1"):
        warmup_split(0)
