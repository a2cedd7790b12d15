"""One results folder in, predict.md and predict.csv out (what the command does)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .inputs import all_cells
from .links import Link
from .predictor import PredictError, Prediction, best_balances, predict_grid

__all__ = ["predict_folder", "measured_steps", "timeline_figures"]


def measured_steps(frame) -> dict:
    """(method, network, batch, devices, balance) -> the measured median step, for predicted vs measured."""
    out = {}
    for cell in all_cells(frame):
        recorded = cell.row.get("balance")
        balance = tuple(int(b) for b in recorded) if recorded is not None else ()
        # a data-parallel prediction has no balance: match it whatever the row recorded
        out[(cell.method, cell.network, cell.batch, cell.devices, balance)] = cell.step_s
        out.setdefault((cell.method, cell.network, cell.batch, cell.devices, ()), cell.step_s)
    return out


def timeline_figures(predictions: Sequence[Prediction], out_dir: Path) -> list[Path]:
    """Per network, batch and device count: every method's best split, predicted, as bench.report draws timelines."""
    from bench.report.timeline import TimelinePanel, save_figure, timeline_figure

    from .timeline import predicted_trace

    groups: dict[tuple, list[Prediction]] = {}
    for p in best_balances(predictions).values():
        groups.setdefault((p.network.model, p.network.dataset, p.batch, p.devices), []).append(p)
    written: list[Path] = []
    for (model, dataset, batch, n), part in sorted(groups.items()):
        panels = [TimelinePanel(f"{p.method} predicted, {n} devices, balance {'-'.join(map(str, p.balance)) or 'replicas'}",
                                predicted_trace(p.outcome), list(p.outcome.lanes),
                                step=len(p.outcome.completions) // 2)  # mid-run: no fill, no drain
                  for p in sorted(part, key=lambda p: p.method)]
        stem = out_dir / f"predicted_timeline_{model}_{dataset.replace('@', '-')}_b{batch}_d{n}"
        written += save_figure(timeline_figure(panels), stem)
    return written


def predict_folder(results_dir: Path, devices: Sequence[int], link: Link, balance: object = "all",
                   timelines: bool = False) -> list[Path]:
    """Predict every method of the folder on `devices`; write the tables (and timelines); return their paths."""
    from bench.store.layout import StoreError
    from bench.store.read import read_results

    if not Path(results_dir).is_dir():
        raise PredictError(f"{results_dir}: no such results folder")
    try:
        frame = read_results(results_dir)
    except StoreError as exc:
        raise PredictError(str(exc)) from None
    if frame.empty:
        raise PredictError(f"{results_dir}: no result rows (run the grid first)")
    from .tables import write_tables

    predictions = predict_grid(frame, results_dir, devices, link, balance)
    if not predictions:
        raise PredictError(f"{results_dir}: nothing to predict on {list(devices)} devices "
                           "(no method has one-device costs, or no split fits)")
    written = write_tables(predictions, results_dir, link, measured_steps(frame))
    if timelines:
        from bench.report.figures import plots_dir

        written += timeline_figures(predictions, plots_dir(results_dir))
    return written
