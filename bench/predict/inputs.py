"""The one-device cells of a results folder, turned into stage costs (`CostCurve`s) per method and network.

Where the numbers come from, best first:
1. the cell's profiled run (a trace): each stage's forward, loss, backward and
   update, per recorded step; a label naming no stage (BP's `bp/backward`, one
   autograd call through every stage) is split over the stages by their share
   of the forward FLOPs, an unstaged update by parameter bytes;
2. the timed run's per-stage busy times (decoupled methods): each stage's time
   split 1 : 2 between forward and backward (loss and update counted in the backward);
3. the timed step alone (coupled methods): split over the stages by their
   FLOP share, then 1 : 2 as above.
Every cell's costs are scaled so that they add up to its timed median step:
the prediction for one device is what was measured.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from .costs import CostCurve, StageCosts
from .model_facts import ModelFacts, model_facts

__all__ = ["Network", "CellFacts", "one_device_cells", "cell_costs", "cost_curves", "options_of"]

FORWARD_SHARE = 1 / 3  # forward : backward = 1 : 2 (a backward computes two products per forward one)


@dataclass(frozen=True)
class Network:
    """What a cost profile is a profile of: the model, its data, its keyword arguments."""

    model: str
    dataset: str
    kwargs_json: str = "{}"


@dataclass(frozen=True)
class CellFacts:
    """What the predictor reads from one stored cell."""

    method: str
    network: Network
    batch: int
    devices: int
    step_s: Optional[float]
    settings: dict[str, Any]
    device_kind: str
    row: Any  # the frame's row (a pandas Series)


def options_of(method: str, settings: dict[str, Any]) -> dict:
    """The `method_options` that apply to `method` (flat, or per method: CellSettings.options_for's rule)."""
    from methods import list_methods

    opts = settings.get("method_options") or {}
    known = list_methods()
    if opts and all(key in known and isinstance(v, dict) for key, v in opts.items()):
        return dict(opts.get(method, {}))
    return dict(opts)


def _facts(row: Any) -> CellFacts:
    settings = json.loads(row["settings_json"]) if isinstance(row.get("settings_json"), str) else {}
    network = Network(row["model"], row["dataset"], json.dumps(settings.get("model_kwargs") or {}, sort_keys=True))
    step = row.get("step_time_median_s")
    return CellFacts(row["method"], network, int(row["batch_size"]), int(row["devices"]),
                     float(step) if pd.notna(step) else None, settings, str(row.get("device_kind") or "cpu"), row)


def one_device_cells(frame: pd.DataFrame) -> list[CellFacts]:
    """Every finished one-device cell with a timed step."""
    ok = frame[(frame["status"] == "ok") & (frame["devices"] == 1) & frame["step_time_median_s"].notna()]
    return [_facts(row) for _, row in ok.iterrows()]


def all_cells(frame: pd.DataFrame) -> list[CellFacts]:
    """Every finished cell with a timed step (the measured side of predicted vs measured)."""
    ok = frame[(frame["status"] == "ok") & frame["step_time_median_s"].notna()]
    return [_facts(row) for _, row in ok.iterrows()]


def _split(totals: list[float], facts: ModelFacts, batch: int) -> StageCosts:
    n = len(totals)
    return StageCosts(batch, tuple(t * FORWARD_SHARE for t in totals), (0.0,) * n,
                      tuple(t * (1 - FORWARD_SHARE) for t in totals), (0.0,) * n)


def _from_trace(directory: Path, facts: ModelFacts, batch: int) -> Optional[StageCosts]:
    from bench.profiling.trace_events import load_trace_dir

    try:
        trace = load_trace_dir(directory)
    except (FileNotFoundError, OSError, ValueError):
        return None
    n = len(facts.flop_share)
    per = {phase: [0.0] * n for phase in ("FW", "LOSS", "BW", "UP")}
    for e in trace.phases:
        if e.phase not in per:
            continue  # copies between stages on one device cost nothing worth keeping
        seconds = (e.end_us - e.start_us) / 1e6
        if e.stage is not None and e.stage < n:
            per[e.phase][e.stage] += seconds
            continue
        weights = facts.flop_share if e.phase != "UP" else [p / (sum(facts.parameter_bytes) or 1.0)
                                                               for p in facts.parameter_bytes]
        for k in range(n):
            per[e.phase][k] += seconds * weights[k]
    steps = max(1, len(trace.steps))
    if not any(any(v) for v in per.values()):
        return None
    return StageCosts(batch, *(tuple(v / steps for v in per[p]) for p in ("FW", "LOSS", "BW", "UP")))


def _scaled_to(costs: StageCosts, step_s: float) -> StageCosts:
    r = step_s / costs.total if costs.total > 0 else 1.0
    return StageCosts(costs.batch, *(tuple(v * r for v in part)
                                     for part in (costs.forward, costs.loss, costs.backward, costs.update)))


def cell_costs(cell: CellFacts, results_dir: Path) -> Optional[StageCosts]:
    """One one-device cell's stage costs (the rules in the module docstring), or None without a step time."""
    if cell.step_s is None:
        return None
    facts = model_facts(cell.network.model, cell.network.dataset, cell.network.kwargs_json, cache_dir=results_dir)
    trace_dir = cell.row.get("trace_dir")
    costs = None
    if isinstance(trace_dir, str) and trace_dir:
        path = Path(trace_dir) if Path(trace_dir).is_absolute() else Path(results_dir) / trace_dir
        costs = _from_trace(path, facts, cell.batch)
    busy = list(cell.row.get("stage_busy_s") if cell.row.get("stage_busy_s") is not None else [])
    if costs is None and len(busy) == len(facts.flop_share) and sum(busy) > 0:
        costs = _split(busy, facts, cell.batch)
    if costs is None:
        costs = _split(list(facts.flop_share), facts, cell.batch)
    return _scaled_to(costs, cell.step_s)


def cost_curves(cells: list[CellFacts], results_dir: Path) -> dict[tuple[str, Network], CostCurve]:
    """(method, network) -> its costs at every batch size measured on one device."""
    points: dict[tuple[str, Network], dict[int, StageCosts]] = {}
    for cell in cells:
        costs = cell_costs(cell, results_dir)
        if costs is not None:
            points.setdefault((cell.method, cell.network), {})[cell.batch] = costs
    return {key: CostCurve(tuple(by_batch[b] for b in sorted(by_batch)), source=f"{key[0]} on 1 device")
            for key, by_batch in points.items()}
