"""The thread budget: how many intra-op threads a device's worker uses, owned in one place.

Why it matters: on a CPU, "N devices" are N workers sharing the cores, so each
worker's share must be set before torch starts its thread pools (in a child
process: through OMP/MKL variables before torch is imported) and again in every
worker thread (OpenMP keeps the count per thread).  Torch-free, so the grid
loader can size devices without importing torch.
"""
from __future__ import annotations

import os
from typing import Mapping

__all__ = ["available_cores", "cores_per_device", "thread_env", "use_threads", "denormals_flushed"]


def available_cores() -> int:
    """Cores this process may use (respects taskset/cgroups affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def cores_per_device(devices: int) -> int:
    """Each of `devices` workers' equal share of the cores (at least 1)."""
    return max(1, available_cores() // max(devices, 1))


def thread_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process whose torch must use `threads` intra-op threads."""
    env = dict(os.environ if base is None else base)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


def use_threads(threads: int) -> None:
    """Set the calling thread's intra-op thread count and CPU float mode (call in every worker thread and process).

    The float mode: denormal floats are flushed to zero (`torch.set_flush_denormal`).
    Why: on a CPU, arithmetic on denormals is many times slower than on normal floats,
    and an LSTM over padded text makes them (its cell state decays step by step over
    the pads): one training step of the paper's LSTM over 348 tokens took 9.1 s here
    with denormals and 1.0 s flushed. GPUs do not pay that, so CPU timings would
    measure the CPU's denormal penalty rather than the method.  The mode is per thread
    (the x86 MXCSR register), inherited by threads started afterwards (the OpenMP pool
    of this thread's intra-op work); it changes results only where a value under
    1.2e-38 in float32 becomes 0.  Rows say it in `cpu_denormals_flushed`.
    """
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # False where the CPU cannot (no SSE3): rows then say so


def denormals_flushed() -> bool:
    """Whether this thread's float arithmetic flushes denormals to zero, probed by computing one."""
    import torch

    return (torch.tensor([1e-39], dtype=torch.float32) * 1.5).item() == 0.0
