"""Peak memory of a cell's timed steps, as the devices report it.

On CUDA each GPU's `max_memory_allocated` (reset before the timed steps); on a
CPU the process's peak resident set, since CPU workers share one process.
"""
from __future__ import annotations

import resource

import torch

__all__ = ["peak_memory"]


def peak_memory(devices) -> tuple[int, list[int], str]:
    """(peak bytes, per-device peaks, kind): CUDA max_memory_allocated, else process peak RSS."""
    if devices.kind == "cuda":
        per = [int(torch.cuda.max_memory_allocated(d)) for d in devices.devices]
        return max(per), per, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    # CPU workers share one process, so the peak is the process's, not per worker.
    return rss, [rss], "cpu_peak_rss"
