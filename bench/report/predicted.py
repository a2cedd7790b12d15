"""The report's "predicted vs measured" section: every multi-device cell bench.predict can predict.

For each: predicted and measured median step (ms) and their ratio, and, where
the cell was profiled, one figure with the measured timeline above the
predicted one on a shared time axis (bench/report/timeline.py draws both).
The predictions come from the folder's one-device cells only (docs/PREDICT.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from bench.report.figure_guard import FigureLog

__all__ = ["predicted_vs_measured"]


def _figure(comparison, frame: pd.DataFrame, results_dir: Path, out_dir: Path, log: FigureLog) -> list[Path]:
    from bench.predict.timeline import predicted_trace
    from bench.report.figures import _timeline_panels
    from bench.report.timeline import TimelinePanel, timeline_figure

    cell = comparison.cell
    row = frame[frame["cell_id"] == cell.row["cell_id"]]
    if row.empty or not isinstance(cell.row.get("trace_dir"), str):
        return []

    def draw():
        measured = _timeline_panels(row, results_dir)
        if not measured:
            return None
        measured[0].title = f"measured: {measured[0].title}"
        predicted = TimelinePanel(f"predicted: {cell.method}, {cell.devices} devices",
                                  predicted_trace(comparison.outcome), list(comparison.outcome.lanes))
        return timeline_figure([measured[0], predicted])

    stem = f"predicted_vs_measured_{cell.method}_{cell.network.model}_b{cell.batch}_d{cell.devices}"
    return log.save(out_dir / stem, draw)


def predicted_vs_measured(results_dir: Path, frame: pd.DataFrame, out_dir: Path,
                          log: Optional[FigureLog] = None) -> tuple[str, list[Path]]:
    """(markdown, figures) of the section; ("", []) when no cell has both a prediction and a measurement."""
    from bench.predict.links import DEFAULT_LINK, load_link
    from bench.predict.versus import compare_cells

    log = log if log is not None else FigureLog()
    if not ((frame["status"] == "ok") & (frame["devices"] == 1)).any() or not (frame["devices"] > 1).any():
        return "", []
    found = compare_cells(frame, Path(results_dir), load_link(DEFAULT_LINK))
    if not found:
        return "", []
    lines = [f"Predicted by `python -m bench.predict` from this folder's one-device cells over the "
             f"`{DEFAULT_LINK}` link (docs/PREDICT.md); each profiled cell's figure shows the measured "
             "timeline above the predicted one.", "",
             "| method | model | batch | devices | balance | predicted ms | measured ms | predicted / measured | figure |",
             "|---|---|---|---|---|---|---|---|---|"]
    figures: list[Path] = []
    for c in sorted(found, key=lambda c: (c.cell.network.model, c.cell.batch, c.cell.devices, c.cell.method)):
        drawn = _figure(c, frame, Path(results_dir), out_dir, log)
        figures += drawn
        name = next((p.stem for p in drawn if p.suffix == ".png"), "")
        balance = "-".join(map(str, c.balance)) or "replicas"
        lines.append(f"| {c.cell.method} | {c.cell.network.model} | {c.cell.batch} | {c.cell.devices} | {balance} | "
                     f"{1000 * c.predicted_s:.1f} | {1000 * c.measured_s:.1f} | {c.ratio:.2f} | {name} |")
    return "\n".join(lines) + "\n", figures
