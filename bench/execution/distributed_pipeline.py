"""Decoupled stages pipelined across processes: one process per device, point-to-point hand-over.

The process twin of `pipeline.run_pipelined`, running the same stage loop
(`stage_loop.run_stage_group`) with another transport (`p2p`).  Rank r owns a
contiguous group of stage steps (the balance) and trains them on every batch;
its output payload and the labels go to rank r+1 with `torch.distributed.isend`,
at most `queue_depth` batches ahead of what rank r+1 has taken, so rank r
already works on batch t+1 while rank r+1 works on batch t.  gloo on CPU, NCCL
on CUDA.

Why processes when threads already overlap: a process per device is how the
stages reach several machines (`torchrun --nnodes N`), and no Python-level lock
is shared between devices.

Two ways to start:
- locally (default): one spawned process per device, a free port on
  127.0.0.1 (`ranks.run_ranks`); each rank unpickles the caller's method,
  so all start from the same parameters and optimizer state;
- under `torchrun`: when RANK, WORLD_SIZE and MASTER_ADDR are set, this
  process *is* one rank (env:// rendezvous, nothing spawned); every rank has
  built the same method with the same seed.

Numbers: a stage sees exactly the inputs and labels it sees in the sequential
loop, in the same order, so its parameters after the run equal the sequential
run's bit for bit on CPU (tests/test_distributed_pipeline.py).  The trained
stage states, losses, busy times and completion times come back to the caller,
whose method then holds the trained parameters (evaluation runs there), and the
`RunRecord` is built by the same `record.record_from_groups` as `run_pipelined`'s.

Clocks: every rank starts its clock after one barrier; times are sent back as
offsets from that start and put on the last rank's clock, so they stay
comparable across machines, whose clocks are not.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import re
import time
from collections import deque
from typing import Callable, Optional, Sequence, cast

import torch
import torch.distributed as dist

from methods.base import Method
from models import payload_to
from models.staged import Payload

from .devices import DeviceSet, synchronize
from .p2p import P2PReceiver, P2PSender
from .ranks import RankWrapper, run_ranks
from .record import GroupRecord, NonFiniteLossError, RunRecord, record_from_groups
from .stage_loop import Inbound, Outbound, run_stage_group, stage_groups

__all__ = ["run_distributed_pipeline", "launched_by_torchrun"]

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR")


def launched_by_torchrun() -> bool:
    """True inside a rank started by torchrun (or any env:// launcher): rendezvous from the environment."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


# -- the ends of the pipeline --------------------------------------------------------------------

class _BatchFeed:
    """The first rank's `Inbound`: its batches, cut into micro-batches before the clock starts.

    On CUDA they are pinned, so the copy onto the device (the hand-over, timed as
    work) is asynchronous.
    """

    def __init__(self, batches: Sequence, chunks: int, device: torch.device) -> None:
        self.device = device
        self.parts: deque = deque()
        for x, y in batches:
            for xc, yc in zip(x.chunk(chunks), y.chunk(chunks)) if chunks > 1 else [(x, y)]:
                if device.type == "cuda":
                    xc, yc = _pin(xc), yc.pin_memory()
                self.parts.append((xc, yc))

    def wait(self) -> Optional[object]:
        return self.parts.popleft() if self.parts else None

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


# -- one rank ------------------------------------------------------------------------------------

def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _train_rank(rank: int, world: int, device: torch.device, method: Method, balance: Sequence[int], batches: Sequence,
                warmup_steps: int, queue_depth: int) -> dict:
    """Train this rank's stage group on every batch; return its states and what its stage loop measured."""
    groups = stage_groups(balance)
    if len(groups) != world:
        raise ValueError(f"balance {list(balance)} names {len(groups)} devices but {world} ranks run")
    mine = groups[rank]
    steps = method.stage_steps()
    for k in mine:
        steps[k].place(device)
        # The optimizer state came with the stage (unpickled on the CPU): its own
        # load_state_dict puts each entry where its parameter now is (fused Adam keeps `step` there too).
        steps[k].optimizer.load_state_dict(steps[k].optimizer.state_dict())
    chunks = int(method.micro_batches)
    first, last = rank == 0, rank == world - 1
    feed = _BatchFeed(batches, chunks, device) if first else None  # cut (and pinned) before the clock starts
    outbound: Outbound = _Nowhere() if last else P2PSender(rank + 1, queue_depth * chunks, device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize([device])
    if device.type == "cuda":  # NCCL's barrier needs to know this rank's GPU
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()  # every rank starts its clock together
    start = time.perf_counter()
    inbound: Inbound = feed if feed is not None else P2PReceiver(rank - 1, device)  # after the barrier: see P2PReceiver
    record = run_stage_group(steps, mine, device, inbound, outbound, chunks=chunks, warmup_steps=warmup_steps,
                             last=last)
    return {
        "rank": rank,
        "stages": mine,
        "start_time": start,
        "record": record.shifted(-start),  # seconds after this rank's start: clocks differ between machines
        "state": {k: _to_cpu(steps[k].state_dict()) for k in mine},
        "optimizer": {k: _to_cpu(steps[k].optimizer.state_dict()) for k in mine},
        # what a stage keeps beyond parameters and optimizer (DASCPL's accumulation clock)
        "extra_state": {k: steps[k].extra_state() for k in mine},
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }


def _method_to_bytes(method: Method) -> bytes:
    # cloudpickle (a dependency of submitit): methods may hold lambdas (DASCPL's
    # accumulation schedules) that the standard pickler refuses.
    import cloudpickle

    buffer = io.BytesIO()
    torch.save(method, buffer, pickle_module=cloudpickle)
    return buffer.getvalue()


def _spawned_rank(rank: int, world: int, device: torch.device, method_blob: bytes, *args) -> dict:
    # Loaded on the CPU: each rank then moves only its own stages to its device.
    method = torch.load(io.BytesIO(method_blob), map_location="cpu", weights_only=False)
    return _train_rank(rank, world, device, method, *args)


# -- the caller's side ---------------------------------------------------------------------------

def _absorb(method: Method, results: list[dict]) -> None:
    """Load every rank's trained stages (parameters, optimizer state, extra state) into `method`."""
    steps = method.stage_steps()
    for result in results:
        for k in result["stages"]:
            steps[k].load_state_dict(result["state"][k])
            steps[k].optimizer.load_state_dict(result["optimizer"][k])
            steps[k].load_extra_state(result["extra_state"][k])


def _record(results: list[dict], warmup_steps: int) -> RunRecord:
    """A `RunRecord` on the last rank's clock: every rank's times are offsets from the start barrier.

    Spawned ranks share the caller's machine, where perf_counter is one clock,
    so the record is on the caller's clock as run_pipelined's is.
    """
    start = results[-1]["start_time"]
    groups: list[GroupRecord] = [r["record"].shifted(start) for r in results]
    return record_from_groups(groups, start, warmup_steps)


_NONFINITE = re.compile(r"NonFiniteLossError: (.*)")


def _run_spawned(method: Method, devices: DeviceSet, args: tuple, timeout_s: float,
                 rank_wrapper: Optional[RankWrapper]) -> list[dict]:
    fn, fn_args = _spawned_rank, (_method_to_bytes(method), *args)
    if rank_wrapper is not None:
        fn, fn_args = rank_wrapper(fn, fn_args)
    try:
        return run_ranks(fn, devices, fn_args, timeout_s=timeout_s)
    except RuntimeError as exc:
        found = _NONFINITE.search(str(exc))
        if found:  # the same status as the threads executor gives (a "nan" row, not "failed")
            raise NonFiniteLossError(found.group(1)) from exc
        raise


def _run_torchrun(method: Method, devices: DeviceSet, args: tuple, timeout_s: float,
                  rank_wrapper: Optional[RankWrapper]) -> list[dict]:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # CUDA_VISIBLE_DEVICES is not assumed: torchrun's LOCAL_RANK indexes the GPUs this process sees.
    device = torch.device("cuda", local_rank) if devices.kind == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                rank=rank, world_size=world, timeout=_dt.timedelta(seconds=timeout_s))
    try:
        fn, fn_args = _train_rank, (method, *args)
        if rank_wrapper is not None:
            fn, fn_args = rank_wrapper(fn, fn_args)
        result = fn(rank, world, device, *fn_args)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, result)  # every rank ends with every stage's trained state
        return gathered
    finally:
        if own_group:
            dist.destroy_process_group()


def run_distributed_pipeline(
    method: Method,
    balance: Sequence[int],
    devices: DeviceSet,
    batches: Sequence,
    warmup_steps: int,
    queue_depth: int = 2,
    timeout_s: float = 1800.0,
    rank_wrapper: Optional[RankWrapper] = None,
    absorb_results: bool = True,
    on_ranks: Optional[Callable[[list[dict]], None]] = None,
) -> RunRecord:
    """Train `method`'s stage steps in one process per device; `method` then holds the trained stages.

    Same contract as `run_pipelined` (which takes `method.stage_steps()`): stage
    groups by `balance`, warm-up batches excluded from busy times, losses summed
    over stages per batch, completion times of the last stage.  `devices` gives
    one device per rank (`devices.count == len(balance)`), except under torchrun,
    where the ranks are torchrun's processes (`WORLD_SIZE == len(balance)`, one
    GPU per process by LOCAL_RANK).  `rank_wrapper`: see `RankWrapper`;
    `absorb_results=False` leaves `method` as it was (the profiled run).  `on_ranks(summaries)`
    gets one dict per rank (rank, stages, device_busy_s, peak_mem_bytes: that GPU's
    peak allocation during the run, None on CPU), e.g. for per-device peak memory,
    which the caller's own CUDA counters cannot see.
    """
    steps = method.stage_steps()
    if sum(balance) != len(steps):
        raise ValueError(f"balance {list(balance)} does not split {len(steps)} stages")
    if queue_depth < 1:
        raise ValueError(f"queue_depth must be at least 1, got {queue_depth}")
    args = (list(balance), list(batches), warmup_steps, queue_depth)
    if launched_by_torchrun():
        if int(os.environ["WORLD_SIZE"]) != len(balance):
            raise ValueError(f"balance {list(balance)} needs {len(balance)} ranks; torchrun started "
                             f"WORLD_SIZE={os.environ['WORLD_SIZE']}")
        results = _run_torchrun(method, devices, args, timeout_s, rank_wrapper)
    else:
        if len(balance) != devices.count:
            raise ValueError(f"balance {list(balance)} does not split {len(steps)} stages over {devices.count} devices")
        results = _run_spawned(method, devices, args, timeout_s, rank_wrapper)
    results = sorted(results, key=lambda r: r["rank"])
    if absorb_results:
        _absorb(method, results)
    if on_ranks is not None:
        on_ranks([{"rank": r["rank"], "stages": r["stages"], "device_busy_s": r["record"].device_busy_s,
                   "peak_mem_bytes": r["peak_mem_bytes"]} for r in results])
    return _record(results, warmup_steps)
