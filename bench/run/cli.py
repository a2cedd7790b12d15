"""run_matrix.py's options for how a grid runs: retries, launcher, cluster resources.

Kept here, not in run_matrix.py, so the script stays a thin entry and these options are
tested with the code they configure.
"""
from __future__ import annotations

import argparse
from typing import Iterable

from bench.grid import Cell
from bench.run.launchers import LAUNCHERS, Launcher, make_launcher
from bench.run.retry import DEFAULT_RETRY, RETRY_POLICIES
from bench.run.slurm import DEFAULT_GPUS_PER_NODE, SlurmOptions, node_shape, parse_slurm_time

__all__ = ["add_run_arguments", "launcher_from_args", "slurm_options_from_args", "check_cluster_shapes"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry", choices=list(RETRY_POLICIES), default=DEFAULT_RETRY,
                        help="which finished cells a rerun runs again, by their latest status: "
                             "timeout (default: timeouts and killed cells), failed (every status but ok), "
                             "all, none")
    parser.add_argument("--launcher", choices=list(LAUNCHERS), default="local",
                        help="local: here, one cell after another (default); submitit-local: a submitit job "
                             "per cell, one at a time; slurm: a Slurm job per cell (docs/RUNNING.md)")
    parser.add_argument("--no-wait", action="store_true",
                        help="with --launcher slurm: submit and return; rerun the same command to wait and report")
    slurm = parser.add_argument_group("cluster resources (--launcher slurm / submitit-local)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-time", default=None, help="per job: minutes, H:MM:SS, D-HH:MM:SS, 45m, 2h "
                                                          "(default: the cell's timeout_s + 10 min)")
    slurm.add_argument("--slurm-mem", type=int, default=None, metavar="GB", help="memory per job in GB")
    slurm.add_argument("--slurm-cpus-per-task", type=int, default=None,
                       help="default: devices x threads_per_device, at least 2 per GPU")
    slurm.add_argument("--slurm-gpus", action="store_true",
                       help="the partition has GPUs: cells with device_kind auto get one GPU per device")
    slurm.add_argument("--slurm-gpus-per-node", type=int, default=DEFAULT_GPUS_PER_NODE, metavar="G",
                       help=f"GPUs of one node (default {DEFAULT_GPUS_PER_NODE}): a distributed cell with more "
                            "devices runs on devices/G nodes, torchrun on each (docs/RUNNING.md)")
    slurm.add_argument("--slurm-array-parallelism", type=int, default=None, help="jobs of an array running at once")
    slurm.add_argument("--slurm-account", default=None)
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. constraint=a100 or qos=high (repeatable)")


def slurm_options_from_args(args: argparse.Namespace) -> SlurmOptions:
    """Raises ValueError with one line for a malformed value."""
    extra = []
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-extra {item!r}: give KEY=VALUE, e.g. constraint=a100")
        extra.append((key.strip(), value.strip()))
    for name in ("slurm_mem", "slurm_cpus_per_task", "slurm_array_parallelism", "slurm_gpus_per_node"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    return SlurmOptions(
        partition=args.slurm_partition, time_min=parse_slurm_time(args.slurm_time) if args.slurm_time else None,
        mem_gb=args.slurm_mem, cpus_per_task=args.slurm_cpus_per_task, gpus=args.slurm_gpus,
        array_parallelism=args.slurm_array_parallelism, account=args.slurm_account, extra=tuple(extra),
        gpus_per_node=args.slurm_gpus_per_node,
    )


def launcher_from_args(args: argparse.Namespace) -> Launcher:
    """The launcher the options ask for; ValueError (one line) for an impossible combination."""
    if args.no_wait and args.launcher != "slurm":
        raise ValueError("--no-wait needs --launcher slurm (local jobs end with this process)")
    return make_launcher(args.launcher, slurm_options_from_args(args), wait=not args.no_wait)


def check_cluster_shapes(cells: Iterable[Cell], args: argparse.Namespace) -> None:
    """With `--launcher slurm`, every cell's nodes can be asked for; else ValueError, one line, before any job.

    Why up front: a 12-GPU cell on 8-GPU nodes, or a one-process method on 16 GPUs, would
    otherwise be found only when its array is submitted, after other arrays already were.
    """
    if args.launcher != "slurm":
        return
    options = slurm_options_from_args(args)
    problems = []
    for cell in cells:
        try:
            node_shape(cell, options)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more cells)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)
