"""Which cells a (re)run runs: never-tried ones, plus those whose latest attempt `--retry` names."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.grid import Cell
from bench.store.read import latest_attempts, read_results
from bench.store.row import STATUSES

__all__ = ["RETRY_POLICIES", "DEFAULT_RETRY", "cells_to_run", "finished_cell_ids"]

RETRY_POLICIES: dict[str, tuple[str, ...]] = {
    "none": (),
    "timeout": ("timeout", "killed"),  # ran out of time or was killed: may pass on another try
    "failed": tuple(s for s in STATUSES if s != "ok"),  # also exceptions and NaN losses
    "all": STATUSES,  # every cell again (new attempts; the old ones stay in the history)
}
DEFAULT_RETRY = "timeout"


def cells_to_run(cells: Iterable[Cell], history: pd.DataFrame, retry: str = DEFAULT_RETRY) -> list[tuple[Cell, int]]:
    """(cell, attempt number) for each cell to run now, in grid order."""
    if retry not in RETRY_POLICIES:
        raise ValueError(f"--retry {retry!r}: choose one of {', '.join(RETRY_POLICIES)}")
    if history.empty:
        return [(cell, 1) for cell in cells]
    attempts = history.groupby("cell_id")["attempt"].max()
    latest = latest_attempts(history).set_index("cell_id")["status"]
    todo = []
    for cell in cells:
        if cell.cell_id not in latest.index:
            todo.append((cell, 1))
        elif latest[cell.cell_id] in RETRY_POLICIES[retry]:
            todo.append((cell, int(attempts[cell.cell_id]) + 1))
    return todo


def finished_cell_ids(results_dir: Path, retry: Iterable[str] = RETRY_POLICIES[DEFAULT_RETRY]) -> set[str]:
    """Cells whose latest attempt needs no rerun: any status except those in `retry`."""
    frame = read_results(results_dir)
    if frame.empty:
        return set()
    return set(frame.loc[~frame["status"].isin(list(retry)), "cell_id"])
