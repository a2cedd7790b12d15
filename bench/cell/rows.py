"""A cell's result row: the columns every row carries, and the row of a cell that did not finish.

Torch-free on purpose (a test checks it): the runner (bench/run/) records the
rows of cells that timed out, were killed or lost their job, and must not pay
for, or depend on, importing torch to do so.  The cell's own process builds its
row here too (`cell_row`), from the columns its phases measured, so both kinds
of row start from the same columns, and `from_columns` refuses an unknown
column, a column given twice and a value of the wrong type.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, Optional

from bench.cell.provenance import provenance
from bench.grid import Cell
from bench.store.records import from_columns
from bench.store.row import ResultRow

__all__ = ["cell_columns", "cell_row", "failed_row", "utc_now"]


def utc_now() -> str:
    """The time a row records (`started_at`): UTC, ISO 8601, whole seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cell_columns(cell: Cell, started_at: Optional[str] = None) -> dict[str, Any]:
    """What every row of `cell` records, whether or not it ran: what was asked, and where."""
    from data import get_spec  # the specs import no torch

    s = cell.settings
    return {
        **cell.identity_columns(), "data_kind": get_spec(cell.dataset).kind, "seed": cell.seed,
        "epochs": s.epochs, "settings_json": cell.settings_json, "noise_rate": s.noise_rate,
        "val_fraction": s.val_fraction, "started_at": started_at or utc_now(), **provenance(),
    }


def cell_row(cell: Cell, *measured: Mapping[str, Any], started_at: str, duration_s: float) -> ResultRow:
    """The row of a cell that ran: its columns plus every phase's (each column from one phase)."""
    return from_columns(ResultRow, cell_columns(cell, started_at), *measured, {"duration_s": duration_s})


def failed_row(cell: Cell, status: str, error: str, duration_s: Optional[float] = None,
               started_at: Optional[str] = None) -> ResultRow:
    """The row of a cell that did not finish: it still records what was asked."""
    return from_columns(ResultRow, cell_columns(cell, started_at),
                        {"status": status, "error": error, "duration_s": duration_s})
