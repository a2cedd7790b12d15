"""SCPL + GPipe (the SCPL paper's appendix A.5; no one had built it).

SCPL removes backward locking; micro-batches also cut forward locking: stage
k+1 starts on micro-batch 1 while stage k computes micro-batch 2.  The local
loss still sees the *whole* batch (all micro-batch outputs concatenated), so
with no batch norm the update equals plain SCPL's.  Each micro-batch output is
sent on before the stage's update, exactly like SCPL's whole-batch output.

Option: chunks (default 4).  Vision models only (payloads are split along dim 0).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.profiler import record_function

from models import detach_payload, payload_to

from .base import MethodConfig, StageStep
from .registry import register_method
from .scpl import SCPL

__all__ = ["SCPLGPipe", "MicroBatchStageStep"]


class MicroBatchStageStep(StageStep):
    """A stage step fed micro-batch by micro-batch; it updates once the batch is complete."""

    def __init__(self, step: StageStep, chunks: int):
        # adopt the SCPL step's modules and optimizer (same parameters, same numbers)
        torch.nn.Module.__init__(self)
        self.index, self.encoder, self.objective = step.index, step.encoder, step.objective
        self.optimizer, self.device = step.optimizer, step.device
        self.schedule, self.calls = None, 0
        self.chunks = chunks
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
                loss = self.objective(torch.cat(self._outputs), torch.cat(self._labels))
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
        chunks = list(zip(x.chunk(self.chunks), y.chunk(self.chunks)))
        for c, (xc, yc) in enumerate(chunks):
            out, loss = self.accept(xc, yc, c, len(chunks))
            outs.append(out)
        return torch.cat(outs), loss


@register_method("scpl_gpipe")
class SCPLGPipe(SCPL):
    OPTIONS = ("chunks",)

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        chunks = int(config.options.get("chunks", 4))
        self.steps = [MicroBatchStageStep(step, chunks) for step in self.steps]

    @classmethod
    def incompatibility(cls, *, modality, batch_size, devices, options):
        chunks = int(options.get("chunks", 4))
        if modality == "text":
            return "scpl_gpipe splits batch-first tensors into micro-batches: use a vision model"
        if batch_size % chunks or batch_size // chunks < 1:
            return f"batch_size {batch_size} must be a multiple of chunks {chunks}"
        return None
