"""Run a grid: choose the cells a (re)run needs, launch them, store each row, compact, report.

Resumable: a cell whose latest attempt is finished is skipped, so a runner killed mid-grid
loses at most the cell it was running (and that cell's processes end with it: see
`process_group`). A cell that raises, produces a NaN loss, runs past its timeout or is
killed becomes a row with that status, and the rest of the grid still runs. Each attempt
is a new row; `--retry` says which statuses a rerun tries again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from bench.grid import Cell, Grid
from bench.run.cell_process import run_cell_subprocess
from bench.run.launchers import LaunchContext, Launcher, LocalLauncher
from bench.run.retry import DEFAULT_RETRY, cells_to_run
from bench.run.signals import interrupt_on_signals
from bench.store.compact import compact
from bench.store.curves import compact_curves
from bench.store.read import latest_attempts, read_history
from bench.store.row import ResultRow

__all__ = ["run_grid", "RunSummary", "CellFailure", "run_cell_subprocess"]


@dataclass
class CellFailure:
    label: str
    cell_id: str
    status: str
    error: str  # first line

    def __str__(self) -> str:
        return f"{self.cell_id[:10]}  {self.label}: {self.status}: {self.error}"


@dataclass
class RunSummary:
    ran: int
    skipped: int
    statuses: dict
    report: str = ""
    failures: list[CellFailure] = field(default_factory=list)  # selected cells whose latest attempt is not ok
    pending: int = 0  # submitted jobs still running (--no-wait)

    @property
    def exit_code(self) -> int:
        """1 when some selected cell's latest attempt is not ok, else 0 (pending jobs are not failures)."""
        return 1 if self.failures else 0

    def failure_text(self) -> str:
        return "\n".join(f"  {f}" for f in self.failures)


def _failures(cells: list[Cell], results_dir: Path) -> list[CellFailure]:
    latest = latest_attempts(read_history(results_dir)).set_index("cell_id")
    failures = []
    for cell in cells:
        if cell.cell_id not in latest.index:
            continue  # not run (pending job): counted apart
        row = latest.loc[cell.cell_id]
        if row["status"] != "ok":
            error = (str(row["error"] or "").strip().splitlines() or [""])[0]
            failures.append(CellFailure(cell.label, cell.cell_id, row["status"], error))
    return failures


def run_grid(
    grid: Grid,
    results_dir: Path,
    cells: Optional[list[Cell]] = None,
    data_root: Optional[str] = None,
    progress: bool = True,
    on_row: Optional[Callable[[ResultRow], None]] = None,
    retry: str = DEFAULT_RETRY,
    launcher: Optional[Launcher] = None,
) -> RunSummary:
    """Run the grid's cells that need a run, store each row, then compact and report.

    A stop signal (SIGTERM, SIGINT, SIGHUP) raises `bench.run.signals.Interrupted` here after
    the running cell's process group is ended and scratch files are removed.
    """
    results_dir = Path(results_dir)
    cells = grid.cells if cells is None else cells
    launcher = launcher or LocalLauncher()
    busy = launcher.in_flight(results_dir)
    todo = [(c, a) for c, a in cells_to_run(cells, read_history(results_dir), retry) if c.cell_id not in busy]
    statuses: dict[str, int] = {}

    def record(row: ResultRow) -> None:
        statuses[row.status] = statuses.get(row.status, 0) + 1
        if row.status != "ok":
            tqdm.write(f"[{row.status}] {row.cell_id[:10]}: {(str(row.error or '').splitlines() or [''])[0]}")
        if on_row:
            on_row(row)

    with interrupt_on_signals():
        pending = launcher.launch(todo, LaunchContext(grid.name, results_dir, data_root, progress), record)
        if not pending:
            compact(results_dir)  # results.parquet holds every row once the run is over
            compact_curves(results_dir)  # and curves.parquet every training run's epochs
    from bench.report.write import write_report_files

    # tables (and figures) regenerated from everything measured so far; the console gets the short summary
    report = write_report_files(results_dir).console
    return RunSummary(ran=len(todo), skipped=len(cells) - len(todo), statuses=statuses, report=report,
                      failures=_failures(cells, results_dir), pending=pending)
