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
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch.profiler import record_function

from models import payload_to

from .devices import DeviceSet
from .record import RunRecord, check_finite
from .threads import use_threads

__all__ = ["run_pipelined"]

_POLL_S = 0.05
_DONE = object()


class _Stopped(Exception):
    """Another worker failed; this one stops quietly."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue


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
    groups, first = [], 0
    for count in balance:
        groups.append(list(range(first, first + count)))
        first += count
    chunks = micro_batches  # each batch is fed as this many micro-batches (Method.micro_batches)
    queues: list[queue.Queue] = [queue.Queue(maxsize=queue_depth * chunks) for _ in range(len(groups) + 1)]
    stop = threading.Event()
    errors: list[BaseException] = []
    stage_busy = [0.0] * len(steps)
    device_busy = [0.0] * len(groups)
    # by batch index (dict item assignment is atomic under the GIL): the count is known once fed
    stage_losses: list[dict[int, float]] = [{} for _ in steps]
    completions: dict[int, float] = {}
    fed = [0]
    intervals: list[tuple[int, int, float, float]] = []  # list.append is atomic under the GIL

    def worker(d: int) -> None:
        device = devices.devices[d]
        use_threads(devices.threads_per_device)  # the budget is per thread under OpenMP
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            while True:
                item = _get(queues[d], stop)
                if item is _DONE:
                    _put(queues[d + 1], _DONE, stop)
                    return
                i, c, x, y = item
                group_start = time.perf_counter()
                if d > 0:  # the hand-over between devices, labelled so traces show copies apart from work
                    k = groups[d][0]
                    with record_function(f"copy stage{k - 1}->stage{k}"):
                        x, y = payload_to(x, steps[k].device), y.to(steps[k].device)
                for k in groups[d]:
                    t0 = time.perf_counter()
                    x, loss = steps[k].accept(x, y, c, chunks)
                    if loss is not None:
                        loss = float(loss)  # waits for this device: output is ready to hand over
                        check_finite(loss, f"stage {k}", i)
                        stage_losses[k][i] = loss
                    t1 = time.perf_counter()
                    intervals.append((k, i, t0, t1))
                    if i >= warmup_steps:
                        stage_busy[k] += t1 - t0
                now = time.perf_counter()
                if i >= warmup_steps:
                    device_busy[d] += now - group_start
                if d == len(groups) - 1 and c == chunks - 1:
                    completions[i] = now
                _put(queues[d + 1], (i, c, x, y), stop)
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
        try:
            for i, (x, y) in enumerate(batches):
                fed[0] = i + 1
                for c, (xc, yc) in enumerate(zip(x.chunk(chunks), y.chunk(chunks)) if chunks > 1 else [(x, y)]):
                    _put(queues[0], (i, c, xc, yc), stop)
            _put(queues[0], _DONE, stop)
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
        while True:
            item = _get(queues[-1], stop)
            if item is _DONE:
                break
            if on_batch_done is not None and item[1] == chunks - 1:
                on_batch_done(item[0])
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
    return RunRecord(
        start_time=start,
        completion_times=[completions[i] for i in range(fed[0])],
        losses=[sum(stage_losses[k].get(i, 0.0) for k in range(len(steps))) for i in range(fed[0])],
        warmup_steps=warmup_steps,
        stage_busy_s=stage_busy,
        device_busy_s=device_busy,
        stage_intervals=sorted(intervals, key=lambda iv: iv[2]),
        stage_losses=[[stage_losses[k].get(i, 0.0) for i in range(fed[0])] for k in range(len(steps))],
    )
