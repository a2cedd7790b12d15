"""The function a submitit job runs: one cell, its row into the shared store.

The same cell entry as a local run (`run_cell_subprocess`: own process group, timeout,
statuses), so a cell behaves alike on a laptop and in a Slurm job. The row is written by
the job itself as a fragment, so it is stored even when nobody waits for the job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from bench.grid import Cell
from bench.run.cell_process import run_cell_subprocess
from bench.run.scratch import scratch_dir
from bench.store.fragments import append_rows

__all__ = ["run_cell_job"]


def run_cell_job(cell_json: str, attempt: int, data_root: Optional[str], results_dir: str) -> dict:
    """Run the cell, store its row (attempt `attempt`), return the row as a dict."""
    cell = Cell.from_json(cell_json)
    with scratch_dir(Path(results_dir)) as tmp:
        row = run_cell_subprocess(cell, data_root, tmp, Path(results_dir))
    row.attempt = attempt
    append_rows(Path(results_dir), [row])
    return row.to_dict()
