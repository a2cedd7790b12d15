"""Early Exit: a classifier per stage on its reduced output, cross-entropy trains the stage.

Inputs of stage k+1 are detached, so nothing crosses stages.  The last stage's
classifier is the model's head; inference uses the head (reference), and every
exit's accuracy is reported too.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models import StagedModel

from .base import DecoupledMethod, MethodConfig, MethodOptions, StageStep, make_optimizer
from .exits import ExitsMixin
from .predictors import make_predictor
from .registry import register_method

__all__ = ["EarlyExit", "ExitObjective"]


class ExitObjective(nn.Module):
    """Cross-entropy of the stage's own classifier; its gradient trains the stage."""

    def __init__(self, reducer, classifier: nn.Module):
        super().__init__()
        self.reducer = reducer
        self.classifier = classifier

    def forward(self, out, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(self.reducer(out)), y)


class EarlyExitOptions(MethodOptions):
    predictor: Optional[Literal["l", "m"]] = Field(None, description="exit classifier; None = 'm'")


@register_method("early_exit")
class EarlyExit(ExitsMixin, DecoupledMethod):
    display_name = "Early Exit"
    schedule = "decoupled"
    paper_order = 10
    report_order = 80
    colour = "tab:olive"
    Options = EarlyExitOptions
    options: EarlyExitOptions

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        predictor = self.options.predictor
        last = model.num_stages - 1
        self.classifiers = nn.ModuleList(
            make_predictor(predictor, dim, model.num_classes, model.modality) for dim in model.feature_dims[:last]
        )
        heads = list(self.classifiers) + [model.head]
        self.steps = [
            StageStep(k, stage, ExitObjective(model.reducers[k], heads[k]), lambda p: make_optimizer(p, config))
            for k, stage in enumerate(model.stages)
        ]

    def exit_classifiers(self) -> list[nn.Module]:
        return list(self.classifiers) + [self.model.head]

    def affiliated_modules(self) -> list[nn.Module]:
        return [self.classifiers]

