"""SCPL: Supervised Contrastive Parallel Learning (Wang et al., the seed paper).

Each stage k trains on its own supervised contrastive loss of
normalize(g_k(reduce(r_k))); its input is detached, so no gradient crosses
stages (no backward locking).  The head sits after the last stage and is
trained by cross-entropy on the *detached* last features: as in the reference
it never trains the backbone, and it shares the last stage's optimizer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import StagedModel
from models.staged import Payload

from .base import DecoupledMethod, MethodConfig, StageStep, make_optimizer
from .losses import local_loss
from .projectors import make_projector
from .registry import register_method

__all__ = ["SCPL", "ContrastiveObjective"]


class ContrastiveObjective(nn.Module):
    """SupCon on the projected, reduced stage output (+ the head's CE on the last stage)."""

    def __init__(self, reducer, projector: nn.Module, config: MethodConfig, head: nn.Module | None = None):
        super().__init__()
        self.reducer = reducer
        self.projector = projector
        self.head = head
        self.temperature = config.temperature
        self.variant = config.supcon_variant
        self.local_loss = config.local_loss

    def forward(self, out: Payload, y: torch.Tensor) -> torch.Tensor:
        features = self.reducer(out)
        loss = local_loss(self.local_loss, self.projector(features), y, self.temperature, self.variant)
        if self.head is not None:
            # detach: the head learns from the backbone, never the other way round
            loss = loss + F.cross_entropy(self.head(features.detach()), y)
        return loss


@register_method("scpl")
class SCPL(DecoupledMethod):
    display_name = "SCPL"
    schedule = "decoupled"
    paper_order = 30
    report_order = 40
    colour = "tab:orange"
    min_batch_size = 2  # a contrastive loss needs at least one pair

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        self.projectors = nn.ModuleList(
            make_projector(config.projector, dim, model.modality) for dim in model.feature_dims
        )
        last = model.num_stages - 1
        self.steps = [
            StageStep(
                k,
                stage,
                ContrastiveObjective(
                    model.reducers[k], self.projectors[k], config, model.head if k == last else None
                ),
                lambda params: make_optimizer(params, config),
            )
            for k, stage in enumerate(model.stages)
        ]


    def affiliated_modules(self) -> list[nn.Module]:
        return [self.projectors]

