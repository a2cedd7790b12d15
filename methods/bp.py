"""Backpropagation: one global cross-entropy, one backward, one optimizer.

On N devices this is naive model parallelism (NMP): stage k lives on device k,
activations are copied forward and gradients flow back through every copy, so
only one device works at any moment.  That is the baseline the papers compare to.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from models import StagedModel, payload_to
from models.staged import Payload

from .base import Method, MethodConfig, make_optimizer
from .registry import register_method

__all__ = ["BP"]


@register_method("bp")
class BP(Method):
    display_name = "BP"
    schedule = "naive"  # naive model parallelism: one device works at a time
    paper_order = 0
    report_order = 0
    colour = "tab:blue"
    bp_gradient = True

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        self.optimizer = make_optimizer(list(model.parameters()), config)
        self.stage_devices = [torch.device("cpu")] * model.num_stages

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        self.stage_devices = [torch.device(d) for d in stage_devices]
        for stage, device in zip(self.model.stages, self.stage_devices):
            stage.to(device)
        self.model.head.to(self.stage_devices[-1])

    def train_step(self, x: Payload, y: torch.Tensor) -> float:
        model = self.model
        self.optimizer.zero_grad(set_to_none=True)
        for k, (stage, device) in enumerate(zip(model.stages, self.stage_devices)):
            if k > 0:  # labelled apart so a trace shows the copies between devices
                with record_function(f"copy stage{k - 1}->stage{k}"):
                    x = payload_to(x, device)
            with record_function(f"stage{k}/forward"):
                x = stage(payload_to(x, device))
        last = model.num_stages - 1
        with record_function(f"stage{last}/loss"):
            logits = model.head(model.reducers[-1](x))
            loss = F.cross_entropy(logits, y.to(self.stage_devices[-1]))
        with record_function("bp/backward"):
            loss.backward()
        with record_function("bp/step"):
            self.optimizer.step()
        return float(loss.detach())
