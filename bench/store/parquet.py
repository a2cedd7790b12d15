"""results/<grid>/: the store's public face (kept under its old name for its callers).

Rows are appended as one fragment per cell attempt (`fragments.py`), read back as one data
set with the latest attempt per cell (`read.py`) and merged into results.parquet by
`compact` (`compact.py`), which the runner calls when a run ends. Why fragments and not a
database: the contract is parquet files pandas and duckdb read directly; a fragment needs
no server, no lock to append and works across hosts on a shared file system, where SQLite's
locking is unreliable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.store.compact import Compaction, compact
from bench.store.fragments import append_rows, list_fragments
from bench.store.layout import RESULTS_FILE, StoreError, check_results_dir, remove_stale_temps, results_path
from bench.store.read import latest_attempts, read_history, read_results

__all__ = [
    "RESULTS_FILE", "StoreError", "results_path", "append_rows", "list_fragments", "read_results",
    "read_history", "latest_attempts", "compact", "Compaction", "check_results_dir", "remove_stale_temps",
    "finished_cell_ids", "has_rows",
]

RETRIED_BY_DEFAULT = ("timeout", "killed")


def finished_cell_ids(results_dir: Path, retry: Iterable[str] = RETRIED_BY_DEFAULT) -> set[str]:
    """Cells whose latest attempt needs no rerun: any status except those in `retry`."""
    frame = read_results(results_dir)
    if frame.empty:
        return set()
    return set(frame.loc[~frame["status"].isin(list(retry)), "cell_id"])


def has_rows(results_dir: Path) -> bool:
    """Whether the folder holds any stored row (results.parquet or a fragment)."""
    return results_path(results_dir).exists() or bool(list_fragments(results_dir))
