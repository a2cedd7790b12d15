"""`python -m bench.cell CELL.json ROW.json [DATA_ROOT] [RESULTS_DIR]`: one cell in this process.

The runner's supervisor (bench/run/cell_entry.py) starts this once per cell in a
fresh interpreter, with the thread budget in the environment before torch is
imported, so no global flag of one cell can leak into the next.  Every failure
becomes a status row (`nan`, `timeout`, `failed`); the row is written to ROW.json
by a rename, so the runner reads a whole row or none.  RESULTS_DIR is where
traces, checkpoints and curves go.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from bench.cell.phases import run_cell
from bench.cell.rows import failed_row, utc_now
from bench.cell.watchdog import EpochTimeout
from bench.execution.record import NonFiniteLossError
from bench.grid import Cell

__all__ = ["main"]


def main(argv: list[str]) -> int:
    cell_path, row_path = argv[1], argv[2]
    data_root = argv[3] if len(argv) > 3 and argv[3] else None
    results_dir = Path(argv[4]) if len(argv) > 4 and argv[4] else None
    cell = Cell.from_json(Path(cell_path).read_text())
    started_at, start = utc_now(), time.perf_counter()
    try:
        row = run_cell(cell, data_root, results_dir)
    except NonFiniteLossError as exc:
        row = failed_row(cell, "nan", str(exc), time.perf_counter() - start, started_at)
    except EpochTimeout as exc:  # a training run's epoch ran past timeout_s; a rerun resumes from its checkpoint
        row = failed_row(cell, "timeout", str(exc), time.perf_counter() - start, started_at)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status row
        row = failed_row(cell, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start, started_at)
        traceback.print_exc()
    tmp = Path(row_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(row.to_dict()))
    tmp.replace(row_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
