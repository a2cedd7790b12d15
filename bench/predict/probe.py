"""Measure this machine's device-to-device hand-over and fit a link profile (latency + bytes / bandwidth).

CPU: two spawned processes exchange tensors over gloo (what the harness's
process executors use), ping-pong, one way = half the round trip; then they
all-reduce the same sizes (DDP's buckets), fitted on their own, since a
collective is not a send (its reduction arithmetic runs on the same cores).  CUDA with
two or more GPUs: `Tensor.to` from GPU 0 to GPU 1 (peer copies, what a pipeline
hand-over is), timed with CUDA events.  The fit is ordinary least squares of the
median time against the message size over 1 KB..64 MB.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import statistics
import time
from typing import Callable, Sequence

import torch

from bench.execution.ranks import free_port

from .links import Link

__all__ = ["SIZES", "fit_link", "probe_link"]

SIZES = tuple(2 ** p for p in range(10, 27, 2))  # 1 KB .. 64 MB


def fit_link(sizes: Sequence[int], seconds: Sequence[float], name: str, source: str) -> Link:
    """Least squares of seconds = latency + bytes / bandwidth, relative errors (weights 1 / seconds^2).

    Relative, so the 1 KB messages (latency) count as much as the 64 MB ones (bandwidth).
    """
    w = [1.0 / max(y, 1e-12) ** 2 for y in seconds]
    sw = sum(w)
    mx = sum(wi * x for wi, x in zip(w, sizes)) / sw
    my = sum(wi * y for wi, y in zip(w, seconds)) / sw
    sxx = sum(wi * (x - mx) ** 2 for wi, x in zip(w, sizes))
    slope = sum(wi * (x - mx) * (y - my) for wi, x, y in zip(w, sizes, seconds)) / sxx if sxx else 0.0
    slope = max(slope, 1e-15)
    latency = max(0.0, my - slope * mx)
    return Link(name, latency, 1.0 / slope, source)


def _median_seconds(op: Callable[[], object], repeats: int) -> float:
    """Median of `repeats` timed calls of `op` after one untimed call, both ranks starting each together."""
    import torch.distributed as dist

    rounds = []
    for i in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        op()
        if i:
            rounds.append(time.perf_counter() - start)
    return statistics.median(rounds)


def _gloo_rank(rank: int, port: int, sizes: Sequence[int], repeats: int, out) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    peer = 1 - rank

    def ping_pong(buf: torch.Tensor) -> None:  # rank 0 sends first; one way = half the round trip
        if rank == 0:
            dist.send(buf, peer)
            dist.recv(buf, peer)
        else:
            dist.recv(buf, peer)
            dist.send(buf, peer)

    times = [_median_seconds(functools.partial(ping_pong, torch.zeros(size // 4)), repeats) / 2 for size in sizes]
    reduces = [_median_seconds(functools.partial(dist.all_reduce, torch.ones(size // 4)), repeats) for size in sizes]
    if rank == 0:
        out.put((times, reduces))
    dist.destroy_process_group()


def _gloo_times(sizes: Sequence[int], repeats: int) -> tuple[list[float], list[float]]:
    """One-way send times and all-reduce times per size, between two spawned processes."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_gloo_rank, args=(r, port, sizes, repeats, out)) for r in range(2)]
    for p in procs:
        p.start()
    times = out.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
    return times


def _cuda_times(sizes: Sequence[int], repeats: int) -> list[float]:
    times = []
    for size in sizes:
        src = torch.zeros(size // 4, dtype=torch.float32, device="cuda:0")
        rounds = []
        for i in range(repeats + 1):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            src.to("cuda:1")
            end.record()
            torch.cuda.synchronize("cuda:0")
            torch.cuda.synchronize("cuda:1")
            if i:
                rounds.append(start.elapsed_time(end) / 1000.0)
        times.append(statistics.median(rounds))
    return times


def probe_link(sizes: Sequence[int] = SIZES, repeats: int = 5) -> Link:
    """This machine's hand-over, fitted (CUDA peer copies with 2+ GPUs, else gloo between 2 processes)."""
    host = socket.gethostname()
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        times = _cuda_times(sizes, repeats)
        return fit_link(sizes, times, f"probed-cuda-{host}",
                        f"python -m bench.predict --probe: cuda:0 -> cuda:1 copies on {host}, {time.strftime('%Y-%m-%d')}")
    times, reduces = _gloo_times(sizes, repeats)
    link = fit_link(sizes, times, f"probed-gloo-{host}",
                    f"python -m bench.predict --probe: gloo send/recv and all-reduce between 2 processes on {host}, "
                    f"{time.strftime('%Y-%m-%d')}")
    collective = fit_link(sizes, reduces, "", "")  # 2 ranks: the ring moves 2(N-1)/N = 1 x the bytes
    return dataclasses.replace(link, all_reduce_latency_s=collective.latency_s,
                               all_reduce_bus_bytes_s=collective.bandwidth_bytes_s)
