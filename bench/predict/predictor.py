"""Predictions for a grid: every method x network x batch x device count x stage split, simulated.

Whose costs a method is simulated with: its own one-device cells when its
one-device run *is* its stage work (the schedules in `OWN_COSTS`); otherwise
-- GPipe's recomputing micro-batches, DDP, the pipelining library -- those of
the grid's method that trains with the same gradient as plain BP on one device
(`bp_gradient` and the "naive" schedule: BP), since these methods run the same
network's forward and backward, only scheduled differently.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import pandas as pd

from models.partition import contiguous_balance, even_balance

from .costs import CostCurve
from .inputs import Network, all_cells, cost_curves, one_device_cells, options_of
from .links import Link
from .model_facts import ModelFacts, model_facts
from .outcome import Outcome, run_schedule
from .schedules import Plan, build_schedule

__all__ = ["Prediction", "PredictError", "predict_grid", "predict_cell", "contiguous_splits", "best_balances",
           "bp_like_method", "curve_for", "facts_of", "OWN_COSTS"]

OWN_COSTS = ("naive", "decoupled", "decoupled_microbatch")  # schedules whose one-device run is the stage work
MAX_SPLITS = 64  # contiguous splits tried per method and device count before falling back to balanced ones


class PredictError(ValueError):
    """Input the predictor cannot use (one line for the command to print)."""


@dataclass(frozen=True)
class Prediction:
    method: str
    network: Network
    batch: int
    devices: int
    balance: tuple[int, ...]  # () for data parallelism: every device holds every stage
    step_s: float
    speedup: Optional[float]  # over BP on one device, measured
    outcome: Outcome
    schedule: str

    @property
    def bubble(self) -> tuple[float, ...]:
        return self.outcome.bubble


def contiguous_splits(stages: int, devices: int) -> list[tuple[int, ...]]:
    """Every way to cut `stages` into `devices` contiguous, non-empty groups."""
    if devices == 1:
        return [(stages,)]
    return [(first, *rest) for first in range(1, stages - devices + 2)
            for rest in contiguous_splits(stages - first, devices - 1)]


def _method_class(name: str):
    from methods import method_class

    return method_class(name)


def bp_like_method(methods: Iterable[str], settings_of: dict[str, dict]) -> Optional[str]:
    """The method whose one-device cells cost BP-gradient methods: `bp_gradient` with the naive schedule."""
    for name in methods:
        cls = _method_class(name)
        if cls.bp_gradient and cls.schedule_for(options_of(name, settings_of.get(name, {}))) == "naive":
            return name
    return None


def facts_of(network: Network, results_dir: Path) -> ModelFacts:
    """The network's sizes, through the folder's cache (model_facts.py)."""
    return model_facts(network.model, network.dataset, network.kwargs_json, cache_dir=results_dir)


def curve_for(method: str, schedule: str, network: Network, curves: dict[tuple[str, Network], CostCurve],
              bp: Optional[str]) -> Optional[CostCurve]:
    """The costs `method` is simulated with (see the module docstring), None when the folder has none."""
    source = method if schedule in OWN_COSTS else bp
    return curves.get((source, network)) if source else None


def predict_cell(method: str, curve: CostCurve, network: Optional[Network], batch: int, devices: int,
                 balance: Optional[Sequence[int]], link: Link, settings: dict, device_kind: str,
                 facts: Optional[ModelFacts] = None, overhead_s: float = 0.0) -> Outcome:
    """Simulate `method` on `devices` with `balance` (None: data parallel) for one batch size.

    `facts`: the network's sizes when they are known otherwise (a live model); else from `network`.
    `overhead_s`: the method's own cost per micro-batch and device or per step and replica
    (`Plan.overhead_s`, measured by overheads.py).
    Timed as the harness times a sampled cell (bench/cell/phases.py): the warm-up runs in a segment of its
    own and is drained, so the timed segment starts on an empty pipeline -- one fill batch, then `steps`
    gaps between completions -- and only those are simulated.
    """
    cls = _method_class(method)
    options = options_of(method, settings)
    schedule = cls.schedule_for(options)
    validated = cls.Options.model_validate(options)
    if facts is None:
        if network is None:
            raise ValueError("predict_cell needs the network or its facts")
        facts = model_facts(network.model, network.dataset, network.kwargs_json)
    stages = curve.num_stages
    plan = Plan(
        costs=curve, batch=batch, balance=tuple(balance) if balance else (stages,), link=link,
        activation_bytes=facts.activation_bytes, parameter_bytes=facts.parameter_bytes,
        batches=1 + int(settings.get("steps", 2)),
        micro_batches=int(getattr(validated, "chunks", 1)),
        checkpoint=str(getattr(validated, "checkpoint", "never")),
        queue_depth=int(settings.get("queue_depth", 2)),
        one_thread=cls.one_thread_on_cpu and device_kind == "cpu",
        replicas=devices if schedule == "data_parallel" else 1,
        overhead_s=overhead_s,
    )
    return run_schedule(build_schedule(schedule, plan), plan.devices, warmup=1)


def _balances(schedule: str, curve: CostCurve, batch: int, devices: int, choice: object) -> list[Optional[tuple[int, ...]]]:
    """The splits `--balance` asks for (None: data parallelism, which has none; [] when none fits)."""
    stages = curve.num_stages
    if schedule == "data_parallel":
        return [None]
    if devices > stages:
        return []
    if isinstance(choice, (list, tuple)):
        return [tuple(choice)] if len(choice) == devices and sum(choice) == stages else []
    costs = curve.at(batch)
    balanced = tuple(contiguous_balance([costs.stage_total(k) for k in range(stages)], devices))
    if choice == "auto":
        return [balanced]
    if choice == "even":
        return [tuple(even_balance(stages, devices))]
    splits: list[Optional[tuple[int, ...]]] = list(contiguous_splits(stages, devices))
    return splits if len(splits) <= MAX_SPLITS else [balanced]


def predict_grid(frame: pd.DataFrame, results_dir: Path, devices: Sequence[int], link: Link,
                 balance: object = "all") -> list[Prediction]:
    """Every prediction the folder's one-device cells allow (see the module docstring)."""
    ones = one_device_cells(frame)
    if not ones:
        raise PredictError(f"{results_dir}: no finished one-device cells to predict from "
                           "(run the grid with devices: [1, ...])")
    curves = cost_curves(ones, Path(results_dir))
    cells = all_cells(frame) or ones
    settings_of = {c.method: c.settings for c in cells}
    kind_of = {c.method: c.device_kind for c in cells}
    bp = bp_like_method(sorted({c.method for c in ones}), settings_of)
    measured_bp = {(c.network, c.batch): c.step_s for c in ones if c.method == bp}
    from .overheads import measured_overheads, overhead_for  # overheads.py simulates with predict_cell

    overheads = measured_overheads(ones, curves, bp, link, Path(results_dir))
    combos = sorted({(c.method, c.network, c.batch) for c in cells}, key=lambda t: (t[0], t[1].model, t[2]))
    out: list[Prediction] = []
    for method, network, batch in combos:
        cls = _method_class(method)
        schedule = cls.schedule_for(options_of(method, settings_of[method]))
        curve = curve_for(method, schedule, network, curves, bp)
        if curve is None:
            continue
        for n in devices:
            if _incompatible(cls, batch, n, settings_of[method]):
                continue
            for split in _balances(schedule, curve, batch, n, balance):
                outcome = predict_cell(method, curve, network, batch, n, split, link, settings_of[method],
                                       kind_of[method], facts_of(network, results_dir),
                                       overhead_for(overheads, method, network, schedule, batch, n))
                base = measured_bp.get((network, batch))
                out.append(Prediction(method, network, batch, n, split or (), outcome.step_s,
                                      base / outcome.step_s if base and outcome.step_s > 0 else None,
                                      outcome, schedule))
    return out


def _incompatible(cls, batch: int, devices: int, settings: dict) -> bool:
    """Batch splits the method refuses (micro-batches, replicas); model checks were done when the grid ran."""
    try:
        return cls.incompatibility(model=None, batch_size=batch, devices=devices,
                                   options=options_of(cls.name, settings)) is not None
    except (AttributeError, TypeError):
        return False  # a check that needs the model: it passed when the grid ran


def best_balances(predictions: Sequence[Prediction]) -> dict[tuple, Prediction]:
    """(method, network, batch, devices) -> the fastest split."""
    best: dict[tuple, Prediction] = {}
    for p in predictions:
        key = (p.method, p.network, p.batch, p.devices)
        if key not in best or p.step_s < best[key].step_s - 1e-15:
            best[key] = p
    return best
