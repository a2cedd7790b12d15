"""Rows are typed records: built from columns by one function that refuses mistakes; the runner's rows need no torch."""
import dataclasses
import subprocess
import sys

import pytest

from bench.cell.rows import cell_columns, failed_row
from bench.grid import Cell, CellSettings
from bench.store.curves import CURVE_SCHEMA, CurveRow
from bench.store.identity import CellIdentity
from bench.store.records import ColumnError, from_columns
from bench.store.row import ARROW_SCHEMA, ResultRow
from tests.conftest import ROOT

CELL = Cell("g", "bp", "convnet", "cifar10@synthetic", 16, 2, 1, CellSettings(steps=3))


def test_a_misspelled_column_is_an_error_where_the_row_is_built():
    with pytest.raises(ColumnError, match="'test_ac' is not a column.*did you mean 'test_acc'"):
        from_columns(ResultRow, cell_columns(CELL), {"test_ac": 0.5})
    row = failed_row(CELL, "failed", "boom")
    with pytest.raises(AttributeError):  # slots: no attribute written after the fact that is not a column
        row.test_ac = 0.5  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):  # a cell's id is a hash of the rest: it is read-only
        CELL.devices = 1


def test_a_column_written_twice_or_of_the_wrong_type_is_an_error():
    with pytest.raises(ColumnError, match="'status' is given twice"):
        from_columns(ResultRow, cell_columns(CELL), {"status": "ok"}, {"status": "failed"})
    with pytest.raises(ColumnError, match="'balance' = 'auto' is not a list"):
        from_columns(ResultRow, cell_columns(CELL), {"balance": "auto"})
    with pytest.raises(ColumnError, match="'devices'"):
        from_columns(ResultRow, {**cell_columns(CELL), "devices": "2"})
    row = from_columns(ResultRow, cell_columns(CELL), {"step_times_s": [1, 0.5], "oversubscribed": False})
    assert row.step_times_s == [1, 0.5] and row.devices == 2


def test_identity_is_one_type_shared_by_the_cell_and_both_row_types():
    names = list(CELL.identity_columns())
    assert names == ["cell_id", "grid", "method", "model", "dataset", "batch_size", "devices", "trial"]
    assert all(issubclass(kind, CellIdentity) for kind in (Cell, ResultRow, CurveRow))
    assert ARROW_SCHEMA.names[:len(names)] == names and CURVE_SCHEMA.names[:len(names)] == names
    assert dataclasses.replace(CELL, devices=1).cell_id != CELL.cell_id  # the id follows the axes
    assert Cell.from_json(CELL.to_json()) == CELL and Cell.from_json(CELL.to_json()).cell_id == CELL.cell_id
    row = failed_row(CELL, "timeout", "too slow", 3.0)
    assert row.identity_columns() == CELL.identity_columns() and row.data_kind == "synthetic"
    assert (row.seed, row.status, row.error, row.duration_s) == (1, "timeout", "too slow", 3.0)


RUNNER_ROWS = """
import sys
import bench.run.cell_process, bench.run.launchers, bench.run.job, bench.run.runner
from bench.cell.rows import failed_row
from bench.grid import Cell, CellSettings
row = failed_row(Cell("g", "bp", "convnet", "cifar10@synthetic", 16, 1, 0, CellSettings()), "killed", "x")
assert row.torch_version and row.data_kind == "synthetic", row
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
"""


def test_the_runner_builds_failed_rows_without_importing_torch():
    proc = subprocess.run([sys.executable, "-c", RUNNER_ROWS], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
