"""What a cell asks of a cluster: the submitit parameters of its job, as a pure function.

Kept pure (cell + options in, dict out) so the Slurm path is tested without a cluster: the
dict is exactly what `AutoExecutor.update_parameters` receives. Generic keys (timeout_min,
mem_gb, cpus_per_task, gpus_per_node) apply to every submitit cluster; `slurm_*` keys only
to Slurm (the local executor ignores them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from bench.grid import Cell

__all__ = ["SlurmOptions", "slurm_parameters", "parse_slurm_time"]

TIME_MARGIN_MIN = 10  # start-up, data loading and writing the row, on top of the cell's own timeout


@dataclass(frozen=True)
class SlurmOptions:
    """The `--slurm-*` options of run_matrix.py; None = derive from the cell."""

    partition: Optional[str] = None
    time_min: Optional[int] = None
    mem_gb: Optional[int] = None
    cpus_per_task: Optional[int] = None
    gpus: bool = False  # the partition has GPUs: cells with device_kind auto get one per device
    array_parallelism: Optional[int] = None
    account: Optional[str] = None
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # --slurm-extra KEY=VALUE: sbatch options


def parse_slurm_time(text: str) -> int:
    """Minutes from `90`, `1:30:00`, `2-00:00:00` (Slurm's forms) or `45m`/`2h`."""
    text = text.strip()
    try:
        if text.endswith("m"):
            return int(text[:-1])
        if text.endswith("h"):
            return int(float(text[:-1]) * 60)
        days, dash, rest = text.partition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in rest.split(":")]
        if dash:  # days-hours[:minutes[:seconds]]
            parts += [0] * (3 - len(parts))
        else:  # minutes | minutes:seconds | hours:minutes:seconds
            parts = {1: [0, parts[0], 0], 2: [0, *parts], 3: parts}[len(parts)]
        hours, minutes, seconds = parts
        return int(days) * 24 * 60 + hours * 60 + minutes + (1 if seconds > 0 else 0)
    except ValueError:
        raise ValueError(f"--slurm-time {text!r}: give minutes (90), H:MM:SS, D-HH:MM:SS, 45m or 2h") from None


def _gpus(cell: Cell, options: SlurmOptions) -> int:
    kind = cell.settings.device_kind
    if kind == "cuda" or (kind == "auto" and options.gpus):
        return cell.devices
    return 0


def slurm_parameters(cell: Cell, options: SlurmOptions, grid_name: Optional[str] = None) -> dict[str, Any]:
    """The job of one cell: one task on one node, sized to the cell.

    GPUs: one per device for `device_kind: cuda`, and for `auto` when `options.gpus`.
    CPUs: the option, else a core per device thread (threads_per_device, default 1) and at
    least 2 per GPU for the feeding thread. Time: the option, else the cell's timeout plus a
    margin, so Slurm never kills a cell the runner would have timed out cleanly.
    """
    gpus = _gpus(cell, options)
    threads = cell.settings.threads_per_device or 1
    cpus = options.cpus_per_task or max(cell.devices * threads, 2 * gpus, 1)
    from bench.run.cell_process import cell_timeout_s  # per epoch for a training run

    time_min = options.time_min or math.ceil(cell_timeout_s(cell) / 60) + TIME_MARGIN_MIN
    params: dict[str, Any] = {
        "name": f"scplbench-{grid_name or cell.grid}",
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": cpus,
        "timeout_min": time_min,
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.array_parallelism:
        params["slurm_array_parallelism"] = options.array_parallelism
    if options.account:
        params["slurm_account"] = options.account
    if options.extra:
        params["slurm_additional_parameters"] = dict(options.extra)
    return params
