"""What a cell asks of a cluster: the submitit parameters of its job, as a pure function.

Kept pure (cell + options in, dict out) so the Slurm path is tested without a cluster: the
dict is exactly what `AutoExecutor.update_parameters` receives. Generic keys (timeout_min,
mem_gb, cpus_per_task, gpus_per_node) apply to every submitit cluster; `slurm_*` keys only
to Slurm (the local executor ignores them).

A cell that needs more GPUs than one node has (`SlurmOptions.gpus_per_node`) is a
multi-node job: `node_shape` says how many nodes, and the job is one task per node, each
starting torchrun for its node's ranks (bench/run/multinode.py). Only a cell whose
devices are rank processes can span nodes (DDP, gpipe_dist, decoupled stages with
`executor: processes`); anything else, or a device count that is no whole number of
nodes, is refused with one line before anything is submitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from bench.grid import Cell

__all__ = ["SlurmOptions", "NodeShape", "node_shape", "runs_as_ranks", "slurm_parameters", "parse_slurm_time",
           "DEFAULT_GPUS_PER_NODE"]

TIME_MARGIN_MIN = 10  # start-up, data loading and writing the row, on top of the cell's own timeout
DEFAULT_GPUS_PER_NODE = 8  # the common GPU node (DGX/HGX); --slurm-gpus-per-node for other shapes


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
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE  # a cell asking for more GPUs runs on several nodes


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


@dataclass(frozen=True)
class NodeShape:
    """Where a cell's devices sit: `nodes` nodes of `gpus_per_node` GPUs each (0: a CPU cell)."""

    nodes: int
    gpus_per_node: int

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1


def runs_as_ranks(cell: Cell) -> bool:
    """Whether the cell runs as one job of `devices` rank processes, the only kind that can span nodes."""
    from bench.execution.choice import Executor, choose_executor
    from methods import method_class

    kind = choose_executor(method_class(cell.method), cell.devices, cell.settings.executor)  # type: ignore[arg-type]
    return kind in (Executor.RANKS, Executor.PROCESSES)


def _decoupled(cell: Cell) -> bool:
    from methods import method_class
    from methods.base import Execution

    return method_class(cell.method).execution is Execution.DECOUPLED


def _whole_node_counts(devices: int, most: int) -> str:
    """`--slurm-gpus-per-node` values (at most `most`) that split `devices` into whole nodes."""
    fits = [g for g in range(most, 0, -1) if devices % g == 0 and g < devices][:3]
    return " or ".join(f"--slurm-gpus-per-node {g} ({devices // g} nodes)" for g in fits)


def node_shape(cell: Cell, options: SlurmOptions) -> NodeShape:
    """The nodes a cell's job asks for; ValueError (one line, what to change) for a shape that cannot run.

    A cell fits one node when its GPUs are at most `options.gpus_per_node` (CPU cells always do):
    one node with exactly its GPUs, today's job. Beyond that, ceil(GPUs / gpus_per_node) nodes of
    gpus_per_node GPUs each; the GPUs must fill whole nodes (torchrun starts the same number of
    ranks on every node) and the cell must run as rank processes.
    """
    gpus, per_node = _gpus(cell, options), options.gpus_per_node
    if per_node < 1:
        raise ValueError(f"--slurm-gpus-per-node {per_node}: must be at least 1")
    if gpus <= per_node:
        return NodeShape(1, gpus)
    what = f"cell {cell.cell_id} ({cell.label}) asks for {gpus} GPUs, more than one {per_node}-GPU node"
    if not runs_as_ranks(cell):
        how = ("set executor: processes (decoupled stages as rank processes)"
               if cell.settings.executor != "processes" and _decoupled(cell) else
               f"use at most {per_node} devices or a method that runs as ranks (ddp, gpipe_dist)")
        raise ValueError(f"{what}, but {cell.method} runs in one process, which cannot span nodes: {how}")
    if gpus % per_node:
        other = _whole_node_counts(gpus, per_node)
        raise ValueError(f"{what}, and {gpus} is no whole number of {per_node}-GPU nodes (torchrun starts as "
                         f"many ranks on every node): use devices a multiple of {per_node}"
                         + (f", or {other}" if other else ""))
    return NodeShape(gpus // per_node, per_node)


def slurm_parameters(cell: Cell, options: SlurmOptions, grid_name: Optional[str] = None) -> dict[str, Any]:
    """The job of one cell: one task per node, sized to the cell (`node_shape`: one node unless it needs more).

    GPUs: one per device for `device_kind: cuda`, and for `auto` when `options.gpus`.
    CPUs (per node's task): the option, else a core per device thread (threads_per_device,
    default 1) of the node's devices and at least 2 per GPU for the feeding thread. Time: the
    option, else the cell's timeout plus a margin, so Slurm never kills a cell the runner would
    have timed out cleanly. Raises ValueError for a shape that cannot run (see `node_shape`).
    """
    shape = node_shape(cell, options)
    gpus = shape.gpus_per_node
    threads = cell.settings.threads_per_device or 1
    devices_per_node = cell.devices // shape.nodes
    cpus = options.cpus_per_task or max(devices_per_node * threads, 2 * gpus, 1)
    from bench.run.cell_process import cell_timeout_s  # per epoch for a training run

    time_min = options.time_min or math.ceil(cell_timeout_s(cell) / 60) + TIME_MARGIN_MIN
    params: dict[str, Any] = {
        "name": f"scplbench-{grid_name or cell.grid}",
        "nodes": shape.nodes,
        "tasks_per_node": 1,  # a multi-node job's task per node starts torchrun for that node's ranks
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
