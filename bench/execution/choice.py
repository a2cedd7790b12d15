"""The one choice of executor: which code runs a method's batches on a cell's devices.

Every caller (the timed run, the untimed training, the profiled run) goes
through `choose_executor` and `run_training`, so the rule is written once:

    method.execution   devices  executor setting  ->  executor
    RANKS              any      any                   the method's own rank processes (DDP, gpipe_dist)
    DECOUPLED          > 1      threads               pipelined stage workers, one thread per device
    DECOUPLED          > 1      processes             pipelined stage processes, torch.distributed send/recv
    DECOUPLED          1        any                   sequential (nothing to overlap)
    COUPLED            any      any                   sequential (naive model parallelism on N devices)
"""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from methods.base import Execution, Method
from methods.rank_method import RankMethod

from .devices import DeviceSet
from .record import RunRecord

if TYPE_CHECKING:  # the rank executor (torch.distributed) is imported only when a rank method runs
    from .ranks import RankWrapper

__all__ = ["Executor", "choose_executor", "run_training", "rank_method"]

RANK_HOOKS = ("rank_job", "absorb", "optimizer_state")  # what a RANKS method gives its executor


class Executor(str, Enum):
    SEQUENTIAL = "sequential"
    THREADS = "threads"
    PROCESSES = "processes"
    RANKS = "ranks"


def choose_executor(method: Method, device_count: int, executor: str = "threads") -> Executor:
    """The executor for `method` on `device_count` devices (`executor`: the cell's setting)."""
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


def _listed(batches: Iterable) -> Sequence:
    """The batches as a list: process executors hand each rank its batches up front."""
    return batches if isinstance(batches, Sequence) else list(batches)


def run_training(method: Method, batches: Iterable, devices: DeviceSet, balance: Sequence[int], *, warmup_steps: int,
                 queue_depth: int = 2, timeout_s: float = 1800.0, executor: str = "threads",
                 on_batch_done: Optional[Callable[[int], None]] = None,
                 rank_wrapper: Optional[RankWrapper] = None, absorb_results: bool = True,
                 on_ranks: Optional[Callable[[list[dict]], None]] = None) -> RunRecord:
    """Train `method` on `batches` with the chosen executor; the record of when each batch finished.

    `on_batch_done(i)` runs in the calling thread as batch i completes (in-process
    executors only; the profiler's step boundary).  `rank_wrapper` wraps the job of
    each rank of a process executor; `absorb_results=False` leaves the parent's
    method as it was (the profiler's run must not change the trained model).

    `batches` may be a list or any iterable (a training run streams each epoch):
    the sequential and threads executors pull one batch at a time; the process
    executors ship their batches to the ranks up front, so an iterable is read
    into a list first (one epoch of batches in memory for those).
    """
    kind = choose_executor(method, devices.count, executor)
    if kind is Executor.RANKS:
        from .ranks import record_from_ranks, run_ranks

        ranked = rank_method(method)
        fn, args = ranked.rank_job(_listed(batches), balance, warmup_steps)
        if rank_wrapper is not None:
            fn, args = rank_wrapper(fn, args)
        results = run_ranks(fn, devices, args, timeout_s=timeout_s)
        if absorb_results:
            ranked.absorb(results)
        return record_from_ranks(results, warmup_steps)
    if kind is Executor.PROCESSES:
        from .distributed_pipeline import run_distributed_pipeline

        return run_distributed_pipeline(method, balance, devices, _listed(batches), warmup_steps, queue_depth, timeout_s,
                                        rank_wrapper=rank_wrapper, absorb_results=absorb_results, on_ranks=on_ranks)
    if kind is Executor.THREADS:
        from .pipeline import run_pipelined

        return run_pipelined(method.stage_steps(), balance, devices, batches, warmup_steps, queue_depth,
                             on_batch_done=on_batch_done, micro_batches=method.micro_batches)
    from .sequential import run_sequential

    return run_sequential(method, batches, devices, warmup_steps, on_batch_done=on_batch_done)
