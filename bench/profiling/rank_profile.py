"""The profiled run inside the ranks of a distributed cell (DDP, gpipe_dist, decoupled stages with processes).

Called in every rank, collectively, after the cell's timed steps and evaluation:

    profile_in_rank(loop: ProfiledLoop, ctx: RankContext, batches: Optional[Iterable], steps: int,
                    plan: ProfileSchedule, trace_dir: Path, method: str, batch_size: int) -> Optional[ProfileResult]

- `loop`: the rank's training loop for the whole cell (bench/execution/rank_loops.py's
  `RankLoop` fits `ProfiledLoop`); it must call the hooks of
  `methods.rank_method.step_hooks()` with the batch index i once this rank is done
  with batch i, which is where the profiler steps;
- `batches`: this rank's profiling batches (None on a rank that reads no data),
  `steps` of them (every rank passes the same `steps`, at least
  `plan.recorded_steps`; `plan.batches(world, queue_depth)` keeps a pipeline full);
- `method`, `batch_size`: the cell's method name and (global) batch size, which
  name the trace files.

Rank 0 gets the `ProfileResult` for the row's profile columns
(`profiler.profile_columns`), every other rank None.

As in one process (bench/profiling/profiler.py, whose helpers this reuses):
the same `torch.profiler` schedule (wait/warmup/active), the same labels, one
trace per rank in the cell's trace folder named
`<method>-<N>dev-b<batch>-rank{r}.<ns>.pt.trace.json`, thread rows named after
their threads and the process row `<cell folder> rank{r}`.  Each rank steps its
profiler after each of its own batches, so its trace holds `ProfilerStep#N`
marks (N = batch index; one step spans every rank) -- the process executor's
ranks included, which recorded one unmarked run before their loop had a step
hook.  The median profiled step is taken from the run's own `RunRecord`
(`loop.record`, on rank 0's clock) over the schedule's active steps.

The trained model does not change: the rank's training state (`loop.state_dict()`:
parameters, buffers, optimizer and extra state) and the torch RNG are copied to
the CPU before the run and loaded back after it, so accuracy and checkpoints do
not depend on whether a cell was profiled.  A copy of the *loop* is not
trained instead, because a rank's trainer holds process-group objects
(DistributedDataParallel, a PipelineStage) that cannot be deep-copied.

Rank 0 summarises the traces it can read in the folder: every rank's on one
machine or a shared file system; on several machines without one, its own.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

import torch
import torch.distributed as dist

from bench.execution.rank_context import RankContext
from bench.execution.record import RunRecord
from bench.grid.settings import ProfileSchedule
from bench.profiling.profiler import ProfileResult, profile_result, profiled_rank_steps, trace_names, trace_worker_name

__all__ = ["ProfiledLoop", "profile_in_rank"]


class ProfiledLoop(Protocol):
    """What the profiled run needs of a rank's training loop."""

    def run(self, batches: Optional[Iterable], steps: int, warmup_steps: int) -> dict:
        """Train `steps` batches, calling `step_hooks()` after each; a small picklable summary of what it measured."""

    def record(self, gathered: list[dict], warmup_steps: int) -> RunRecord:
        """Rank 0: every rank's `run` summary, by rank, as one `RunRecord`."""

    def state_dict(self) -> dict:
        """This rank's training state."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


def _cpu_copy(obj: Any) -> Any:
    """A copy of a state dict on the CPU (a module's `_metadata` kept: load_state_dict reads versions from it)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = type(obj)((k, _cpu_copy(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = copy.deepcopy(obj._metadata)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _run(rank: int, world: int, device: torch.device, loop: ProfiledLoop, batches: Optional[Iterable],
         steps: int) -> dict:
    return loop.run(batches, steps, 0)


def profile_in_rank(loop: ProfiledLoop, ctx: RankContext, batches: Optional[Iterable], steps: int,
                    plan: ProfileSchedule, trace_dir: Path, method: str, batch_size: int) -> Optional[ProfileResult]:
    """This rank's training steps once more, under the profiler, its state unchanged after; rank 0's result.

    Collective: every rank calls it (see the module docstring for the arguments).
    """
    if steps < plan.recorded_steps:
        raise ValueError(f"profiling needs {plan.recorded_steps} batches, got {steps}")
    trace_dir = Path(trace_dir)
    trace_dir.mkdir(parents=True, exist_ok=True)
    # Rank 0 lists the folder before any rank writes a trace: the broadcast is also the barrier.
    listed = [trace_names(trace_dir) if ctx.first else None]
    dist.broadcast_object_list(listed, src=0)
    before: set[str] = listed[0] or set()
    state, rng = _cpu_copy(loop.state_dict()), _rng_state(ctx.device)
    worker = trace_worker_name(method, ctx.world, batch_size)
    try:
        summary = profiled_rank_steps(ctx.rank, ctx.world, ctx.device, _run, str(trace_dir), ctx.device.type == "cuda",
                                      worker, plan, loop, batches, steps)
    finally:
        loop.load_state_dict(state)
        _set_rng_state(ctx.device, rng)
    # Each rank has written and named its trace before it sends its summary, so rank 0 reads whole files.
    gathered: Optional[list] = [None] * ctx.world if ctx.first else None
    dist.gather_object(summary, gathered, dst=0)
    if gathered is None:
        return None
    balance = [len(group) for group in ctx.groups]
    return profile_result(method, trace_dir, before, loop.record(gathered, 0), plan, balance)
