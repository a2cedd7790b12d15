"""Appending rows: one parquet fragment per finished cell attempt, never a read-modify-write.

Any number of writers (threads, processes, hosts sharing a file system) append at once
without losing rows, because no two writers ever touch the same file: each fragment has a
unique name (cell, time, host, pid, random) and appears by an atomic rename. Appending costs
the same however many rows are stored; `compact` later merges fragments into results.parquet.
"""
from __future__ import annotations

import datetime as _dt
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from bench.store.layout import atomic_write, results_path, rows_dir, writer_tag
from bench.store.row import ARROW_SCHEMA, ResultRow

__all__ = ["append_rows", "list_fragments"]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def append_rows(results_dir: Path, rows: Iterable[ResultRow]) -> Path:
    """Store `rows` (usually one: a cell attempt) as a new fragment; returns its path.

    Rows without `finished_at`/`attempt_id` get them here; `attempt` is the caller's to set
    (the runner knows it from the history it read to choose the cell), else readers number
    a cell's rows in the order they were stored. The first append into a folder also creates
    results.parquet (a compaction of the few fragments there), so a folder with rows always
    has the file that tools outside the store look for.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("append_rows needs at least one row")
    now = _now()
    stem = f"{rows[0].cell_id}-{now.strftime('%Y%m%dT%H%M%S%f')}-{writer_tag()}-{uuid.uuid4().hex[:8]}"
    records = []
    for i, row in enumerate(rows):
        record = row.to_dict()
        record["finished_at"] = record["finished_at"] or now.isoformat(timespec="microseconds")
        record["attempt_id"] = record["attempt_id"] or (stem if len(rows) == 1 else f"{stem}#{i}")
        records.append(record)
    table = pa.Table.from_pylist(records, schema=ARROW_SCHEMA)
    folder = rows_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = atomic_write(folder / f"{stem}.parquet", lambda tmp: pq.write_table(table, tmp))
    if not results_path(results_dir).exists():
        from bench.store.compact import compact  # compact imports this module

        compact(results_dir)
    return path


def list_fragments(results_dir: Path) -> list[Path]:
    """The finished fragments (temp names are hidden, so never listed), oldest name first."""
    folder = rows_dir(results_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
