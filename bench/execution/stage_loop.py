"""One device's stage loop, shared by the thread and the process executor of decoupled stages.

As in torch.distributed.pipelining, three things are kept apart: the stage
(`StageStep.accept`: what one stage computes on one micro-batch), the schedule
(this loop: a device takes the next micro-batch, runs its contiguous group of
stage steps in order, hands the output on; decoupled stages need no backward
schedule across devices) and the transport (how a micro-batch reaches the
device and leaves it).  `pipeline.run_pipelined` plugs bounded `queue.Queue`s
between threads into this loop; `rank_loops.StageGroupLoop` plugs `isend`/`irecv`
between processes (`p2p`).  Busy times, intervals, losses and completion
times are therefore measured by one piece of code for both executors, and
`record.record_from_groups` turns what the devices measured into the
`RunRecord`.

What counts as work: the hand-over onto this device (`Inbound.take`, labelled
`copy stage{j}->stage{k}` in traces) and the stage steps; waiting for the
previous device (`Inbound.wait`) and for room downstream (`Outbound.put`) do not.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

import torch
from torch.profiler import record_function

from .devices import synchronize_compute
from .record import GroupRecord, check_finite

if TYPE_CHECKING:
    from methods.base import StageStep
    from models.staged import Payload

__all__ = ["Inbound", "Outbound", "run_stage_group", "stage_groups"]


class Inbound(Protocol):
    """Where a device's micro-batches come from, in order (the data, or the previous device)."""

    def wait(self) -> Optional[object]:
        """Block until the next micro-batch has arrived (idle time); None once the input has ended."""

    def take(self, arrival: object) -> tuple[Payload, torch.Tensor]:
        """The arrived micro-batch's (payload, labels) on this device: the hand-over, timed as work."""


class Outbound(Protocol):
    """Where a device's outputs go, in order (the next device, or the caller)."""

    def put(self, x: Payload, y: torch.Tensor) -> None:
        """Hand one micro-batch's output and labels on (may wait for room: at most `queue_depth` batches ahead)."""

    def close(self) -> None:
        """The input has ended: tell the receiving side, and wait until what was put has left."""


def stage_groups(balance: Sequence[int]) -> list[list[int]]:
    """The stage indices each device owns: contiguous groups of `balance[d]` stages."""
    groups, first = [], 0
    for count in balance:
        groups.append(list(range(first, first + count)))
        first += count
    return groups


def run_stage_group(steps: Sequence[StageStep], stages: Sequence[int], device: torch.device, inbound: Inbound,
                    outbound: Outbound, *, chunks: int, warmup_steps: int, last: bool,
                    on_batch_done: Optional[Callable[[int], None]] = None) -> GroupRecord:
    """Train `steps[k]` for k in `stages` on every micro-batch from `inbound`; outputs go to `outbound`.

    Each batch arrives as `chunks` micro-batches (`Method.micro_batches`), so
    micro-batch m is chunk m % chunks of batch m // chunks: both transports keep
    the order.  A stage's loss counts once it returns one (its last chunk).
    The `last` group synchronises its device as a batch completes, so a
    completion time means the batch has left the pipeline.  `on_batch_done(i)`
    runs in this loop's thread once the group is done with batch i and has
    handed it on (a rank's profiler steps there).  Raises what a step
    raises (NonFiniteLossError names the stage); the transport's side stops the
    other devices.
    """
    record = GroupRecord(stages=list(stages), stage_losses={k: {} for k in stages},
                         stage_busy_s={k: 0.0 for k in stages})
    copy_label = f"copy stage{stages[0] - 1}->stage{stages[0]}" if stages[0] > 0 else None
    received = 0
    while True:
        arrival = inbound.wait()
        if arrival is None:
            break
        i, c = divmod(received, chunks)
        received += 1
        group_start = time.perf_counter()
        if copy_label is None:
            x, y = inbound.take(arrival)
        else:  # labelled so traces show the hand-over between devices apart from work
            with record_function(copy_label):
                x, y = inbound.take(arrival)
        for k in stages:
            t0 = time.perf_counter()
            x, stage_loss = steps[k].accept(x, y, c, chunks)
            if stage_loss is not None:
                loss = float(stage_loss)  # waits for this device: the output is ready to hand over
                check_finite(loss, f"stage {k}", i)
                record.stage_losses[k][i] = loss
            t1 = time.perf_counter()
            record.intervals.append((k, i, t0, t1))
            if i >= warmup_steps:
                record.stage_busy_s[k] += t1 - t0
        batch_done = last and c == chunks - 1
        if batch_done:  # its compute stream only: not the next message's receive, posted already
            synchronize_compute(device)
        now = time.perf_counter()
        if i >= warmup_steps:
            record.device_busy_s += now - group_start
        if batch_done:
            record.completion_times.append(now)
        outbound.put(x, y)
        if on_batch_done is not None and c == chunks - 1:
            on_batch_done(i)
    outbound.close()
    return record
