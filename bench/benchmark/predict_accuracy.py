"""`make bench`: how well bench.predict predicts measured step times (issue #18; target: median error <= 0.10).

Runs bench/grids/predict_check.yaml (BP, SCPL, GPipe with both backends and DDP
on the ConvNet, batch 32-256, 1 and 2 CPU devices, profiled) into
results/bench/predict_check -- afresh: a folder left by an earlier run is moved to
predict_check_previous first, since the store resumes a folder and a rerun into it would report
the old cells as new -- then predicts every two-device cell from the one-device cells of the same run
and compares: |predicted / measured - 1| per cell, the median and the worst.

    python -m bench.benchmark.predict_accuracy [RESULTS_DIR] [--link NAME|FILE] [--no-run]

prints the comparison cell by cell (the table in docs/PREDICT.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

from bench import REPO_ROOT

__all__ = ["GRID", "RESULTS", "CHECKED", "TARGET", "run_grid", "comparisons", "predict_entry", "main"]

GRID = REPO_ROOT / "bench" / "grids" / "predict_check.yaml"
RESULTS = REPO_ROOT / "results" / "bench" / "predict_check"
CHECKED = {"bp", "scpl", "gpipe", "gpipe_dist", "ddp"}
TARGET = 0.10  # median |predicted / measured - 1| (the goal is 0.05)


def run_grid(results: Path = RESULTS) -> None:
    """Measure the grid afresh (an earlier run's folder moved to `<name>_previous`); a failed cell stays a failed row."""
    if results.exists():
        previous = results.with_name(results.name + "_previous")
        shutil.rmtree(previous, ignore_errors=True)
        results.rename(previous)
    subprocess.run([sys.executable, str(REPO_ROOT / "run_matrix.py"), "--grid", str(GRID), "--results", str(results),
                    "--no-progress"], cwd=REPO_ROOT, check=False)


def comparisons(results: Path = RESULTS, link_name: str = "cpu-shared-memory") -> list:
    """Predicted vs measured for every two-device cell of the checked methods."""
    from bench.predict.links import load_link
    from bench.predict.versus import compare_cells
    from bench.store.read import read_results

    frame = read_results(results)
    found = compare_cells(frame, results, load_link(link_name), methods=CHECKED)
    return sorted(found, key=lambda c: (c.cell.method, c.cell.batch))


def _table(found: list) -> str:
    lines = ["| method | batch | balance | predicted ms | measured ms | predicted / measured |", "|---|---|---|---|---|---|"]
    for c in found:
        balance = "-".join(map(str, c.balance)) or "replicas"
        lines.append(f"| {c.cell.method} | {c.cell.batch} | {balance} | {1000 * c.predicted_s:.1f} | "
                     f"{1000 * c.measured_s:.1f} | {c.ratio:.3f} |")
    return "\n".join(lines)


def predict_entry(results: Path = RESULTS, run: bool = True) -> dict:
    """The bench.json entry: ratio = 1 - median error (met when >= 1 - TARGET), the worst cell in the detail."""
    load_before = os.getloadavg()[1]
    if run:
        run_grid(results)
    load = f"load average (5 min) {load_before:.1f} before, {os.getloadavg()[1]:.1f} after, {os.cpu_count()} cores"
    found = comparisons(results)
    if not found:
        return {"name": "predict_step_time_accuracy", "ratio": 0.0, "target": 1 - TARGET,
                "detail": f"no two-device cell of {sorted(CHECKED)} could be predicted from {results}"}
    errors = [c.error for c in found]
    worst = max(found, key=lambda c: c.error)
    median = statistics.median(errors)
    return {
        "name": "predict_step_time_accuracy", "ratio": 1 - median, "target": 1 - TARGET,
        "detail": (f"bench.predict from the 1-device cells of {GRID.name}: median |predicted/measured - 1| = "
                   f"{median:.3f} over {len(found)} two-device cells (target <= {TARGET}); worst "
                   f"{worst.cell.method} b{worst.cell.batch}: predicted {1000 * worst.predicted_s:.1f} ms, measured "
                   f"{1000 * worst.measured_s:.1f} ms ({worst.ratio:.2f}); {load}"),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default=str(RESULTS))
    parser.add_argument("--link", default="cpu-shared-memory")
    parser.add_argument("--no-run", action="store_true", help="compare what the folder holds; run nothing")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[1]
    if not args.no_run:
        run_grid(Path(args.results))
    print(f"load average (5 min): {load_before:.1f} before, {os.getloadavg()[1]:.1f} after, {os.cpu_count()} cores")
    found = comparisons(Path(args.results), args.link)
    print(_table(found))
    if found:
        errors = [c.error for c in found]
        print(f"\nmedian |predicted/measured - 1| = {statistics.median(errors):.3f}, worst {max(errors):.3f}, "
              f"{len(found)} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
