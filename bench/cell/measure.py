"""From raw timestamps to the numbers a table reports, plus memory and provenance."""
from __future__ import annotations

import platform
import resource
import socket
import subprocess
import sys
from dataclasses import dataclass

import torch

from bench import REPO_ROOT
from bench.execution.record import RunRecord

__all__ = ["StepStats", "step_stats", "peak_memory", "provenance"]


@dataclass(frozen=True)
class StepStats:
    step_times_s: list[float]
    median_s: float
    p10_s: float
    p90_s: float
    timed_total_s: float


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def step_stats(record: RunRecord) -> StepStats:
    """Per-step times = gaps between successive batch completions after warm-up.

    In a pipeline the gap between completions is the steady-state time per
    batch (1 / throughput), which is what a training epoch is made of; for a
    sequential run it is simply each step's duration.
    """
    w = record.warmup_steps
    times = record.completion_times
    if len(times) <= w:
        raise ValueError(f"need more than {w} batches to time anything after warm-up")
    previous = times[w - 1] if w > 0 else record.start_time
    gaps = []
    for t in times[w:]:
        gaps.append(t - previous)
        previous = t
    ordered = sorted(gaps)
    return StepStats(gaps, _quantile(ordered, 0.5), _quantile(ordered, 0.1), _quantile(ordered, 0.9), sum(gaps))


def peak_memory(devices) -> tuple[int, list[int], str]:
    """(peak bytes, per-device peaks, kind): CUDA max_memory_allocated, else process peak RSS."""
    if devices.kind == "cuda":
        per = [int(torch.cuda.max_memory_allocated(d)) for d in devices.devices]
        return max(per), per, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    # CPU workers share one process, so the peak is the process's, not per worker.
    return rss, [rss], "cpu_peak_rss"


def _git_sha() -> str | None:
    try:
        root = REPO_ROOT
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    return {
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "git_sha": _git_sha(),
        "host": f"{socket.gethostname()} ({platform.machine()})",
    }
