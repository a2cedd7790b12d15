"""The one choice of executor: which code runs a method's batches on a cell's devices.

Every caller goes through `choose_executor`, so the rule is written once:

    method.execution   devices  executor setting  ->  executor
    RANKS              any      any                   the method's own rank processes (DDP, gpipe_dist)
    DECOUPLED          > 1      threads               pipelined stage workers, one thread per device
    DECOUPLED          > 1      processes             pipelined stage processes, torch.distributed send/recv
    DECOUPLED          1        any                   sequential (nothing to overlap)
    COUPLED            any      any                   sequential (naive model parallelism on N devices)

`run_training` runs the in-process executors (sequential, threads) on a batch
iterable.  RANKS and PROCESSES are distributed jobs: a cell that needs them
runs as one job of N rank processes for the whole cell
(bench/cell/rank_phases.py), each rank running its own loop
(bench/execution/rank_loops.py); no caller hands them batches.
"""
from __future__ import annotations

from enum import Enum
from typing import Callable, Iterable, Optional, Sequence, Union

from methods.base import Execution, Method
from methods.rank_method import RankMethod

from .devices import DeviceSet
from .record import RunRecord

__all__ = ["Executor", "choose_executor", "run_training", "rank_method"]

RANK_HOOKS = ("make_rank_trainer",)  # what a RANKS method gives its ranks


class Executor(str, Enum):
    SEQUENTIAL = "sequential"
    THREADS = "threads"
    PROCESSES = "processes"
    RANKS = "ranks"

    @property
    def distributed(self) -> bool:
        """Runs as N rank processes for the whole cell, not inside the cell's process."""
        return self in (Executor.RANKS, Executor.PROCESSES)


def choose_executor(method: Union[Method, type[Method]], device_count: int, executor: str = "threads") -> Executor:
    """The executor for `method` (an instance or its class) on `device_count` devices (`executor`: the setting)."""
    if method.execution is Execution.RANKS:
        return Executor.RANKS
    if method.execution is Execution.DECOUPLED and device_count > 1:
        return Executor.PROCESSES if executor == "processes" else Executor.THREADS
    return Executor.SEQUENTIAL


def rank_method(method: Method) -> RankMethod:
    """`method` as a `RankMethod`, or a TypeError naming the rank hooks it lacks."""
    if isinstance(method, RankMethod):
        return method
    missing = [hook for hook in RANK_HOOKS if not callable(getattr(method, hook, None))]
    lacks = f"it lacks {', '.join(missing)}" if missing else "it is no RankMethod"
    raise TypeError(f"{method.name}: execution is RANKS, so it must subclass methods.rank_method.RankMethod "
                    f"({lacks})")


def run_training(method: Method, batches: Iterable, devices: DeviceSet, balance: Sequence[int], *, warmup_steps: int,
                 queue_depth: int = 2, executor: str = "threads",
                 on_batch_done: Optional[Callable[[int], None]] = None) -> RunRecord:
    """Train `method` on `batches` in this process; the record of when each batch finished.

    `on_batch_done(i)` runs in the calling thread as batch i completes (the
    profiler's step boundary).  `batches` may be a list or any iterable (a
    training run streams each epoch): both executors pull one batch at a time.
    A distributed executor is refused: its cell runs as a rank job.
    """
    kind = choose_executor(method, devices.count, executor)
    if kind.distributed:
        raise ValueError(f"{method.name} on {devices.count} devices runs with the {kind.value} executor, as one "
                         "job of rank processes for the whole cell (bench.cell.rank_phases), not on a parent's "
                         "batches")
    if kind is Executor.THREADS:
        from .pipeline import run_pipelined

        return run_pipelined(method.stage_steps(), balance, devices, batches, warmup_steps, queue_depth,
                             on_batch_done=on_batch_done, micro_batches=method.micro_batches)
    from .sequential import run_sequential

    return run_sequential(method, batches, devices, warmup_steps, on_batch_done=on_batch_done)
