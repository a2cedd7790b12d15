"""`make bench`: how long `run_matrix.py --dry-run` takes on a 10,000-cell grid (target: 2 s).

The dry run itself is bench/run/dry_run.py; this module only times it.

Why measure it: a user sizes and splits big grids with `--dry-run`, and every
value of every cell is validated on load, so the check must stay cheap.  The
time includes the interpreter start and torch's import (the feasibility checks
build each distinct model once on the meta device); the grid's 10,000 cells
share 400 configurations, as trials of a real grid do.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import REPO_ROOT

__all__ = ["GRID", "dry_run_seconds", "dry_run_entry", "TARGET_S"]

TARGET_S = 2.0
GRID = """name: dry_run_bench
axes:
  method: [bp, scpl, dascpl, early_exit, al]
  model: [convnet, vgg8]
  dataset: [cifar10@synthetic]
  batch_size: [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
  devices: [1, 2, 3, 4]
  trial: 25
settings: {steps: 2}
"""


def dry_run_seconds(rounds: int = 3) -> list[float]:
    """Wall seconds of each `--dry-run` of the 10,000-cell grid (a fresh interpreter each time)."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "dry_run_bench.yaml"
        grid.write_text(GRID)
        for _ in range(rounds):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "run_matrix.py", "--grid", str(grid), "--dry-run",
                                   "--results", str(Path(tmp) / "results")], cwd=REPO_ROOT, capture_output=True,
                                  text=True)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0 or "10000 cells" not in proc.stdout:
                raise RuntimeError(f"dry run failed: {proc.stderr.strip()[-300:]}")
    return times


def dry_run_entry(rounds: int = 3) -> dict:
    """The bench.json entry: ratio = target / median seconds (>= 1 meets the 2 s target)."""
    times = dry_run_seconds(rounds)
    median = statistics.median(times)
    return {"name": "dry_run_10000_cells", "ratio": TARGET_S / median, "target": 1.0,
            "detail": f"--dry-run of a 10,000-cell grid: median {median:.2f} s over {rounds} runs "
                      f"({', '.join(f'{t:.2f}' for t in times)} s); target {TARGET_S:.0f} s"}


if __name__ == "__main__":
    print(dry_run_entry())
