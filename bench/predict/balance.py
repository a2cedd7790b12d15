"""`balance: predicted`: the contiguous stage split the simulator finds fastest for a method's own schedule.

Why not `auto`'s rule (minimise the busiest device's compute): that is right
for decoupled stages, whose steady state is the slowest device, but GPipe's
fill and drain, naive model parallelism's hand-overs and 1F1B's in-flight
limit weigh the stages differently, and the schedule is a property of the
method.  The stage costs are the ones `auto` measures on a slice of the batch
(bench/execution/placement.py), split 1 : 2 between forward and backward.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from models.partition import contiguous_balance, even_balance

from .costs import CostCurve, StageCosts
from .links import DEFAULT_LINK, load_link
from .model_facts import ModelFacts
from .predictor import MAX_SPLITS, contiguous_splits, predict_cell

if TYPE_CHECKING:
    from methods.base import Method

__all__ = ["predicted_balance"]

_RUN = {"warmup_steps": 2, "steps": 6, "queue_depth": 2}  # enough batches for a pipeline's steady state


def _live_facts(method: Method) -> ModelFacts:
    """Parameter bytes per stage of the built model (no activation sizes: hand-overs cost their latency)."""
    model = method.model
    params = [float(sum(p.numel() * p.element_size() for p in stage.parameters())) for stage in model.stages]
    params[-1] += float(sum(p.numel() * p.element_size() for p in model.head.parameters()))
    n = len(params)
    return ModelFacts((0.0,) * n, tuple(params), (1.0 / n,) * n)


def predicted_balance(method: Method, devices: int, stage_costs: Sequence[float], batch: int,
                      device_kind: str = "cpu", queue_depth: int = 2) -> list[int]:
    """Stages per device: the split with the shortest simulated step for `method`'s schedule."""
    stages = len(stage_costs)
    if devices == 1:
        return [stages]
    settings = dict(_RUN, queue_depth=queue_depth, method_options=dict(method.config.options))
    if type(method).schedule_for(dict(method.config.options)) == "data_parallel":
        return even_balance(stages, devices)  # every device holds every stage
    costs = StageCosts(batch, tuple(c / 3 for c in stage_costs), (0.0,) * stages,
                       tuple(2 * c / 3 for c in stage_costs), (0.0,) * stages)
    curve, link, facts = CostCurve((costs,)), load_link(DEFAULT_LINK), _live_facts(method)
    splits: list[tuple[int, ...]] = contiguous_splits(stages, devices)
    if len(splits) > MAX_SPLITS:
        return contiguous_balance(stage_costs, devices)

    def step(split: tuple[int, ...]) -> float:
        return predict_cell(method.name, curve, None, batch, devices, split, link, settings, device_kind,
                            facts).step_s

    best = min(splits, key=step)
    return list(best)
