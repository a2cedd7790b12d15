"""results/<grid>/results.parquet: append a finished cell atomically, read what is done.

Atomic: the new file is written beside the old one and renamed over it, so a
runner killed at any moment leaves either the old or the new file, never half
of one, and no finished cell is lost.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.store.row import ARROW_SCHEMA, ResultRow

__all__ = ["results_path", "append_rows", "read_results", "finished_cell_ids"]

RESULTS_FILE = "results.parquet"


def results_path(results_dir: Path) -> Path:
    return Path(results_dir) / RESULTS_FILE


def read_results(results_dir: Path) -> pd.DataFrame:
    """All rows so far (empty frame with the schema's columns if none)."""
    path = results_path(results_dir)
    if not path.exists():
        return ARROW_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path).to_pandas()


def append_rows(results_dir: Path, rows: Iterable[ResultRow]) -> Path:
    path = results_path(results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pa.Table.from_pylist([r.to_dict() for r in rows], schema=ARROW_SCHEMA)
    if path.exists():
        old = pq.read_table(path)
        new = pa.concat_tables([old.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA), new])
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(new, tmp)
    os.replace(tmp, path)
    return path


def finished_cell_ids(results_dir: Path) -> set[str]:
    """Cells that completed (any status except a timeout, which a rerun retries)."""
    frame = read_results(results_dir)
    if frame.empty:
        return set()
    return set(frame.loc[frame["status"] != "timeout", "cell_id"])
