"""The one place that defines a training curve row, and the files curves land in.

    results/<grid>/curves.parquet        compacted curve rows (what pandas/duckdb read)
    results/<grid>/curves/*.parquet      one fragment per finished training-run attempt

One row per cell x epoch of a training run (`epochs` set).  Written like the
result rows (bench/store/fragments.py): each attempt writes its own fragment
under a unique name by an atomic rename, so any number of writers append at
once; `compact_curves` merges them into curves.parquet under its own lock.
A cell run again (a retry) writes a new fragment; `read_curves` keeps, per
cell, the rows of its latest fragment only.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.store.identity import CellIdentity
from bench.store.layout import StoreError, atomic_write, writer_tag
from bench.store.records import arrow_schema

__all__ = ["CurveRow", "CURVE_SCHEMA", "CURVES_FILE", "CURVES_DIR", "append_curve", "read_curves",
           "compact_curves", "curves_path"]

CURVES_FILE = "curves.parquet"
CURVES_DIR = "curves"
_LOCK_FILE = ".compact_curves.lock"


@dataclass(slots=True)
class CurveRow(CellIdentity):
    """One epoch of one training run. Times exclude evaluation; accuracies are null between evaluations.

    Its first columns are the cell's identity (CellIdentity): join with results.parquet on cell_id.
    """

    epoch: int  # 1-based
    # time
    wall_s: float  # training wall-clock since the run started, at this epoch's end (evaluation excluded)
    epoch_time_s: float  # this epoch, every device synchronised
    data_wait_s: float  # time the executor's feeding loop was blocked on the data loader
    samples_per_s: float  # training samples (both views of a two-view batch) / epoch_time_s
    # training
    train_loss: float  # mean over the epoch's batches of the loss summed over stages
    stage_losses: list[float] = field(default_factory=list)  # per stage, mean over the epoch (decoupled methods)
    lr: float = 0.0  # of the first optimizer, during this epoch
    # evaluation (after this epoch; null when the epoch was not evaluated)
    val_acc: Optional[float] = None  # validation hold-out, final head
    test_acc: Optional[float] = None  # whole test set, final head
    exit_acc: list[float] = field(default_factory=list)  # test accuracy per exit (methods with exits)
    # bookkeeping
    attempt_id: Optional[str] = None  # the fragment this row came from (one per attempt)
    finished_at: Optional[str] = None  # UTC ISO time the attempt's curve was stored


CURVE_SCHEMA = arrow_schema(CurveRow)


def curves_path(results_dir: Path) -> Path:
    return Path(results_dir) / CURVES_FILE


def _fragments(results_dir: Path) -> list[Path]:
    folder = Path(results_dir) / CURVES_DIR
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []


def append_curve(results_dir: Path, rows: Iterable[CurveRow]) -> Optional[Path]:
    """Store one attempt's curve as a new fragment (None when there are no rows)."""
    rows = list(rows)
    if not rows:
        return None
    now = _dt.datetime.now(_dt.timezone.utc)
    stem = f"{rows[0].cell_id}-{now.strftime('%Y%m%dT%H%M%S%f')}-{writer_tag()}-{uuid.uuid4().hex[:8]}"
    records = [{**row.to_dict(), "attempt_id": stem, "finished_at": now.isoformat(timespec="microseconds")}
               for row in rows]
    table = pa.Table.from_pylist(records, schema=CURVE_SCHEMA)
    folder = Path(results_dir) / CURVES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write(folder / f"{stem}.parquet", lambda tmp: pq.write_table(table, tmp))


def _read(path: Path) -> Optional[pa.Table]:
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None  # merged and deleted by a compaction since it was listed
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{path} is not a readable parquet file ({exc}): move it out of the folder") from None
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
               for f in CURVE_SCHEMA]
    return pa.Table.from_arrays(columns, schema=CURVE_SCHEMA)


def _history(results_dir: Path, fragments: list[Path]) -> pd.DataFrame:
    """Every stored curve row: curves.parquet first, then the fragments (read after, see read.py)."""
    tables = [t for t in [_read(curves_path(results_dir))] if t is not None] if curves_path(results_dir).exists() else []
    tables += [t for t in (_read(p) for p in fragments) if t is not None]
    if not tables:
        return CURVE_SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables).to_pandas()
    return frame.drop_duplicates(["attempt_id", "epoch"], keep="first").reset_index(drop=True)


def read_curves(results_dir: Path, all_attempts: bool = False) -> pd.DataFrame:
    """The curves of a results folder: per cell, its latest attempt's rows (every attempt's if asked)."""
    frame = _history(Path(results_dir), _fragments(Path(results_dir)))
    if frame.empty or all_attempts:
        return frame
    latest = frame.sort_values("finished_at").groupby("cell_id")["attempt_id"].last()
    frame = frame[frame["attempt_id"] == frame["cell_id"].map(latest)]
    return frame.sort_values(["cell_id", "epoch"], kind="stable").reset_index(drop=True)


def compact_curves(results_dir: Path) -> int:
    """Merge every curve fragment into curves.parquet (every attempt kept); returns the rows stored."""
    results_dir = Path(results_dir)
    fragments = _fragments(results_dir)
    if not fragments:
        return len(_history(results_dir, [])) if curves_path(results_dir).exists() else 0
    fd = os.open(results_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        fragments = _fragments(results_dir)  # again, under the lock
        history = _history(results_dir, fragments)
        table = pa.Table.from_pandas(history, schema=CURVE_SCHEMA, preserve_index=False)
        atomic_write(curves_path(results_dir), lambda tmp: pq.write_table(table, tmp))
        for path in fragments:
            path.unlink(missing_ok=True)
        return len(history)
    finally:
        os.close(fd)
