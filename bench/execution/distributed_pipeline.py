"""Decoupled stages pipelined across processes: one process per device, point-to-point hand-over.

The process twin of `pipeline.run_pipelined`.  Rank r owns a contiguous group
of stage steps (the balance) and trains them on every batch; its output
payload and the labels go to rank r+1 with `torch.distributed.isend`, at most
`queue_depth` batches ahead of what rank r+1 has taken, so rank r already
works on batch t+1 while rank r+1 works on batch t.  gloo on CPU, NCCL on CUDA.

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
whose method then holds the trained parameters (evaluation runs there), and a
`RunRecord` is built like `run_pipelined`'s.

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
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch.profiler import record_function

from methods.base import Method
from models import payload_to

from .devices import DeviceSet
from .ranks import run_ranks
from .record import NonFiniteLossError, RunRecord, check_finite

__all__ = ["run_distributed_pipeline", "launched_by_torchrun", "RankWrapper", "HEADER_LEN"]

RankWrapper = Callable[[Callable, tuple], tuple[Callable, tuple]]
"""(rank fn, args) -> (rank fn, args): how the profiler runs each rank under torch.profiler
(as in bench/execution/choice.py); each rank then runs `fn(rank, world, device, *args)`."""

HEADER_LEN = 64  # int64 entries describing one message: layout, dtypes, shapes
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool)
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR")


def launched_by_torchrun() -> bool:
    """True inside a rank started by torchrun (or any env:// launcher): rendezvous from the environment."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


def _groups(balance: Sequence[int]) -> list[list[int]]:
    groups, first = [], 0
    for count in balance:
        groups.append(list(range(first, first + count)))
        first += count
    return groups


def _micro_batches(method: Method) -> int:
    """Micro-batches per batch fed to each stage step (SCPL + GPipe: its chunks; others 1)."""
    return int(method.micro_batches)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- messages: a header, then the payload's tensors, then the labels -----------------------------

def _flatten(x, y: torch.Tensor) -> tuple[int, list[Optional[torch.Tensor]]]:
    """(layout, tensors): layout -1 = a bare tensor, n = a tuple of n entries (None allowed)."""
    if isinstance(x, torch.Tensor):
        return -1, [x, y]
    for entry in x:
        if entry is not None and not isinstance(entry, torch.Tensor):
            raise TypeError(f"payload entries must be tensors or None, got {type(entry).__name__}")
    return len(x), list(x) + [y]


def _unflatten(layout: int, tensors: list[Optional[torch.Tensor]]):
    *payload, y = tensors
    return (payload[0] if layout == -1 else tuple(payload)), y


def _encode_header(layout: int, tensors: list[Optional[torch.Tensor]], device: torch.device) -> torch.Tensor:
    values = [layout, len(tensors)]
    for t in tensors:
        values += [-1] if t is None else [_DTYPES.index(t.dtype), t.dim(), *t.shape]
    if len(values) > HEADER_LEN:
        raise ValueError(f"a payload needs {len(values)} header entries; HEADER_LEN is {HEADER_LEN}")
    return torch.tensor(values + [0] * (HEADER_LEN - len(values)), dtype=torch.int64, device=device)


def _decode_header(header: torch.Tensor) -> tuple[int, list[Optional[tuple[torch.dtype, list[int]]]]]:
    values = header.tolist()  # on CUDA this waits for the received header
    layout, count, pos = values[0], values[1], 2
    specs: list[Optional[tuple[torch.dtype, list[int]]]] = []
    for _ in range(count):
        code = values[pos]
        if code == -1:
            specs.append(None)
            pos += 1
            continue
        ndim = values[pos + 1]
        specs.append((_DTYPES[code], values[pos + 2:pos + 2 + ndim]))
        pos += 2 + ndim
    return layout, specs


class _Sender:
    """Asynchronous sends to the next rank, at most `depth` messages not yet taken by it."""

    def __init__(self, peer: int, depth: int, device: torch.device) -> None:
        self.peer, self.depth, self.device = peer, depth, device
        self.pending: deque = deque()  # (works, tensors kept alive until sent)

    def send(self, x, y: torch.Tensor) -> None:
        layout, tensors = _flatten(x, y)
        tensors = [t.contiguous() if t is not None else None for t in tensors]
        while len(self.pending) >= self.depth:
            self._wait_oldest()
        header = _encode_header(layout, tensors, self.device)
        works = [dist.isend(header, self.peer)]
        works += [dist.isend(t, self.peer) for t in tensors if t is not None]
        self.pending.append((works, tensors, header))

    def _wait_oldest(self) -> None:
        works, _, _ = self.pending.popleft()
        for w in works:
            w.wait()

    def flush(self) -> None:
        while self.pending:
            self._wait_oldest()


class _Receiver:
    """Receives from the previous rank; the next header is posted before this message's data is awaited."""

    def __init__(self, peer: int, device: torch.device, messages: int) -> None:
        self.peer, self.device, self.remaining = peer, device, messages
        self.header_work: Optional[dist.Work] = None
        self._post_header()

    def _post_header(self) -> None:
        if self.remaining > 0:  # never leave a receive posted past the last message
            self.header = torch.empty(HEADER_LEN, dtype=torch.int64, device=self.device)
            self.header_work = dist.irecv(self.header, self.peer)
            self.remaining -= 1

    def wait_header(self) -> tuple[int, list]:
        """Idle time: waits until the previous rank has sent (not labelled as work)."""
        assert self.header_work is not None, "no header receive posted"
        self.header_work.wait()
        return _decode_header(self.header)

    def receive(self, layout: int, specs: list) -> tuple[Any, torch.Tensor]:
        tensors = [None if spec is None else torch.empty(spec[1], dtype=spec[0], device=self.device)
                   for spec in specs]
        works = [dist.irecv(t, self.peer) for t in tensors if t is not None]
        self._post_header()
        for w in works:
            if w is not None:  # irecv returns None only outside a process group
                w.wait()
        return _unflatten(layout, tensors)


# -- one rank ------------------------------------------------------------------------------------

def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _pin(payload):
    if isinstance(payload, torch.Tensor):
        return payload.pin_memory()
    return tuple(_pin(p) if p is not None else None for p in payload)


def _train_rank(rank: int, world: int, device: torch.device, method: Method, balance: Sequence[int], batches: Sequence,
                warmup_steps: int, queue_depth: int) -> dict:
    """Train this rank's stage group on every batch; return its states, losses and clocks."""
    groups = _groups(balance)
    if len(groups) != world:
        raise ValueError(f"balance {list(balance)} names {len(groups)} devices but {world} ranks run")
    mine = groups[rank]
    steps = method.stage_steps()
    for k in mine:
        steps[k].place(device)
        # The optimizer state came with the stage (unpickled on the CPU): its own
        # load_state_dict puts each entry where its parameter now is (fused Adam keeps `step` there too).
        steps[k].optimizer.load_state_dict(steps[k].optimizer.state_dict())
    chunks = _micro_batches(method)
    first, last = rank == 0, rank == world - 1
    n = len(batches)
    feed: list = []
    if first:  # cut (and pin, for asynchronous host-to-device copies) before the clock starts
        for x, y in batches:
            parts = zip(x.chunk(chunks), y.chunk(chunks)) if chunks > 1 else [(x, y)]
            for xc, yc in parts:
                if device.type == "cuda":
                    xc, yc = _pin(xc), yc.pin_memory()
                feed.append((xc, yc))
    sender = None if last else _Sender(rank + 1, queue_depth * chunks, device)
    stage_losses = {k: [0.0] * n for k in mine}
    stage_busy = {k: 0.0 for k in mine}
    device_busy = 0.0
    completions = [0.0] * n
    intervals: list[tuple[int, int, float, float]] = []

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    if device.type == "cuda":  # NCCL's barrier needs to know this rank's GPU
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()  # every rank starts its clock together
    start = time.perf_counter()
    # Posted after the barrier: under NCCL the first receive from a peer creates that pair's
    # communicator, which blocks until the peer's first send, and the peer is in the barrier.
    receiver = None if first else _Receiver(rank - 1, device, n * chunks)
    for i in range(n):
        for c in range(chunks):
            if first:
                group_start = time.perf_counter()
                x, y = feed[i * chunks + c]
                x, y = payload_to(x, device, non_blocking=True), y.to(device, non_blocking=True)
            else:
                assert receiver is not None  # every rank but the first receives
                layout, specs = receiver.wait_header()
                group_start = time.perf_counter()
                with record_function(f"copy stage{mine[0] - 1}->stage{mine[0]}"):
                    x, y = receiver.receive(layout, specs)
            for k in mine:
                t0 = time.perf_counter()
                x, stage_loss = steps[k].accept(x, y, c, chunks)
                if stage_loss is not None:
                    loss = float(stage_loss)  # waits for this device: the output is ready to hand over
                    check_finite(loss, f"stage {k}", i)
                    stage_losses[k][i] = loss
                t1 = time.perf_counter()
                intervals.append((k, i, t0 - start, t1 - start))
                if i >= warmup_steps:
                    stage_busy[k] += t1 - t0
            if last and c == chunks - 1:
                _sync(device)
            now = time.perf_counter()
            if i >= warmup_steps:
                device_busy += now - group_start
            if last and c == chunks - 1:
                completions[i] = now - start
            if sender is not None:
                sender.send(x, y)
    if sender is not None:
        sender.flush()
    return {
        "rank": rank,
        "stages": mine,
        "start_time": start,
        "completion_times": completions,  # seconds after this rank's start; the last rank's count
        "intervals": intervals,
        "stage_losses": stage_losses,
        "stage_busy_s": stage_busy,
        "device_busy_s": device_busy,
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


def _record(results: list[dict], num_stages: int, warmup_steps: int) -> RunRecord:
    """A `RunRecord` on the last rank's clock: every rank's times are offsets from the start barrier.

    Spawned ranks share the caller's machine, where perf_counter is one clock,
    so the record is on the caller's clock as run_pipelined's is.
    """
    n = len(results[-1]["completion_times"])
    start = results[-1]["start_time"]
    stage_losses: dict[int, list[float]] = {}
    stage_busy = [0.0] * num_stages
    intervals = []
    for r in results:
        stage_losses.update(r["stage_losses"])
        for k, busy in r["stage_busy_s"].items():
            stage_busy[k] = busy
        intervals += [(k, i, start + a, start + b) for k, i, a, b in r["intervals"]]
    return RunRecord(
        start_time=start,
        completion_times=[start + t for t in results[-1]["completion_times"]],
        losses=[sum(stage_losses[k][i] for k in range(num_stages)) for i in range(n)],
        warmup_steps=warmup_steps,
        stage_busy_s=stage_busy,
        device_busy_s=[r["device_busy_s"] for r in results],
        stage_intervals=sorted(intervals, key=lambda iv: iv[2]),
    )


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
        on_ranks([{key: r[key] for key in ("rank", "stages", "device_busy_s", "peak_mem_bytes")} for r in results])
    return _record(results, len(steps), warmup_steps)
