"""Profile a cell with torch.profiler, apart from its timed steps.

Why apart: the profiler slows every op (more so with every thread recorded), so
the steps that are timed never run under it.  After the timed steps (and the
evaluation, so accuracy does not depend on whether a cell was profiled) the
same executor runs again on fresh batches under the profiler; the ratio of the
profiled to the timed median step says how much the trace is stretched.

What is recorded: CPU (and CUDA when the cell runs on CUDA) activity of every
thread (`profile_all_threads`: the pipeline's stage workers run in their own
threads), with the labels `stage{k}/forward|loss|backward|step` and
`copy stage{j}->stage{k}`.  One trace per cell, written by
`tensorboard_trace_handler` to `<results>/traces/<cell>/` as
`<method>-<N>dev-b<batch>.<ns>.pt.trace.json` (TensorBoard lists that worker
name beside the run).  A distributed cell (DDP, gpipe_dist, decoupled stages
with `executor: processes`) is profiled inside its ranks
(bench/profiling/rank_profile.py), one trace per rank in that folder
(`<method>-<N>dev-b<batch>-rank{r}.*.pt.trace.json`): every rank steps its
profiler from its loop (`after_each_step`), so a rank's trace holds the same
schedule and `ProfilerStep#N` marks as an in-process cell's.  A trace without phase labels (a method that emits none) is
kept, but its fractions are left empty and a note says why
(`ProfileResult.note`), rather than failing a cell that trained fine.  The thread rows of every trace
are named after the threads that ran them (`stage-worker-0 (cpu-worker0)`,
bench/profiling/thread_names.py), the process row after the cell.
"""
from __future__ import annotations

import copy
import functools
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from bench import REPO_ROOT
from bench.execution.choice import run_training
from bench.execution.devices import DeviceSet
from bench.execution.record import RunRecord
from bench.grid.settings import ProfileSchedule
from bench.profiling.thread_names import ThreadNameRecorder, name_threads
from bench.profiling.trace_events import load_trace_dir
from bench.profiling.trace_metrics import TraceSummary, stage_lanes, summarize_trace
from methods.base import Method
from methods.rank_method import after_each_step

__all__ = ["ProfileResult", "ProfileSchedule", "profile_cell", "profiler_slowdown", "trace_dir_name",
           "profiled_rank_steps", "trace_lanes", "cell_trace_dir", "profile_columns", "trace_worker_name",
           "trace_names", "profile_result"]


@dataclass(frozen=True)
class ProfileResult:
    trace_dir: Path
    profiled_step_median_s: float
    summary: Optional[TraceSummary]  # None when the trace has no phase labels (see `note`)
    threads: int  # distinct threads that ran a labelled phase
    note: Optional[str] = None  # why there is no summary


def trace_dir_name(label: str, cell_id: str) -> str:
    """A folder name for a cell's traces: readable (its label) and unique (its id).

    TensorBoard's profiler plugin lists every folder holding traces as a run,
    so this is the name that appears in its run list.
    """
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") + "_" + cell_id[:8]


def trace_worker_name(method: str, devices: int, batch_size: int, rank: Optional[int] = None) -> str:
    """The worker part of a trace file's name: what ran (no dots: they end the worker name)."""
    name = f"{method}-{devices}dev-b{batch_size}" + (f"-rank{rank}" if rank is not None else "")
    return re.sub(r"[^A-Za-z0-9+-]+", "_", name)


def _batch_size(batches: Sequence) -> int:
    return int(len(batches[0][1])) if batches else 0


def _name_new_traces(trace_dir: Path, before: set, names: dict, process_name: str, worker: str = "") -> None:
    """Name the threads of the trace files written since `before` (of `worker` only: ranks write side by side)."""
    for f in sorted(Path(trace_dir).iterdir()):
        if (f.name not in before and f.name.startswith(f"{worker}.") if worker else f.name not in before) \
                and ".pt.trace.json" in f.name and not f.name.endswith(".tmp"):
            name_threads(f, names, process_name)


def _activities(devices: DeviceSet) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if devices.kind == "cuda" else [])


def _all_threads() -> torch._C._profiler._ExperimentalConfig:
    # Without it only the thread that started the profiler is recorded (LIBRARIES.md).
    return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)


def profiled_rank_steps(rank: int, world: int, device: torch.device, inner: Callable, trace_dir: str,
                        cuda: bool, worker: str, plan: Optional[ProfileSchedule], *args):
    """A rank's job under the profiler, its trace written as `<worker>-rank{r}` (rank_profile.py's run).

    With a `plan` the profiler steps after each step of the rank's loop
    (`after_each_step`): the rank records the steps an in-process cell would
    (wait/warmup/active) and marks them `ProfilerStep#N`, N the batch index; the
    job's set-up (process group, model copy) stays out of the trace.
    """
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    before = trace_names(Path(trace_dir))
    steps = None if plan is None else schedule(wait=plan.wait, warmup=plan.warmup, active=plan.active, repeat=1)
    with ThreadNameRecorder(f"rank{rank} ({device})") as recorder:
        with profile(activities=activities, experimental_config=_all_threads(), schedule=steps,
                     on_trace_ready=tensorboard_trace_handler(trace_dir, worker_name=f"{worker}-rank{rank}")) as prof:
            if plan is None:
                result = inner(rank, world, device, *args)
            else:
                with after_each_step(lambda i: prof.step()):
                    result = inner(rank, world, device, *args)
    _name_new_traces(Path(trace_dir), before, recorder.names, f"{Path(trace_dir).name} rank{rank}",
                     worker=f"{worker}-rank{rank}")
    return result


def trace_lanes(method: str, balance: Sequence[int]) -> Optional[list[int]]:
    """How a cell's trace maps stages to devices, for `summarize_trace` and the timeline's `lanes`.

    Stage labels map to their device by the balance (`stage_lanes`), whichever
    executor ran them; a library rank's labels (DDP, gpipe_dist) name no stage
    and are read as the rank's own (trace_events.parse_label): None, each lane a rank.
    """
    from methods import method_class
    from methods.base import Execution

    return None if method_class(method).execution is Execution.RANKS or not len(balance) else stage_lanes(balance)


def _median_gap(record: RunRecord, indices: range) -> float:
    gaps = []
    for i in indices:
        previous = record.completion_times[i - 1] if i > 0 else record.start_time
        gaps.append(record.completion_times[i] - previous)
    return statistics.median(gaps)


def _run_profiled(method: Method, devices: DeviceSet, balance: Sequence[int], batches: Sequence, plan: ProfileSchedule,
                  trace_dir: Path, queue_depth: int, timeout_s: float, executor: str = "threads") -> RunRecord:
    """The cell's executor once more, under the profiler; `prof.step()` as each batch completes."""
    worker = trace_worker_name(method.name, devices.count, _batch_size(batches))
    run = functools.partial(run_training, method, batches, devices, balance, warmup_steps=0, queue_depth=queue_depth,
                            executor=executor)
    prof = profile(
        activities=_activities(devices),
        schedule=schedule(wait=plan.wait, warmup=plan.warmup, active=plan.active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=worker),
        experimental_config=_all_threads(),
    )
    with prof:
        return run(on_batch_done=lambda i: prof.step())  # the executors call it in this thread


def profile_cell(method: Method, devices: DeviceSet, balance: Sequence[int], batches: Sequence, plan: ProfileSchedule,
                 trace_dir: Path, queue_depth: int = 2, timeout_s: float = 900.0,
                 executor: str = "threads") -> ProfileResult:
    """Train a copy of `method` on `batches` under the profiler; trace to `trace_dir`, summary back.

    A copy, so the profiled updates never change the trained model (the cell's
    accuracy is the same with profiling on or off).
    """
    trace_dir = Path(trace_dir)
    trace_dir.mkdir(parents=True, exist_ok=True)
    if len(batches) < plan.recorded_steps:
        raise ValueError(f"profiling needs {plan.recorded_steps} batches, got {len(batches)}")
    trial = copy.deepcopy(method)
    before = trace_names(trace_dir)
    with ThreadNameRecorder("main (drives the run; ProfilerStep marks)") as recorder:
        record = _run_profiled(trial, devices, balance, batches, plan, trace_dir, queue_depth, timeout_s, executor)
    _name_new_traces(trace_dir, before, recorder.names, trace_dir.name)
    return profile_result(method.name, trace_dir, before, record, plan, balance)


def trace_names(trace_dir: Path) -> set[str]:
    """The names in a trace folder now (what `profile_result` later tells new traces apart from)."""
    return {p.name for p in Path(trace_dir).iterdir()} if Path(trace_dir).is_dir() else set()


def profile_result(method: str, trace_dir: Path, before: set[str], record: RunRecord, plan: ProfileSchedule,
                   balance: Sequence[int]) -> ProfileResult:
    """What the row needs from a profiled run: its median active step, and the summary of the traces it wrote.

    `before`: the folder's names before the run (`trace_names`), so a rerun's
    older traces are not read; `record`: the profiled run's own record.
    """
    new = [trace_dir / n for n in sorted(trace_names(trace_dir) - before)]
    trace = load_trace_dir(trace_dir, files=[f for f in new if ".pt.trace.json" in f.name])
    median = _median_gap(record, plan.active_indices())
    if not trace.phases:
        note = (f"profiling: the trace of {method} has no phase labels (record_function "
                "'stage{k}/forward|loss|backward|step' or '<method>/<phase>'), so it gives no busy time, "
                f"bubble or overlap; the trace is kept in {trace_dir}")
        print(note, file=sys.stderr)  # the cell's log; the row keeps the trace and the profiled step time
        return ProfileResult(trace_dir, median, None, 0, note)
    summary = summarize_trace(trace, lanes=trace_lanes(method, balance))
    return ProfileResult(trace_dir, median, summary, len(trace.threads))


def profiler_slowdown(result: ProfileResult, timed_median_s: float) -> Optional[float]:
    """Profiled median step / timed median step (1.0 = the profiler cost nothing)."""
    return result.profiled_step_median_s / timed_median_s if timed_median_s > 0 else None


def cell_trace_dir(results_dir: Optional[Path], grid: str, label: str, cell_id: str) -> Path:
    """`<results>/traces/<cell>/`; without a results folder, the grid's default `results/<grid>`."""
    root = Path(results_dir) if results_dir else REPO_ROOT / "results" / grid
    return root / "traces" / trace_dir_name(label, cell_id)


def profile_columns(result: ProfileResult, timed_median_s: float, results_dir: Optional[Path]) -> dict:
    """The profiling columns of a result row (bench/store/row.py)."""
    root = Path(results_dir) if results_dir else None
    try:
        trace_dir = str(result.trace_dir.relative_to(root)) if root else str(result.trace_dir)
    except ValueError:  # traces outside the results folder: keep the absolute path
        trace_dir = str(result.trace_dir)
    return {
        "trace_dir": trace_dir,
        "profiled_step_median_s": result.profiled_step_median_s,
        "profiler_slowdown": profiler_slowdown(result, timed_median_s),
    } | ({} if result.summary is None else {
        "trace_span_s": result.summary.span_s,
        "trace_stage_busy_s": result.summary.stage_busy_s,
        "bubble_fraction": result.summary.bubble_fraction,
        "overlap_fraction": result.summary.overlap_fraction,
    })
