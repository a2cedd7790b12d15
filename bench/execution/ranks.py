"""N processes, one per device, joined by a process group (gloo on CPU, nccl on CUDA).

The route to real concurrency for methods whose library drives its own schedule
(torch.distributed.pipelining's GPipe/1F1B, DistributedDataParallel), and to
several machines.  Each rank gets `threads_per_device` intra-op threads, set
before any work.  Results come back through a queue that is read *before* the
processes are joined (joining first can deadlock on queued tensors).
"""
from __future__ import annotations

import io
import os
import queue as queue_module
import socket
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .devices import DeviceSet
from .record import RunRecord, check_finite
from .threads import use_threads

__all__ = ["run_ranks", "free_port", "record_from_ranks"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _from_bytes(blob: bytes) -> Any:
    return torch.load(io.BytesIO(blob), weights_only=False)


def _rank_main(rank: int, world: int, port: int, devices: DeviceSet, fn: Callable, args_blob: bytes, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    use_threads(devices.threads_per_device)
    device = devices.devices[rank]
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world)
        out = fn(rank, world, device, *_from_bytes(args_blob))
        # Serialised to bytes: a tensor put on a torch.multiprocessing queue travels as
        # a shared-memory handle that dies with this process, so the parent reading it
        # after the rank exited got "Connection reset by peer".
        results.put((rank, "ok", _to_bytes(out)))
    except BaseException:  # noqa: BLE001 - the parent re-raises with the rank's traceback
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn: Callable, devices: DeviceSet, args: tuple = (), timeout_s: float = 1800.0) -> list[Any]:
    """Run `fn(rank, world, device, *args)` in one spawned process per device; return results by rank."""
    world = devices.count
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    # Bytes, not tensors: torch.multiprocessing would pass the tensors as *shared
    # memory*, so every rank (and the parent) would update one set of weights --
    # DDP's two ranks each applied the averaged step to it, doubling BP's update.
    args_blob = _to_bytes(tuple(args))
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, devices, fn, args_blob, results), daemon=False)
        for r in range(world)
    ]
    for p in procs:
        p.start()
    collected: dict[int, Any] = {}
    errors: list[str] = []
    try:
        while len(collected) + len(errors) < world:
            try:
                rank, status, payload = results.get(timeout=timeout_s)
            except queue_module.Empty:
                raise TimeoutError(f"ranks did not report within {timeout_s:.0f} s") from None
            if status == "ok":
                collected[rank] = _from_bytes(payload)
            else:
                errors.append(f"rank {rank}: {payload}")
                break  # the other ranks may be blocked on the failed one
    finally:
        for p in procs:
            p.join(timeout=5 if errors else 60)
            if p.is_alive():
                p.terminate()
                p.join()
    if errors:
        raise RuntimeError("a rank failed:\n" + "\n".join(errors))
    return [collected[r] for r in range(world)]


def record_from_ranks(results: list[dict], warmup_steps: int) -> RunRecord:
    """A batch is done when every rank is done with it; losses are averaged over the ranks that have one.

    Per-rank busy time is not recorded: inside a library schedule a rank's step
    time includes waiting for its neighbours, which is not work.
    """
    completions = [max(ts) for ts in zip(*(r["completion_times"] for r in results))]
    losses = []
    for i, per_rank in enumerate(zip(*(r["losses"] for r in results))):
        values = [v for v in per_rank if v is not None]
        loss = sum(values) / len(values)
        check_finite(loss, "ranks", i)
        losses.append(loss)
    return RunRecord(
        start_time=min(r["start_time"] for r in results),
        completion_times=completions,
        losses=losses,
        warmup_steps=warmup_steps,
    )
