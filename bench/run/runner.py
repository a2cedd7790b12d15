"""Run a grid: every unfinished cell in its own subprocess, each result appended as it lands.

Resumable: a cell whose id is already in results.parquet is skipped, so a
runner killed mid-grid loses at most the cell it was running.  A cell that
raises, produces a NaN loss or runs past its timeout becomes a row with that
status and the rest of the grid still runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from tqdm import tqdm

from bench.grid import Cell, Grid
from bench.store.parquet import append_rows, finished_cell_ids
from bench.store.row import ResultRow

__all__ = ["run_grid", "select_cells", "RunSummary"]

from bench import REPO_ROOT


@dataclass
class RunSummary:
    ran: int
    skipped: int
    statuses: dict
    report: str = ""


def select_cells(cells: Iterable[Cell], only: Iterable[str]) -> list[Cell]:
    """Keep cells matching every `key=value` filter (or a cell-id prefix)."""
    cells = list(cells)
    for rule in only:
        if "=" in rule:
            key, value = rule.split("=", 1)
            cells = [c for c in cells if str(getattr(c, key, None)) == value]
        else:
            cells = [c for c in cells if c.cell_id.startswith(rule)]
    return cells


def _thread_env(cell: Cell) -> dict:
    """Thread budget for the child, set before it imports torch."""
    from bench.execution.devices import available_cores

    env = dict(os.environ)
    threads = cell.settings.threads_per_device or max(1, available_cores() // cell.devices)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_cell_subprocess(cell: Cell, data_root: Optional[str], workdir: Path,
                        results_dir: Optional[Path] = None) -> ResultRow:
    """One cell in a fresh interpreter; a crash or timeout is turned into a row."""
    from bench.cell.run import failed_row
    import json

    cell_file = workdir / f"{cell.cell_id}.cell.json"
    row_file = workdir / f"{cell.cell_id}.row.json"
    cell_file.write_text(cell.to_json())
    cmd = [sys.executable, "-m", "bench.cell.run", str(cell_file), str(row_file), data_root or "",
           str(Path(results_dir).resolve()) if results_dir else ""]  # profiled cells write traces there
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=_thread_env(cell), capture_output=True, text=True,
            timeout=cell.settings.timeout_s,
        )
    except subprocess.TimeoutExpired:
        return failed_row(cell, "timeout", f"cell exceeded its timeout of {cell.settings.timeout_s:.0f} s",
                          time.perf_counter() - start)
    if row_file.exists():
        data = json.loads(row_file.read_text())
        return ResultRow(**data)
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    why = ""
    if proc.returncode == -9:  # SIGKILL from outside: on Linux almost always the out-of-memory killer
        why = (" (killed by SIGKILL, usually the kernel's out-of-memory killer: "
               "use a smaller batch_size or model, or a machine with more memory)")
    return failed_row(cell, "failed", f"cell process exited with {proc.returncode}{why}: {tail[0]}",
                      time.perf_counter() - start)


def run_grid(
    grid: Grid,
    results_dir: Path,
    cells: Optional[list[Cell]] = None,
    data_root: Optional[str] = None,
    progress: bool = True,
    on_row: Optional[Callable[[ResultRow], None]] = None,
) -> RunSummary:
    """Run the grid's unfinished cells, appending each row to results_dir/results.parquet, then report."""
    cells = grid.cells if cells is None else cells
    done = finished_cell_ids(results_dir)
    todo = [c for c in cells if c.cell_id not in done]
    statuses: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="scplbench-") as tmp:
        bar = tqdm(todo, desc=grid.name, unit="cell", disable=not progress, dynamic_ncols=True)
        for cell in bar:
            bar.set_postfix_str(cell.label)
            row = run_cell_subprocess(cell, data_root, Path(tmp), results_dir)
            append_rows(results_dir, [row])
            statuses[row.status] = statuses.get(row.status, 0) + 1
            if row.status != "ok":
                tqdm.write(f"[{row.status}] {cell.label}: {row.error}")
            if on_row:
                on_row(row)
    from bench.report.write import write_report

    report = write_report(results_dir)  # tables (and figures) regenerated from everything measured so far
    return RunSummary(ran=len(todo), skipped=len(cells) - len(todo), statuses=statuses, report=report)
