"""Predicted vs measured: each multi-device cell of a folder, simulated with the split it ran with.

The predictions use the folder's one-device cells only (as `predict_grid`
does), so a cell's own measurement never feeds its prediction.  What `make
bench` checks (bench/benchmark/predict_accuracy.py) and the report's
"predicted vs measured" section draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from .inputs import CellFacts, all_cells, cost_curves, one_device_cells, options_of
from .links import Link
from .outcome import Outcome
from .overheads import measured_overheads, overhead_for
from .predictor import bp_like_method, curve_for, facts_of, predict_cell

__all__ = ["Comparison", "compare_cells"]


@dataclass(frozen=True)
class Comparison:
    cell: CellFacts
    balance: tuple[int, ...]
    predicted_s: float
    measured_s: float
    outcome: Outcome

    @property
    def ratio(self) -> float:
        return self.predicted_s / self.measured_s

    @property
    def error(self) -> float:
        return abs(self.ratio - 1.0)


def compare_cells(frame: pd.DataFrame, results_dir: Path, link: Link,
                  methods: Optional[set[str]] = None) -> list[Comparison]:
    """Every finished multi-device cell (of `methods`, default all) that the one-device cells can predict."""
    from methods import method_class

    ones = one_device_cells(frame)
    curves = cost_curves(ones, Path(results_dir))
    cells = all_cells(frame)
    bp = bp_like_method(sorted({c.method for c in ones}), {c.method: c.settings for c in cells})
    overheads = measured_overheads(ones, curves, bp, link, Path(results_dir))
    out = []
    for cell in cells:
        if cell.devices < 2 or (methods is not None and cell.method not in methods) or cell.step_s is None:
            continue
        cls = method_class(cell.method)
        schedule = cls.schedule_for(options_of(cell.method, cell.settings))
        curve = curve_for(cell.method, schedule, cell.network, curves, bp)
        if curve is None:
            continue
        recorded = cell.row.get("balance")
        balance = tuple(int(b) for b in recorded) if recorded is not None and len(recorded) else ()
        split = None if schedule == "data_parallel" else (balance or None)
        if split is not None and (len(split) != cell.devices or sum(split) != curve.num_stages):
            continue
        if split is None and schedule != "data_parallel":
            continue
        outcome = predict_cell(cell.method, curve, cell.network, cell.batch, cell.devices, split, link,
                               cell.settings, cell.device_kind, facts_of(cell.network, Path(results_dir)),
                               overhead_for(overheads, cell.method, cell.network, schedule, cell.batch, cell.devices))
        out.append(Comparison(cell, balance, outcome.step_s, cell.step_s, outcome))
    return out
