"""Memory of a cell's measured training: the peak the devices report, and the counted training memory.

On CUDA each GPU's `max_memory_allocated` (reset just before the measured
training: the timed steps, or a training run's epochs); on a CPU the process's
peak resident set, since CPU workers share one process.
The counted memory (bench/cell/training_memory.py) comes after the peak is
read, because counting allocates: one extra, untimed step on a copy.

In a distributed cell each rank measures its own (`rank_peak`): its GPU's
`max_memory_allocated`, or on a CPU its process's peak resident set, and rank 0
gathers them, so `peak_mem_per_device` lists one entry per rank and
`peak_mem_bytes` is the largest: the same meaning as in-process (the memory of
what ran the training on that device), never the supervising cell process's.
"""
from __future__ import annotations

import resource
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from bench.cell.training_memory import training_memory_bytes
from bench.execution.devices import DeviceSet
from methods.base import Method

__all__ = ["peak_memory", "MemoryUse", "MemoryProbe", "measured_memory", "reset_peak", "rank_peak", "ranks_memory"]


def reset_peak(device: torch.device) -> None:
    """Start a new CUDA peak on `device` (a CPU process's peak resident set cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rank_peak(device: torch.device) -> tuple[int, str]:
    """(peak bytes, kind) of this rank since `reset_peak`: its GPU's allocation, or its process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_peak_rss"


def ranks_memory(peaks: list[tuple[int, str]], train_mem: list[int]) -> MemoryUse:
    """The row's memory from every rank's `rank_peak` (by rank) and rank 0's counted training memory."""
    per_device = [p for p, _ in peaks]
    return MemoryUse(max(per_device), per_device, peaks[0][1], train_mem)


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
    """Filled once the measured training has run: the memory it took."""

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
    train_mem = training_memory_bytes(method, probe_batch) if count_train_memory else []
    probe.use = MemoryUse(peak, per_device, kind, train_mem)
