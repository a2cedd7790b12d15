"""DASCPL: SCPL plus a predictor per stage, early exits and dynamic layer accumulation.

Stage loss = SupCon(projector) + CE(predictor on the *detached* stage features),
unweighted, as in the reference.  The last stage has its own predictor *and*
the model's head beside it, each trained by its CE on the detached features
with the last stage's optimizer, as the reference (DASCPL
`model/vision_multi.py:303-307,327` builds block 3 with a predictor and a
separate head; `model/nlp_multi.py:553-559` likewise): K + 1 exits, the last
the head, so the deployed network is SCPL's.

Dynamic layer accumulation (options `trigger_steps` or `trigger_epochs`, one
trigger per later stage): in "forward" mode stage k+1 starts training after
trigger k (before that it and everything after it is skipped: the forward
shortcut); in "reverse" mode stage K-1-j (1-based; the last but one stage at
the first trigger) stops training at trigger j and then only forwards (frozen)
while the stages after it still train; the last stage never stops.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.profiler import record_function

from models import StagedModel, detach_payload, payload_to
from models.staged import Payload

from .base import DecoupledMethod, MethodConfig, MethodOptions, StageStep, make_optimizer
from .exits import ExitsMixin
from .predictors import make_predictor
from .projectors import make_projector
from .registry import register_method
from .scpl import ContrastiveObjective

__all__ = ["DASCPL", "AccumulatingStageStep", "accumulation_schedules"]

Schedule = Callable[[int], str]  # i-th batch this stage sees -> "train" | "forward" | "skip"


class PredictorObjective(ContrastiveObjective):
    """SupCon on the projection + CE of the stage predictor on detached features.

    `model_head` (the last stage only): the model's head, trained beside the
    stage's own predictor by its CE on the same detached features.
    """

    def __init__(self, reducer, projector, predictor, config: MethodConfig, model_head: Optional[nn.Module] = None):
        super().__init__(reducer, projector, config, head=predictor)
        self.model_head = model_head

    def forward(self, out: Payload, y: torch.Tensor) -> torch.Tensor:
        loss = super().forward(out, y)
        if self.model_head is None:
            return loss
        return loss + F.cross_entropy(self.model_head(self.reducer(out).detach()), y)


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


class AccumulatingStageStep(StageStep):
    """A stage step that trains, only forwards, or is skipped, by its accumulation schedule.

    The schedule state (how many batches this stage has seen) is DASCPL's, so
    it lives here rather than on every `StageStep`.
    """

    def __init__(self, index, encoder, objective, make_opt, schedule: Optional[Schedule]) -> None:
        super().__init__(index, encoder, objective, make_opt)
        self.schedule = schedule
        self.calls = 0  # batches seen: the schedule's clock

    def extra_state(self) -> dict:
        return {"calls": self.calls}

    def load_extra_state(self, state: dict) -> None:
        self.calls = int(state["calls"])

    def forward(self, x: Payload, y: torch.Tensor) -> tuple[Payload, torch.Tensor]:
        mode = self.schedule(self.calls) if self.schedule else "train"
        self.calls += 1
        if mode == "train":
            return super().forward(x, y)
        x = detach_payload(payload_to(x, self.device))
        zero = torch.zeros((), device=self.device)
        if mode == "skip":  # forward shortcut: no later stage uses this output
            return x, zero
        with torch.no_grad(), record_function(f"stage{self.index}/forward"):
            return detach_payload(self.encode(x, y.to(self.device))), zero


class DASCPLOptions(MethodOptions):
    predictor: Optional[Literal["l", "m"]] = Field(None, description="stage predictor; None = 'm'")
    trigger_steps: Optional[list[int]] = Field(None, description="one trigger (batch index) per later stage")
    trigger_epochs: Optional[list[int]] = Field(None, description="one trigger (epoch) per later stage")
    accumulation: Literal["forward", "reverse"] = "forward"
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="set by the cell for trigger_epochs "
                                                                    "(`harness_options`)")


@register_method("dascpl")
class DASCPL(ExitsMixin, DecoupledMethod):
    display_name = "DASCPL"
    schedule = "decoupled"
    paper_order = 40
    report_order = 60
    colour = "tab:pink"
    min_batch_size = 2
    Options = DASCPLOptions
    options: DASCPLOptions

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        opts = self.options
        last = model.num_stages - 1
        self.projectors = nn.ModuleList(
            make_projector(config.projector, d, model.modality) for d in model.feature_dims
        )
        self.predictors = nn.ModuleList(
            make_predictor(opts.predictor, d, model.num_classes, model.modality) for d in model.feature_dims
        )
        triggers = opts.trigger_steps
        if opts.trigger_epochs is not None:
            if not opts.steps_per_epoch:
                raise ValueError("trigger_epochs needs steps_per_epoch (a cell sets it through harness_options; "
                                 "a method built by hand passes it in method_options)")
            triggers = [e * opts.steps_per_epoch for e in opts.trigger_epochs]
        schedules = accumulation_schedules(model.num_stages, triggers, opts.accumulation)
        self.steps = [
            AccumulatingStageStep(
                k, stage, PredictorObjective(model.reducers[k], self.projectors[k], self.predictors[k], config,
                                             model.head if k == last else None),
                lambda p: make_optimizer(p, config), schedule,
            )
            for k, (stage, schedule) in enumerate(zip(model.stages, schedules))
        ]

    @classmethod
    def harness_options(cls, options: dict, *, steps_per_epoch: int) -> dict:
        """Epoch triggers count batches of the split actually trained on, which only the cell knows."""
        if cls.Options.model_validate(options).trigger_epochs is None:
            return options
        return {**options, "steps_per_epoch": steps_per_epoch}

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        opts = cls.Options.model_validate(options)
        triggers = opts.trigger_steps if opts.trigger_epochs is None else opts.trigger_epochs
        try:
            accumulation_schedules(model.num_stages, triggers, opts.accumulation)
        except ValueError as exc:
            return str(exc)
        return None

    def exit_classifiers(self) -> list[nn.Module]:
        """Every stage's predictor, then the head (on the last stage's output, beside its predictor)."""
        return list(self.predictors) + [self.model.head]

    def exit_stages(self) -> list[int]:
        return list(range(self.model.num_stages)) + [self.model.num_stages - 1]

    def affiliated_modules(self) -> list[nn.Module]:
        return [self.projectors, self.predictors]

