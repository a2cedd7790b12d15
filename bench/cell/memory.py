"""Memory of a cell's measured training: the peak the devices report, and the counted training memory.

On CUDA each GPU's `max_memory_allocated` (reset just before the measured
training: the timed steps, or a training run's epochs); on a CPU the process's
peak resident set, since CPU workers share one process.  Rank executors report
their own GPUs' peaks (the parent cannot read another process's CUDA peak).
The counted memory (bench/cell/training_memory.py) comes after the peak is
read, because counting allocates: one extra, untimed step on a copy.
"""
from __future__ import annotations

import resource
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import torch

from bench.cell.training_memory import training_memory_bytes
from bench.execution.devices import DeviceSet
from methods.base import Method

__all__ = ["peak_memory", "MemoryUse", "MemoryProbe", "measured_memory"]


def peak_memory(devices) -> tuple[int, list[int], str]:
    """(peak bytes, per-device peaks, kind): CUDA max_memory_allocated, else process peak RSS."""
    if devices.kind == "cuda":
        per = [int(torch.cuda.max_memory_allocated(d)) for d in devices.devices]
        return max(per), per, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    # CPU workers share one process, so the peak is the process's, not per worker.
    return rss, [rss], "cpu_peak_rss"


@dataclass
class MemoryUse:
    """The row's memory columns."""

    peak_bytes: int
    per_device: list[int]
    kind: str
    train_mem_bytes: list[int]

    def columns(self) -> dict:
        return {"peak_mem_bytes": self.peak_bytes, "peak_mem_per_device": self.per_device,
                "peak_mem_kind": self.kind, "train_mem_bytes": self.train_mem_bytes,
                "train_mem_max_bytes": max(self.train_mem_bytes) if self.train_mem_bytes else None}


@dataclass
class MemoryProbe:
    """Filled while the measured training runs: rank executors' reports (`on_ranks`); `use` after it."""

    rank_reports: list[dict] = field(default_factory=list)
    use: Optional[MemoryUse] = None


@contextmanager
def measured_memory(devices: DeviceSet, method: Method, probe_batch: Any, count_train_memory: bool) -> Iterator[MemoryProbe]:
    """Reset the peaks, run the block, then read the peaks and count one step's training memory."""
    for device in devices.devices:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
    probe = MemoryProbe()
    yield probe
    peak, per_device, kind = peak_memory(devices)
    rank_peaks = [r.get("peak_mem_bytes") for r in sorted(probe.rank_reports, key=lambda r: r["rank"])]
    if rank_peaks and all(isinstance(v, int) for v in rank_peaks):  # each rank's own GPU
        per_device = [int(v) for v in rank_peaks if v is not None]
        peak, kind = max(per_device), "cuda_max_allocated"
    train_mem = training_memory_bytes(method, probe_batch) if count_train_memory else []
    probe.use = MemoryUse(peak, per_device, kind, train_mem)
