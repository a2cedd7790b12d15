"""Which cell a stored row belongs to: the identity columns, declared once.

The grid's cell (bench/grid/cells.py: identity + settings), a result row
(row.py) and a training-curve row (curves.py) all inherit these fields, so each
is declared once, and both parquet files start with these columns: either joins
the other on `cell_id` and filters by the grid's axes without a lookup.

Not frozen, because rows are records callers fill in (a dataclass hierarchy is
frozen or not as a whole); the Cell refuses changes itself, its id being a hash
of the rest.

No pyarrow and no torch here: the grid imports this module on load.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["CellIdentity"]


@dataclass(slots=True)
class CellIdentity:
    """A cell's id (a hash of everything that determines its measurement) and its grid axes."""

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
