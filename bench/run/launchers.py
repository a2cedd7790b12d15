"""Where cells run: here one after another (`local`), or as submitit jobs (`submitit-local`, `slurm`).

Every launcher stores each row in the shared store (one fragment per attempt) and reports
it to `on_row`; the runner chooses the cells and writes the report. With submitit, a job per
cell, sized by `slurm_parameters`, runs `run_cell_job`; on Slurm, a cell needing more GPUs than
a node has is a job of one task per node, each running `run_node_task` (torchrun for that
node's ranks; bench/run/multinode.py). Jobs left running by `--no-wait`
are recorded under results/<grid>/jobs/pending/ so a rerun waits for them (or reports them
as pending) instead of submitting their cells again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from tqdm import tqdm

from bench import REPO_ROOT
from bench.cell.rows import failed_row
from bench.grid import Cell
from bench.run.cell_grid import write_cell_grid
from bench.run.cell_process import run_cell_subprocess
from bench.run.job import run_cell_job
from bench.run.multinode import run_node_task
from bench.run.scratch import scratch_dir
from bench.run.slurm import SlurmOptions, node_shape, slurm_parameters
from bench.store.fragments import append_rows
from bench.store.read import frame_rows, read_history
from bench.store.records import from_columns
from bench.store.row import ResultRow

__all__ = ["Launcher", "LocalLauncher", "SubmititLauncher", "LAUNCHERS", "make_launcher"]

OnRow = Callable[[ResultRow], None]
LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass
class LaunchContext:
    grid_name: str
    results_dir: Path
    data_root: Optional[str]
    progress: bool


class Launcher(Protocol):
    def in_flight(self, results_dir: Path) -> set[str]:
        """Cells whose job runs elsewhere now: not to be started again."""

    def launch(self, todo: list[tuple[Cell, int]], ctx: LaunchContext, on_row: OnRow) -> int:
        """Run (or submit) the cells; returns how many are left running (0 when it waited)."""


class LocalLauncher:
    """Today's behaviour: each cell in a child process here, one at a time (timed cells never overlap)."""

    def in_flight(self, results_dir: Path) -> set[str]:
        return set()

    def launch(self, todo: list[tuple[Cell, int]], ctx: LaunchContext, on_row: OnRow) -> int:
        with scratch_dir(ctx.results_dir) as tmp:
            bar = tqdm(todo, desc=ctx.grid_name, unit="cell", disable=not ctx.progress, dynamic_ncols=True)
            for cell, attempt in bar:
                bar.set_postfix_str(cell.label)
                row = run_cell_subprocess(cell, ctx.data_root, tmp, ctx.results_dir)
                row.attempt = attempt
                append_rows(ctx.results_dir, [row])
                on_row(row)
        return 0


class SubmititLauncher:
    """A submitit job per cell. `local`: jobs one at a time, since submitit's LocalExecutor
    starts every job at once and gives all the same GPUs, which would spoil timings. `slurm`:
    one job array per distinct resource request, all submitted at once."""

    def __init__(self, cluster: str, options: Optional[SlurmOptions] = None, wait: bool = True):
        if cluster not in ("local", "slurm"):
            raise ValueError(f"submitit cluster {cluster!r}: local or slurm")
        self.cluster, self.options, self.wait = cluster, options or SlurmOptions(), wait

    def _pending_dir(self, results_dir: Path) -> Path:
        return Path(results_dir) / "jobs" / "pending"

    def _executor(self, results_dir: Path):
        import submitit

        # the job imports bench/ from this checkout, wherever the job starts
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if str(REPO_ROOT) not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), *paths]))
        return submitit.AutoExecutor(folder=Path(results_dir) / "jobs" / "%j", cluster=self.cluster)

    def in_flight(self, results_dir: Path) -> set[str]:
        pending = self._pending_dir(results_dir)
        return {p.stem for p in pending.glob("*.json")} if pending.is_dir() else set()

    def _collect(self, job, cell: Cell, attempt: int, ctx: LaunchContext, on_row: OnRow) -> None:
        """Wait for a job; a job that died without storing its row gets one here.

        A multi-node job has a task per node; the task of Slurm's process 0 returns the row.
        """
        try:
            row = from_columns(ResultRow, next(r for r in job.results() if r is not None))
        except Exception as exc:  # noqa: BLE001 - a lost job becomes a status row, like a lost cell
            history = read_history(ctx.results_dir)
            stored = history[(history["cell_id"] == cell.cell_id) & (history["attempt"] == attempt)]
            if len(stored):
                row = frame_rows(stored.tail(1))[0]
            else:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                row = failed_row(cell, "killed", f"job {job.job_id} ended without a row: {first}")
                row.attempt = attempt
                append_rows(ctx.results_dir, [row])
        (self._pending_dir(ctx.results_dir) / f"{cell.cell_id}.json").unlink(missing_ok=True)
        on_row(row)

    def _record(self, job, cell: Cell, attempt: int, ctx: LaunchContext) -> None:
        pending = self._pending_dir(ctx.results_dir)
        pending.mkdir(parents=True, exist_ok=True)
        (pending / f"{cell.cell_id}.json").write_text(json.dumps(
            {"job_id": job.job_id, "attempt": attempt, "cluster": self.cluster, "cell": cell.to_json(),
             "tasks": job.num_tasks}))

    def _resume(self, ctx: LaunchContext, on_row: OnRow) -> int:
        """Jobs an earlier `--no-wait` run left: wait for them (or count them if not waiting)."""
        import submitit

        pending = sorted(self._pending_dir(ctx.results_dir).glob("*.json")) if self.in_flight(ctx.results_dir) else []
        if not self.wait:
            return len(pending)
        for path in pending:
            entry = json.loads(path.read_text())
            folder = Path(ctx.results_dir) / "jobs" / "%j"
            job: submitit.SlurmJob = submitit.SlurmJob(folder=folder, job_id=entry["job_id"],
                                                       tasks=range(entry.get("tasks", 1)))
            self._collect(job, Cell.from_json(entry["cell"]), entry["attempt"], ctx, on_row)
        return 0

    def _call(self, cell: Cell, attempt: int, ctx: LaunchContext) -> tuple[Callable, tuple[Any, ...]]:
        """The function a cell's job runs and its arguments: the cell entry, or per node torchrun."""
        results = str(Path(ctx.results_dir).resolve())
        shape = node_shape(cell, self.options) if self.cluster == "slurm" else None
        if shape is not None and shape.multi_node:
            grid_file = write_cell_grid(cell, Path(results) / "jobs" / "cells")  # the ranks find the cell by id
            return run_node_task, (str(grid_file), cell.to_json(), attempt, ctx.data_root, results, shape.gpus_per_node)
        return run_cell_job, (cell.to_json(), attempt, ctx.data_root, results)

    def launch(self, todo: list[tuple[Cell, int]], ctx: LaunchContext, on_row: OnRow) -> int:
        left = self._resume(ctx, on_row) if self.cluster == "slurm" else 0
        executor = self._executor(ctx.results_dir)
        if self.cluster == "local":
            for cell, attempt in tqdm(todo, desc=ctx.grid_name, unit="job", disable=not ctx.progress):
                executor.update_parameters(**slurm_parameters(cell, self.options, ctx.grid_name))
                function, arguments = self._call(cell, attempt, ctx)
                self._collect(executor.submit(function, *arguments), cell, attempt, ctx, on_row)
            return left
        groups: dict[tuple[str, Callable], list[tuple[Cell, int, tuple[Any, ...]]]] = {}
        for cell, attempt in todo:  # one array per distinct request and job function: an array shares both
            params = json.dumps(slurm_parameters(cell, self.options, ctx.grid_name), sort_keys=True)
            function, arguments = self._call(cell, attempt, ctx)
            groups.setdefault((params, function), []).append((cell, attempt, arguments))
        submitted = []
        for (params, function), members in groups.items():
            executor.update_parameters(**json.loads(params))
            jobs = executor.map_array(function, *zip(*(arguments for _, _, arguments in members)))
            for job, (cell, attempt, _) in zip(jobs, members):
                self._record(job, cell, attempt, ctx)
                submitted.append((job, cell, attempt))
        if not self.wait:
            return left + len(submitted)
        for job, cell, attempt in submitted:
            self._collect(job, cell, attempt, ctx, on_row)
        return left


def make_launcher(name: str, options: Optional[SlurmOptions] = None, wait: bool = True) -> Launcher:
    """`local`, `submitit-local` or `slurm` (run_matrix.py --launcher)."""
    if name == "local":
        return LocalLauncher()
    if name == "submitit-local":
        return SubmititLauncher("local", options, wait)
    if name == "slurm":
        return SubmititLauncher("slurm", options, wait)
    raise ValueError(f"--launcher {name!r}: choose one of {', '.join(LAUNCHERS)}")
