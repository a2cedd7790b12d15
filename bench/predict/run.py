"""One results folder in, predict.md and predict.csv out (what the command does)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .inputs import all_cells
from .links import Link
from .predictor import PredictError, predict_grid

__all__ = ["predict_folder", "measured_steps"]


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


def predict_folder(results_dir: Path, devices: Sequence[int], link: Link, balance: object = "all") -> list[Path]:
    """Predict every method of the folder on `devices`; write the tables; return their paths."""
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
    return write_tables(predictions, results_dir, link, measured_steps(frame))
