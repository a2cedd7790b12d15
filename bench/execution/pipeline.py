"""N devices, decoupled stages pipelined *across batches* through bounded queues.

Each device gets a worker thread that owns a contiguous group of stage steps.
While the worker of stage k+1 trains on batch t, the worker of stage k is
already on batch t+1: because a stage's input is detached, nothing waits for a
backward pass from later stages.  The references instead join all stage threads
after every batch (overlap inside one batch only); this is the schedule the
SCPL paper draws in its Figure 3.

The numbers equal the sequential run exactly: stage k sends batch t's output
computed *before* its own update on batch t, exactly as the sequential loop does,
and each stage sees its batches in the same order.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Optional, Sequence, cast

import torch

from models import payload_to
from models.staged import Payload

from .devices import DeviceSet
from .record import GroupRecord, RunRecord, record_from_groups
from .stage_loop import run_stage_group, stage_groups
from .threads import use_threads

__all__ = ["run_pipelined"]

_POLL_S = 0.05
_DONE = object()


class _Stopped(Exception):
    """Another worker failed; this one stops quietly."""


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue


class _QueueInbound:
    """A device's inbound transport: the bounded queue its predecessor (or the feeder) fills."""

    def __init__(self, q: queue.Queue, stop: threading.Event, device: Optional[torch.device]) -> None:
        self.q, self.stop, self.device = q, stop, device  # device None: the stage step moves the input itself

    def wait(self) -> Optional[object]:
        item = _get(self.q, self.stop)
        return None if item is _DONE else item

    def take(self, arrival: object) -> tuple[Payload, torch.Tensor]:
        x, y = cast(tuple[Payload, torch.Tensor], arrival)
        if self.device is None:
            return x, y
        return payload_to(x, self.device), y.to(self.device)


class _QueueOutbound:
    """A device's outbound transport: a bounded queue, so it runs at most `queue_depth` batches ahead."""

    def __init__(self, q: queue.Queue, stop: threading.Event) -> None:
        self.q, self.stop = q, stop

    def put(self, x: Payload, y: torch.Tensor) -> None:
        _put(self.q, (x, y), self.stop)

    def close(self) -> None:
        _put(self.q, _DONE, self.stop)


def run_pipelined(
    steps: Sequence,
    balance: Sequence[int],
    devices: DeviceSet,
    batches: Iterable,
    warmup_steps: int,
    queue_depth: int = 2,
    on_batch_done: Optional[Callable[[int], None]] = None,
    micro_batches: int = 1,
) -> RunRecord:
    """Run stage groups on their devices' workers; return when every batch has left the last stage.

    `on_batch_done(i)` is called in the calling thread as batch i leaves the
    last stage (the profiler's `step()` must be called from the thread that
    started it).  `batches` may be any iterable (a training run's stream of an
    epoch): the feeder thread pulls them one at a time, so nothing beyond the
    queues is held.
    """
    if sum(balance) != len(steps) or len(balance) != devices.count:
        raise ValueError(f"balance {list(balance)} does not split {len(steps)} stages over {devices.count} devices")
    groups = stage_groups(balance)
    chunks = micro_batches  # each batch is fed as this many micro-batches (Method.micro_batches)
    queues: list[queue.Queue] = [queue.Queue(maxsize=queue_depth * chunks) for _ in range(len(groups) + 1)]
    stop = threading.Event()
    errors: list[BaseException] = []
    records: list[Optional[GroupRecord]] = [None] * len(groups)

    def worker(d: int) -> None:
        device = devices.devices[d]
        use_threads(devices.threads_per_device)  # the budget is per thread under OpenMP
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # the first device's stage step moves the input itself; later ones are handed over (a labelled copy)
        inbound = _QueueInbound(queues[d], stop, None if d == 0 else steps[groups[d][0]].device)
        try:
            records[d] = run_stage_group(steps, groups[d], device, inbound, _QueueOutbound(queues[d + 1], stop),
                                         chunks=chunks, warmup_steps=warmup_steps, last=d == len(groups) - 1)
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            stop.set()

    # named "stage-worker-k (device)": profiled traces show these names (bench/profiling/thread_names.py)
    # (CPU workers by name, GPUs by index: their names are all alike)
    where = [name if devices.kind == "cpu" else str(dev) for name, dev in zip(devices.names, devices.devices)]
    threads = [threading.Thread(target=worker, args=(d,), name=f"stage-worker-{d} ({where[d]})", daemon=True)
               for d in range(len(groups))]
    for t in threads:
        t.start()

    def feed() -> None:
        feeder_out = _QueueOutbound(queues[0], stop)
        try:
            for x, y in batches:
                for xc, yc in zip(x.chunk(chunks), y.chunk(chunks)) if chunks > 1 else [(x, y)]:
                    feeder_out.put(xc, yc)
            feeder_out.close()
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - the data stream failed: re-raised in the caller's thread
            errors.append(exc)
            stop.set()

    # Feeding from its own thread lets this thread drain the last queue from the
    # start, so no bounded queue can fill up behind a feeder that waits on it.
    feeder = threading.Thread(target=feed, name="stage-feeder", daemon=True)
    start = time.perf_counter()
    feeder.start()
    try:
        drained = 0
        while _get(queues[-1], stop) is not _DONE:
            i, c = divmod(drained, chunks)
            drained += 1
            if on_batch_done is not None and c == chunks - 1:
                on_batch_done(i)
    except _Stopped:
        pass
    except BaseException:
        stop.set()  # the callback failed: release the workers, then re-raise
        raise
    finally:
        feeder.join()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return record_from_groups([r for r in records if r is not None], start, warmup_steps)
