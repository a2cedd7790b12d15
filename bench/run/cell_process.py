"""One cell in a fresh interpreter, in its own process group; a crash or timeout becomes a row."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from bench import REPO_ROOT
from bench.cell.rows import failed_row
from bench.grid import Cell
from bench.run.cell_entry import PARENT_PID_ENV
from bench.run.process_group import GroupResult, run_in_new_group
from bench.store.records import from_columns
from bench.store.row import ResultRow

__all__ = ["run_cell_subprocess", "cell_env", "cell_timeout_s", "exit_row"]


def cell_env(cell: Cell) -> dict:
    """Thread budget for the child, set before it imports torch."""
    from bench.execution.threads import cores_per_device, thread_env

    env = thread_env(cell.settings.threads_per_device or cores_per_device(cell.devices))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def cell_timeout_s(cell: Cell) -> float:
    """The limit on the cell's process: `timeout_s`, or per epoch for a training run.

    A training run's epochs are each limited inside the cell (bench/cell/watchdog.py);
    this backstop on the whole process is timeout_s x (epochs + 1): one share per
    epoch and one for loading, building and the final evaluation.
    """
    s = cell.settings
    return s.timeout_s * ((s.epochs or 0) + 1) if s.is_training_run else s.timeout_s


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def exit_row(cell: Cell, result: GroupResult, limit_s: float, elapsed_s: float,
             what: str = "cell process") -> ResultRow:
    """The row of a cell whose process group ended without storing one: timeout, killed or failed."""
    if result.timed_out:
        return failed_row(cell, "timeout", f"cell exceeded its timeout of {limit_s:.0f} s", elapsed_s)
    tail = (result.output_tail.splitlines() or ["no output"])[-1]
    if result.returncode is not None and result.returncode < 0:
        why = ""
        if result.returncode == -signal.SIGKILL:
            why = (", usually the kernel's out-of-memory killer: "
                   "use a smaller batch_size or model, or a machine with more memory")
        return failed_row(cell, "killed", f"{what} killed by {_signal_name(result.returncode)}{why}: {tail}",
                          elapsed_s)
    return failed_row(cell, "failed", f"{what} exited with {result.returncode}: {tail}", elapsed_s)


def run_cell_subprocess(cell: Cell, data_root: Optional[str], workdir: Path,
                        results_dir: Optional[Path] = None) -> ResultRow:
    """Run `cell` under `bench.run.cell_entry` (group leader) with its timeout; always returns a row.

    Statuses: the cell's own (ok, nan, failed), "timeout" past `timeout_s`, "killed" when the
    cell process died by a signal (SIGKILL is almost always the out-of-memory killer), "failed"
    when it exited without a row.
    """
    workdir = Path(workdir)
    cell_file = workdir / f"{cell.cell_id}.cell.json"
    row_file = workdir / f"{cell.cell_id}.row.json"
    cell_file.write_text(cell.to_json())
    row_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.run.cell_entry", str(cell_file), str(row_file), data_root or "",
           str(Path(results_dir).resolve()) if results_dir else ""]  # profiled cells write traces there
    start = time.perf_counter()
    try:
        limit = cell_timeout_s(cell)
        result = run_in_new_group(cmd, limit, workdir / cell.cell_id, cell_env(cell), REPO_ROOT)
        if row_file.exists() and not result.timed_out:
            return from_columns(ResultRow, json.loads(row_file.read_text()))
        return exit_row(cell, result, limit, time.perf_counter() - start)
    finally:
        cell_file.unlink(missing_ok=True)
        row_file.unlink(missing_ok=True)
