"""Which cell a stored row belongs to: the identity columns, declared once.

A result row (row.py) and a training-curve row (curves.py) both start with
these columns, so either file joins the other on `cell_id` and filters by the
grid's axes without a lookup; both row types inherit them from here, and the
cell (bench/grid/cells.py) hands out its own as `Cell.row_identity`.

No pyarrow and no torch here: the grid imports this module on load.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["CellIdentity"]


@dataclass(slots=True)
class CellIdentity:
    """A cell's id (a hash of everything that determines its measurement) and its grid axes.

    Not frozen: the row types inherit these fields and rows are filled in as a cell runs.
    """

    cell_id: str
    grid: str
    method: str
    model: str
    dataset: str
    batch_size: int
    devices: int
    trial: int

    def identity_columns(self) -> dict[str, Any]:
        """The identity columns only (a row's other columns left out), to start another row with."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(CellIdentity)}

    def to_dict(self) -> dict[str, Any]:
        """Every column of the row, identity first (what a parquet fragment stores)."""
        return dataclasses.asdict(self)
