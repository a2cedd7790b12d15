"""DASCPL: SCPL plus a predictor per stage, early exits and dynamic layer accumulation.

Stage loss = SupCon(projector) + CE(predictor on the *detached* stage features),
unweighted, as in the reference.  The last stage's predictor is the model's
head, so the deployed network is the same as SCPL's.

Dynamic layer accumulation (options `trigger_steps` or `trigger_epochs`, one
trigger per later stage): in "forward" mode stage k+1 starts training after
trigger k (before that it and everything after it is skipped: the forward
shortcut); in "reverse" mode stage K-1-j (1-based; the last but one stage at
the first trigger) stops training at trigger j and then only forwards (frozen)
while the stages after it still train; the last stage never stops.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models import StagedModel

from .base import DecoupledMethod, MethodConfig, StageStep, make_optimizer
from .exits import ExitsMixin
from .predictors import make_predictor
from .projectors import make_projector
from .registry import register_method
from .scpl import ContrastiveObjective

__all__ = ["DASCPL", "accumulation_schedules"]


class PredictorObjective(ContrastiveObjective):
    """SupCon on the projection + CE of the stage predictor on detached features."""

    def __init__(self, reducer, projector, predictor, config: MethodConfig):
        super().__init__(reducer, projector, config, head=predictor)


def accumulation_schedules(num_stages: int, triggers: Optional[Sequence[int]], mode: str) -> list:
    """One schedule per stage mapping the batch index to train / forward / skip."""
    if triggers is None:
        return [None] * num_stages
    triggers = list(triggers)
    if len(triggers) != num_stages - 1:
        raise ValueError(f"dynamic accumulation needs {num_stages - 1} triggers, got {triggers}")
    # Forward mode skips a stage by passing its *input* on; if a later stage started
    # before an earlier one it would train on the wrong tensor (a shape error at best).
    if any(t < 0 for t in triggers) or any(a > b for a, b in zip(triggers, triggers[1:])):
        raise ValueError(f"accumulation triggers must be non-negative and non-decreasing, got {triggers}")
    if mode == "forward":
        starts = [0] + triggers  # stage k trains from starts[k]
        return [
            (lambda i, s=start: "train" if i >= s else "skip") if start > 0 else None
            for start in starts
        ]
    if mode == "reverse":
        stops = list(reversed(triggers)) + [None]  # stage 0 stops last; the last stage never stops
        return [(lambda i, s=stop: "train" if i < s else "forward") if stop is not None else None for stop in stops]
    raise ValueError(f"accumulation mode {mode!r}: choose 'forward' or 'reverse'")


@register_method("dascpl")
class DASCPL(ExitsMixin, DecoupledMethod):
    min_batch_size = 2
    OPTIONS = ("predictor", "trigger_steps", "trigger_epochs", "accumulation", "steps_per_epoch", "exit_policies")

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        opts = config.options
        unknown = set(opts) - set(self.OPTIONS)
        if unknown:
            raise ValueError(f"dascpl: unknown options {sorted(unknown)}; valid: {self.OPTIONS}")
        last = model.num_stages - 1
        self.projectors = nn.ModuleList(
            make_projector(config.projector, d, model.modality) for d in model.feature_dims
        )
        self.predictors = nn.ModuleList(
            make_predictor(opts.get("predictor"), d, model.num_classes, model.modality)
            for d in model.feature_dims[:last]
        )
        heads = list(self.predictors) + [model.head]
        self.steps = [
            StageStep(
                k, stage, PredictorObjective(model.reducers[k], self.projectors[k], heads[k], config),
                lambda p: make_optimizer(p, config),
            )
            for k, stage in enumerate(model.stages)
        ]
        triggers = opts.get("trigger_steps")
        if opts.get("trigger_epochs") is not None:
            per_epoch = int(opts.get("steps_per_epoch") or 0)
            if per_epoch <= 0:
                raise ValueError("trigger_epochs needs steps_per_epoch (the runner sets it)")
            triggers = [int(e) * per_epoch for e in opts["trigger_epochs"]]
        for step, schedule in zip(self.steps, accumulation_schedules(model.num_stages, triggers, opts.get("accumulation", "forward"))):
            step.schedule = schedule

    def exit_classifiers(self) -> list[nn.Module]:
        return list(self.predictors) + [self.model.head]


    def affiliated_modules(self) -> list[nn.Module]:
        return [self.projectors, self.predictors]

