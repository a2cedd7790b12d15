"""SCPL + GPipe (the SCPL paper's appendix A.5; no one had built it).

SCPL removes backward locking; micro-batches also cut forward locking: stage
k+1 starts on micro-batch 1 while stage k computes micro-batch 2.  The local
loss still sees the *whole* batch (all micro-batch outputs concatenated), so
with no batch norm the update equals plain SCPL's.  Each micro-batch output is
sent on before the stage's update, exactly like SCPL's whole-batch output.

Option: chunks (default 4).  Text payloads are split and joined entry by entry
along each entry's batch dimension (`split_payload` / `cat_payloads`: dim 1 for
LSTM states); the pipelined executor splits the input batch itself, which is a
tensor (images or token ids) for every model.
"""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch.profiler import record_function

from models import detach_payload, payload_to
from models.staged import cat_payloads, split_payload

from .base import MethodConfig, MethodOptions, StageStep
from .registry import register_method
from .scpl import SCPL

__all__ = ["SCPLGPipe", "MicroBatchStageStep"]


class MicroBatchStageStep(StageStep):
    """A stage step fed micro-batch by micro-batch; it updates once the batch is complete."""

    def __init__(self, step: StageStep, chunks: int):
        # adopt the SCPL step's modules and optimizer (same parameters, same numbers)
        super().__init__(step.index, step.encoder, step.objective, make_opt=lambda _params: step.optimizer)
        self.device = step.device
        self.micro_batches = chunks
        self._outputs: list = []
        self._labels: list = []

    def accept(self, x, y, chunk: int, chunks: int):
        k = self.index
        x = detach_payload(payload_to(x, self.device))
        if chunk == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self._outputs, self._labels = [], []
        with record_function(f"stage{k}/forward"):
            out = self.encode(x, y)
        self._outputs.append(out)
        self._labels.append(y.to(self.device))
        loss: Optional[torch.Tensor] = None
        if chunk == chunks - 1:
            with record_function(f"stage{k}/loss"):
                loss = self.objective(cat_payloads(self._outputs), torch.cat(self._labels))
            with record_function(f"stage{k}/backward"):
                loss.backward()
            with record_function(f"stage{k}/step"):
                self.optimizer.step()
            self._outputs, self._labels = [], []
            loss = loss.detach()
        return detach_payload(out), loss

    def forward(self, x, y):
        """Whole batch at once (the sequential executor): the same micro-batch math."""
        outs, loss = [], None
        chunks = list(zip(split_payload(x, self.micro_batches), y.chunk(self.micro_batches)))
        for c, (xc, yc) in enumerate(chunks):
            out, loss = self.accept(xc, yc, c, len(chunks))
            outs.append(out)
        return cat_payloads(outs), loss


class SCPLGPipeOptions(MethodOptions):
    chunks: int = Field(4, ge=1, description="micro-batches per batch")


@register_method("scpl_gpipe")
class SCPLGPipe(SCPL):
    display_name = "SCPL + GPipe"
    schedule = "decoupled_microbatch"
    paper_order = 60
    report_order = 50
    colour = "tab:brown"
    Options = SCPLGPipeOptions
    options: SCPLGPipeOptions

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        self.micro_batches = self.options.chunks  # the executors feed each stage this many per batch
        self.steps = [MicroBatchStageStep(step, self.micro_batches) for step in self.steps]

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        chunks = cls.Options.model_validate(options).chunks
        if batch_size % chunks or batch_size // chunks < 1:
            return f"batch_size {batch_size} must be a multiple of chunks {chunks}"
        return None
