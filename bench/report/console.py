"""The few lines a run ends with on the console; everything else lives in report.html and the .md/.csv files.

Why short: after `make demo` a newcomer should see whether the run worked and
what it measured, not five tables.  The summary holds the speedup tables, the
health of the results (how many cells ok and not, and the runs whose training
health is flagged: did not learn, still improving, unstable), any figure
that could not be drawn, and where the report page, the tables and the
figures are.  The paper's accuracy beside ours appears only for training runs
on real data: a few sampled steps on a synthetic twin have nothing to compare.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

__all__ = ["compares_accuracy_with_paper", "health_line", "where_line", "console_summary"]


def compares_accuracy_with_paper(frame: pd.DataFrame) -> bool:
    """Whether the results hold a training run on real data (the only rows whose accuracy means anything)."""
    needed = {"epoch_time_kind", "data_kind", "status"}
    if not needed <= set(frame.columns):
        return False
    return bool(((frame["epoch_time_kind"] == "measured") & (frame["data_kind"] == "real")
                 & (frame["status"] == "ok")).any())


def health_line(frame: pd.DataFrame) -> str:
    """`cells: 6 ok, 1 failed, 1 timeout` over the latest attempt of every cell in the results.

    The cells that did not finish are named by the runner right after (with their errors) and in
    report.html; here only the counts.
    """
    counts = frame["status"].value_counts()
    others = "".join(f", {n} {status}" for status, n in counts.items() if status != "ok")
    return f"cells: {int(counts.get('ok', 0))} ok{others}"


def where_line(results_dir: Path, page: Path, figures: Sequence[Path], plots: Path) -> str:
    """Where the report page, the tables and the figures are."""
    line = f"report: {page} (every table as .md/.csv in {Path(results_dir)}/)"
    return line + (f"; {len(figures)} figure file(s) in {plots}/" if figures else "")


def console_summary(speedups: Sequence[str], accuracy_comparisons: Sequence[str], frame: pd.DataFrame,
                    notes: Sequence[str], where: str, training_health: str = "") -> str:
    """The speedup tables, the paper's accuracy where it applies, health, notes (figures not drawn), where.

    `training_health`: the flagged runs' block (bench/report/health_report.py), under the cell counts.
    """
    parts = list(speedups)
    if compares_accuracy_with_paper(frame):
        parts += accuracy_comparisons
    return "\n".join(parts + [health_line(frame)] + [n for n in [training_health.rstrip(), *notes] if n] + [where])
