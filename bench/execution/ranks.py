"""N processes, one per device, joined by a process group (gloo on CPU, nccl on CUDA).

A distributed cell starts its ranks here once, for the whole cell
(bench/cell/rank_phases.py).  The route to real concurrency for methods whose library drives its own schedule
(torch.distributed.pipelining's GPipe/1F1B, DistributedDataParallel), and to
several machines.  Each rank gets `threads_per_device` intra-op threads, set
before any work.  Results come back through a queue that is read *before* the
processes are joined (joining first can deadlock on queued tensors).

A rank that fails, exits without a result (killed, `os._exit`) or hangs
(stopped, deadlocked) must not leave the others blocked in a collective with
it: the parent watches its ranks, ends them all as soon as one has failed or
`timeout_s` has passed (SIGTERM, then SIGKILL, which also ends a stopped
process), and raises.  Each rank's process group times out a little after
that, and a rank dies with the fork server that forked it (PR_SET_PDEATHSIG),
which exits once the parent has gone, so no rank outlives the call even when
the parent itself is killed.
"""
from __future__ import annotations

import ctypes
import datetime
import io
import os
import pickle
import queue as queue_module
import signal
import socket
import time
import traceback
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .devices import DeviceSet
from .threads import use_threads

__all__ = ["run_ranks", "RanksFailed", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _to_bytes(obj: Any) -> bytes:
    # Protocol 5, not torch.save's default 2: protocol 2 pickles a `bytes` object (the
    # method blob the process executor sends each rank, hundreds of MB for SCPL's
    # projectors) as a latin-1 string, 1.5x its size and ~10x slower to write and read,
    # which put tens of seconds of start-up in front of every rank job.
    buffer = io.BytesIO()
    torch.save(obj, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def _from_bytes(blob: bytes) -> Any:
    return torch.load(io.BytesIO(blob), weights_only=False)


_POLL_S = 0.2  # how often the parent looks at its ranks while it waits for their results
_GRACE_S = 5.0  # how long a terminated rank may take to exit before it is killed
_SETTLE_S = 1.0  # after a failure, how long the others may take to report theirs (often caused by it)
_GROUP_GRACE_S = 60.0  # a rank's own collectives time out this long after the parent's deadline
_now = time.monotonic  # the parent's clock for `timeout_s` (tests move it)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else (a reused pid)
        return True
    return True


def _die_with(parent: int) -> None:
    """Linux: this process gets SIGKILL when the process that forked it ends.

    That is the fork server, which exits as soon as the process that called
    `run_ranks` (the cell) has gone, so a killed cell takes its ranks with it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the process group timeout still ends it
        return
    if not _alive(parent):  # the cell died before the line above
        os._exit(1)
    # The fork server exits once no process holds its "alive" pipe; it hands that pipe
    # to every process it forks, so a rank holding it would keep the server (and, by the
    # signal above, itself) alive after the cell is gone.  Only the cell keeps it.
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)  # CPython's private fork server state
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None and getattr(server, "_forkserver_pid", None) is None:  # a fork of the server
        os.close(alive_fd)
        setattr(server, "_forkserver_alive_fd", None)


def _context() -> Any:
    """A fork server with torch imported: each rank is a fork of it, not a fresh interpreter.

    A spawned rank imported torch (and torch._dynamo, which the first optimizer
    step imports) again: seconds of CPU per rank, per cell.  The server is
    started once per calling process, imports them once, and forks a rank in
    milliseconds; CUDA is never initialised in it, so its forks may use CUDA.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "torch._dynamo"])
    return ctx


def _rank_main(rank: int, world: int, port: int, devices: DeviceSet, fn: Callable, args_blob: bytes, results,
               parent: int, timeout_s: float, environment: dict[str, str]) -> None:
    _die_with(parent)
    # The fork server holds the environment of the moment it started; a rank runs with the caller's of now.
    os.environ.clear()
    os.environ.update(environment)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    use_threads(devices.threads_per_device)
    device = devices.devices[rank]
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s + _GROUP_GRACE_S))
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


class RanksFailed(RuntimeError):
    """A rank raised or exited without its result; every rank has been ended."""


def _watch(procs: list, results, timeout_s: float) -> tuple[dict[int, Any], Optional[BaseException]]:
    """Collect every rank's result; stop soon after the first failure, or at the deadline: (results, failure)."""
    world = len(procs)
    deadline = _now() + timeout_s
    collected: dict[int, Any] = {}
    errors: dict[int, str] = {}
    while len(collected) + len(errors) < world:
        if errors and _now() >= deadline:
            break
        if not errors and _now() >= deadline:
            hung = [r for r in range(world) if r not in collected]
            return collected, TimeoutError(f"ranks {hung} did not report within {timeout_s:.0f} s (hung or stopped); "
                                           "every rank was ended")
        # Looked at before the queue: a rank that reported and then exited has its report in the pipe already.
        dead = [r for r, p in enumerate(procs) if p.exitcode is not None and r not in collected and r not in errors]
        try:
            rank, status, payload = results.get(timeout=_POLL_S)
        except queue_module.Empty:
            for r in dead:
                errors[r] = f"exited with code {procs[r].exitcode} without a result (killed, or os._exit)"
            if dead:
                deadline = min(deadline, _now() + _SETTLE_S)
            continue
        if status == "ok":
            collected[rank] = _from_bytes(payload)
        else:
            errors[rank] = payload
            deadline = min(deadline, _now() + _SETTLE_S)
    if not errors:
        return collected, None
    return collected, RanksFailed("a rank failed:\n" + "\n".join(f"rank {r}: {e}" for r, e in sorted(errors.items())))


def _end(procs: list, failure: Optional[BaseException]) -> None:
    """Join every rank, ending the living ones after a failure (SIGTERM, then SIGKILL) or a timeout (SIGKILL:
    a hung rank will not finish, and a stopped one ignores SIGTERM)."""
    started = [p for p in procs if p.pid is not None]
    if failure is None:
        for p in started:
            p.join(timeout=60)
    for p in started:
        if p.is_alive() and isinstance(failure, TimeoutError):
            p.kill()
        elif p.is_alive():
            p.terminate()
    limit = time.monotonic() + _GRACE_S
    for p in started:
        p.join(timeout=max(0.0, limit - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def run_ranks(fn: Callable, devices: DeviceSet, args: tuple = (), timeout_s: float = 1800.0) -> list[Any]:
    """Run `fn(rank, world, device, *args)` in one process per device (forked from a server holding torch); return results by rank.

    Raises `RanksFailed` (a RuntimeError naming each failed rank: its traceback,
    or how it exited) once a rank has failed, and TimeoutError once `timeout_s`
    has passed; either way no rank process is left.
    """
    world = devices.count
    ctx = _context()
    results = ctx.Queue()
    port = free_port()
    # Bytes, not tensors: torch.multiprocessing would pass the tensors as *shared
    # memory*, so every rank (and the parent) would update one set of weights --
    # DDP's two ranks each applied the averaged step to it, doubling BP's update.
    args_blob = _to_bytes(tuple(args))
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, devices, fn, args_blob, results, os.getpid(), timeout_s,
                                             dict(os.environ)),
                    daemon=False)
        for r in range(world)
    ]
    failure: Optional[BaseException] = None
    try:
        for p in procs:
            p.start()
        collected, failure = _watch(procs, results, timeout_s)
    except BaseException as exc:  # interrupted (KeyboardInterrupt): end the ranks too
        failure = exc
        raise
    finally:
        _end(procs, failure)
    if failure is not None:
        raise failure
    return [collected[r] for r in range(world)]
