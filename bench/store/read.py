"""Reading a results folder as one data set: results.parquet plus every fragment.

A cell's rows are its attempts. `read_history` returns them all; `read_results` the latest
per cell, which is what tables report (a cell that timed out and then succeeded is a
success). Old folders with only a results.parquet (schema 1, no attempt columns) read too:
their rows are numbered as attempts in the order they were stored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.store.fragments import list_fragments
from bench.store.layout import StoreError, results_path
from bench.store.records import from_columns
from bench.store.row import ARROW_SCHEMA, ResultRow

__all__ = ["read_history", "read_results", "latest_attempts", "read_table_file", "frame_rows"]


def read_table_file(path: Path) -> Optional[pa.Table]:
    """One stored file conformed to the schema (missing columns null); None if it vanished.

    A file that is not parquet raises StoreError naming it and what to do, not a traceback.
    """
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None  # a fragment merged and deleted by a compaction since it was listed
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"{path} is not a readable parquet file ({first}): move it out of the folder "
                         f"(its rows are lost; rerun the grid to measure those cells again)") from None
    columns = []
    for field in ARROW_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def _tables(results_dir: Path, fragments: Optional[Sequence[Path]]) -> list[pa.Table]:
    """Fragments first, results.parquet last: a compaction renames results.parquet before it
    deletes the fragments it merged, so a fragment gone missing is always in the file read after."""
    fragments = list_fragments(results_dir) if fragments is None else fragments
    tables = []
    for path in fragments:
        table = read_table_file(path)
        if table is not None:
            ids = table.column("attempt_id").fill_null(path.stem)
            tables.append(table.set_column(ARROW_SCHEMA.get_field_index("attempt_id"), "attempt_id", ids))
    compacted = results_path(results_dir)
    if compacted.exists():
        table = read_table_file(compacted)
        if table is not None:
            legacy = pa.array([f"legacy-{i}" for i in range(len(table))], pa.string())
            ids = pc.coalesce(table.column("attempt_id"), legacy)
            tables.insert(0, table.set_column(ARROW_SCHEMA.get_field_index("attempt_id"), "attempt_id", ids))
    return tables


def read_history(results_dir: Path, fragments: Optional[Sequence[Path]] = None) -> pd.DataFrame:
    """Every attempt of every cell, each once, with `attempt` filled in (empty frame if none)."""
    tables = _tables(Path(results_dir), fragments)
    if not tables:
        return ARROW_SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables).to_pandas()
    frame = frame.drop_duplicates("attempt_id", keep="first")  # merged, not yet deleted: in both
    frame["_order"] = range(len(frame))
    frame = frame.sort_values(["finished_at", "_order"], na_position="first", kind="stable")
    numbered = frame.groupby("cell_id", sort=False).cumcount() + 1
    frame["attempt"] = frame["attempt"].fillna(numbered).astype("int64")
    return frame.drop(columns="_order").reset_index(drop=True)


def latest_attempts(history: pd.DataFrame) -> pd.DataFrame:
    """The last attempt of each cell (highest attempt number, then latest finish)."""
    if history.empty:
        return history
    frame = history.assign(_order=range(len(history)))
    frame = frame.sort_values(["attempt", "finished_at", "_order"], na_position="first", kind="stable")
    latest = frame.groupby("cell_id", sort=False).tail(1).sort_values("_order")
    return latest.drop(columns="_order").reset_index(drop=True)


def read_results(results_dir: Path) -> pd.DataFrame:
    """The latest attempt of each cell: what reports and tables are made of."""
    return latest_attempts(read_history(results_dir))


def frame_rows(frame: pd.DataFrame) -> list[ResultRow]:
    """Rows read back as ResultRow records (through Arrow: lists as lists, missing values as None)."""
    records = pa.Table.from_pandas(frame, schema=ARROW_SCHEMA, preserve_index=False).to_pylist()
    return [from_columns(ResultRow, record) for record in records]
