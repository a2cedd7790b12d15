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

__all__ = ["available_cores", "cores_per_device", "thread_env", "use_threads"]


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
    """Set the calling thread's intra-op thread count (call in every worker thread and process)."""
    import torch

    torch.set_num_threads(threads)
