"""One rank's training loop in a distributed cell: built once, run once per segment (an epoch, the timed steps).

A distributed cell (bench/cell/rank_phases.py) is N rank processes that live
for the whole cell; each holds one `RankLoop` for its whole life.  Two kinds:

- `StageGroupLoop`: decoupled stages with `executor: processes`.  Rank r owns
  the contiguous stage group `ctx.stages` and runs it through the stage loop
  the thread executor runs too (`stage_loop.run_stage_group`), with the p2p
  transport: rank 0 reads the batches (inputs and labels), every other rank
  receives its inputs and labels with the activations, and a segment ends with
  the p2p END message.
- `TrainerLoop`: rank methods (DDP, gpipe_dist): the method's own trainer
  (`RankMethod.rank_trainer`), one `step` per batch for a known number of
  steps; the ranks that read data are the trainer's to say (DDP: every rank,
  its slice of each global batch; gpipe_dist: rank 0).

Both call the hooks of `methods.rank_method.step_hooks()` with i once this
rank is done with batch i (the in-rank profiler, bench/profiling/rank_profile.py,
steps there).

`run` returns what this rank measured (a small dict: times as offsets from the
segment's start barrier, losses, busy times); rank 0 gathers them
(`dist.gather_object`) and `record` turns them into the `RunRecord` the
in-process executors return.  No parameter or batch crosses to the caller.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, cast

import torch
import torch.distributed as dist

from methods.base import Method
from methods.rank_method import RankMethod, step_hooks
from models import payload_to
from models.staged import Payload

from .devices import synchronize
from .p2p import P2PReceiver, P2PSender
from .rank_context import RankContext
from .record import GroupRecord, RunRecord, check_finite, record_from_groups
from .stage_loop import Inbound, Outbound, run_stage_group

__all__ = ["RankLoop", "StageGroupLoop", "TrainerLoop", "make_rank_loop", "barrier", "aligned_now", "shard_of",
           "Prefetch"]


def barrier(device: torch.device) -> None:
    """Every rank waits for the others (NCCL's barrier needs to know this rank's GPU)."""
    if device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()


def shard_of(batch: tuple, shard: Optional[tuple[int, int]]) -> tuple:
    """Rank r's contiguous slice of a global batch, `x.chunk(world)[r]` (the whole batch without a shard)."""
    if shard is None:
        return batch
    rank, world = shard
    x, y = batch
    return x.chunk(world)[rank], y.chunk(world)[rank]


class RankLoop(Protocol):
    """One rank's training, for the whole cell."""

    reads_data: bool  # whether this rank reads training batches
    shard: Optional[tuple[int, int]]  # (rank, world): it reads its slice of every global batch

    def run(self, batches: Optional[Iterable], steps: int, warmup_steps: int) -> dict:
        """Train on one segment (`steps` batches; `batches` on the ranks that read data); what it measured."""

    def record(self, gathered: list[dict], warmup_steps: int) -> RunRecord:
        """Rank 0: every rank's `run` result (by rank) as one `RunRecord` on rank 0's clock."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """This rank's optimizers (what lr schedulers step)."""

    def state_dict(self) -> dict:
        """This rank's training state (its checkpoint shard)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


class Prefetch:
    """Batches read ahead in a thread (at most `depth` waiting), so reading overlaps this rank's training.

    The rank's twin of the thread executor's feeder thread: a training run's
    ranks read their batches inside the measured epoch, and without it a rank
    would read each batch between two of its steps, in series with its work.
    Iterate it like the source; `close` waits for the thread to end.
    """

    _END = object()

    def __init__(self, source: Iterable, depth: int = 2) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._read, args=(iter(source),), name="rank-prefetch", daemon=True)
        self.thread.start()

    def _read(self, source: Iterator) -> None:
        try:
            for batch in source:
                self.queue.put(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the rank's thread
            self.error = exc
        self.queue.put(self._END)

    def __iter__(self) -> "Prefetch":
        return self

    def __next__(self) -> Any:
        item = self.queue.get()
        if item is self._END:
            self.queue.put(self._END)  # later calls end too
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        self.thread.join()


def aligned_now(device: torch.device) -> float:
    """This rank's clock once its device is synchronised and every rank has reached this point.

    Read at both ends of what is timed (a segment of steps, an epoch), so every
    rank's interval starts and ends together.
    """
    synchronize([device])
    barrier(device)
    return time.perf_counter()


# -- decoupled stages ------------------------------------------------------------------------------

class _BatchFeed:
    """Rank 0's `Inbound`: its batches, cut into micro-batches as they are read.

    On CUDA they are pinned, so the copy onto the device (the hand-over, timed as
    work) is asynchronous.
    """

    def __init__(self, batches: Iterable, chunks: int, device: torch.device) -> None:
        self.batches: Iterator = iter(batches)
        self.chunks, self.device = chunks, device
        self.parts: deque = deque()

    def wait(self) -> Optional[object]:
        if not self.parts:
            batch = next(self.batches, None)
            if batch is None:
                return None
            x, y = batch
            for xc, yc in zip(x.chunk(self.chunks), y.chunk(self.chunks)) if self.chunks > 1 else [(x, y)]:
                if self.device.type == "cuda":
                    xc, yc = _pin(xc), yc.pin_memory()
                self.parts.append((xc, yc))
        return self.parts.popleft()

    def take(self, arrival: object) -> tuple[Payload, torch.Tensor]:
        x, y = cast(tuple[Payload, torch.Tensor], arrival)
        return payload_to(x, self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _pin(payload: Payload) -> Payload:
    if isinstance(payload, torch.Tensor):
        return payload.pin_memory()
    return tuple(_pin(p) if p is not None else None for p in payload)


class _Nowhere:
    """The last rank's `Outbound`: its outputs have left the pipeline."""

    def put(self, x: Payload, y: torch.Tensor) -> None:
        pass

    def close(self) -> None:
        pass


def _hooked(hooks: list[Callable[[int], None]]) -> Optional[Callable[[int], None]]:
    """One callback calling every hook with the batch index (None without hooks)."""
    if not hooks:
        return None

    def each(i: int) -> None:
        for hook in hooks:
            hook(i)

    return each


class StageGroupLoop:
    """This rank's contiguous group of decoupled stage steps, placed on its device once."""

    shard: Optional[tuple[int, int]] = None

    def __init__(self, method: Method, ctx: RankContext, queue_depth: int) -> None:
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be at least 1, got {queue_depth}")
        self.ctx, self.queue_depth = ctx, queue_depth
        self.steps = method.stage_steps()
        if sum(len(g) for g in ctx.groups) != len(self.steps):
            raise ValueError(f"balance {[len(g) for g in ctx.groups]} does not split {len(self.steps)} stages")
        for k in ctx.stages:
            self.steps[k].place(ctx.device)
        self.chunks = int(method.micro_batches)
        self.reads_data = ctx.first

    def run(self, batches: Optional[Iterable], steps: int, warmup_steps: int) -> dict:
        ctx = self.ctx
        outbound: Outbound = _Nowhere() if ctx.last else P2PSender(ctx.rank + 1, self.queue_depth * self.chunks,
                                                                    ctx.device)
        start = aligned_now(ctx.device)
        # the receiver after the barrier: see P2PReceiver
        inbound: Inbound = (_BatchFeed(batches or [], self.chunks, ctx.device) if ctx.first
                            else P2PReceiver(ctx.rank - 1, ctx.device))
        record = run_stage_group(self.steps, ctx.stages, ctx.device, inbound, outbound, chunks=self.chunks,
                                 warmup_steps=warmup_steps, last=ctx.last, on_batch_done=_hooked(step_hooks()))
        return {"rank": ctx.rank, "start_time": start, "record": record.shifted(-start)}

    def record(self, gathered: list[dict], warmup_steps: int) -> RunRecord:
        """Times are offsets from each rank's start barrier; put on rank 0's clock."""
        start = gathered[0]["start_time"]
        groups: list[GroupRecord] = [r["record"].shifted(start) for r in gathered]
        return record_from_groups(groups, start, warmup_steps)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.steps[k].optimizer for k in self.ctx.stages]

    def state_dict(self) -> dict:
        return {k: {"step": self.steps[k].state_dict(), "optimizer": self.steps[k].optimizer.state_dict(),
                    "extra": self.steps[k].extra_state()} for k in self.ctx.stages}

    def load_state_dict(self, state: dict) -> None:
        for k in self.ctx.stages:
            self.steps[k].load_state_dict(state[k]["step"])
            self.steps[k].optimizer.load_state_dict(state[k]["optimizer"])
            self.steps[k].load_extra_state(state[k]["extra"])


# -- rank methods ------------------------------------------------------------------------------------

class TrainerLoop:
    """A rank method's trainer, one step per batch; its step time includes waiting for its peers."""

    def __init__(self, method: RankMethod, ctx: RankContext) -> None:
        self.ctx = ctx
        self.trainer = method.rank_trainer(ctx)
        self.reads_data = self.trainer.reads_data
        self.shard = self.trainer.shard

    def run(self, batches: Optional[Iterable], steps: int, warmup_steps: int) -> dict:
        device = self.ctx.device
        feed: Optional[Iterator] = iter(batches) if self.reads_data and batches is not None else None
        start = aligned_now(device)
        completions, losses, busy = [], [], 0.0
        hooks = step_hooks()
        for i in range(steps):
            x, y = next(feed) if feed is not None else (None, None)
            t0 = time.perf_counter()
            loss = self.trainer.step(x, y)
            synchronize([device])
            t1 = time.perf_counter()
            if loss is not None:
                check_finite(loss, f"rank {self.ctx.rank}", i)
            if i >= warmup_steps:
                busy += t1 - t0
            completions.append(t1 - start)
            losses.append(loss)
            for hook in hooks:
                hook(i)
        return {"rank": self.ctx.rank, "start_time": start, "completion_times": completions, "losses": losses,
                "busy_s": busy}

    def record(self, gathered: list[dict], warmup_steps: int) -> RunRecord:
        """A batch is done when every rank is done with it; losses are averaged over the ranks that have one.

        Per-rank busy time is not a stage's: inside a library schedule a rank's
        step time includes waiting for its neighbours, which is not work.
        """
        start = gathered[0]["start_time"]
        completions = [start + max(ts) for ts in zip(*(r["completion_times"] for r in gathered))]
        losses = []
        for per_rank in zip(*(r["losses"] for r in gathered)):
            values = [v for v in per_rank if v is not None]
            losses.append(sum(values) / len(values))
        return RunRecord(start_time=start, completion_times=completions, losses=losses, warmup_steps=warmup_steps)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.trainer.optimizers()

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)


def make_rank_loop(method: Method, ctx: RankContext, queue_depth: int) -> Any:
    """The loop for `method` on this rank: a rank method's trainer, or a group of decoupled stages."""
    if isinstance(method, RankMethod):
        return TrainerLoop(method, ctx)
    return StageGroupLoop(method, ctx, queue_depth)
