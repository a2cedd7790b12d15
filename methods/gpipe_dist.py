"""GPipe and 1F1B with torch.distributed.pipelining: one process per device.

One `PipelineStage` and schedule per rank live for the whole cell.
This backend gives real concurrency on CPU (torchgpipe runs every CPU "device"
on one thread) and is the path to several machines.  BP's network as an
`nn.Sequential` is cut by the balance (stages per device, the head with the
last device) and each mini-batch is split into `chunks` micro-batches; the
loss is the mean over micro-batches, so gradients equal BP's (without batch norm).

Text models: stages send payloads in `to_batch_first` form (`as_pipeline`), a
tuple of tensors each split along dim 0; a stage module gets them as `*args`
and their shapes are inferred at the first step and kept: a later batch of
another width fails, so this method declares `fixed_input_shape` and its text
batches are max_len wide (the other methods' are as wide as their longest
text, docs/DATA.md "Text batches").  Entries that need no
gradient (the bool padding mask, an empty "no LSTM state yet") get none back;
every tensor sent either way is made contiguous (`RankPart`).

Profiler labels: the schedule's `Forward {i}` / `Backward {i}` per micro-batch
and `gpipe_dist/step` for the update, each drawn on the rank's row.

Options: chunks (default 4), schedule "gpipe" | "1f1b".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.profiler import record_function

from .base import MethodOptions, make_optimizer
from .rank_method import ModuleTrainer, RankMethod
from .registry import register_method
from .sequential_net import PipelineSequential, as_pipeline

if TYPE_CHECKING:
    from bench.execution.rank_context import RankContext

__all__ = ["GPipeDistributed", "PipelineTrainer"]


class ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous (see `RankPart`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class RankPart(PipelineSequential):
    """One rank's layers, sending only contiguous tensors (activations forward, gradients back).

    The pipelining library allocates a receive buffer with the strides of the
    sender's tensor, and gloo receives only into contiguous buffers; a
    batch-first LSTM's output, and its gradient for its input, are not contiguous.
    """

    def forward(self, *inputs: torch.Tensor):
        out = super().forward(*(ContiguousGrad.apply(t) if t.requires_grad else t for t in inputs))
        return out.contiguous() if isinstance(out, torch.Tensor) else tuple(t.contiguous() for t in out)


def _rank_layers(balance: Sequence[int], rank: int, num_stages: int) -> list[int]:
    first = sum(balance[:rank])
    layers = list(range(first, first + balance[rank]))
    if rank == len(balance) - 1:
        layers.append(num_stages)  # the head goes with the last stage
    return layers


class PipelineTrainer(ModuleTrainer):
    """One rank's layers as a `PipelineStage` under one GPipe/1F1B schedule, built once per cell.

    Rank 0 reads the batches (inputs and labels).  Per batch it broadcasts the
    batch's size (every rank needs it: a pipeline stage fixes its shapes at its
    first step, so an epoch's shorter last batch runs through a second stage and
    schedule built for that size), then sends the labels to the last rank, which
    computes the loss, by a point-to-point send: one code path for any dataset,
    and no second, label-only data stream to keep in step with rank 0's.
    """

    shard: Optional[tuple[int, int]] = None

    def __init__(self, method: "GPipeDistributed", ctx: "RankContext") -> None:
        model = method.model
        self.device, self.rank, self.world = ctx.device, ctx.rank, ctx.world
        self.first, self.last = ctx.first, ctx.last
        self.reads_data = ctx.first
        self.options = method.options
        seq = as_pipeline(model)
        layers = _rank_layers(ctx_balance(ctx), ctx.rank, model.num_stages)
        self.part = self.module = RankPart(*[seq[i] for i in layers]).to(ctx.device)
        self.optimizer = make_optimizer(self.part.parameters(), method.config)
        self._runners: dict[int, object] = {}  # batch size -> its schedule over this rank's stage

    def _runner(self, batch_size: int):
        """The schedule for batches of `batch_size`, built the first time such a batch comes."""
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        if batch_size not in self._runners:
            stage = PipelineStage(self.part, stage_index=self.rank, num_stages=self.world, device=self.device)
            schedule_cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[self.options.schedule]
            self._runners[batch_size] = schedule_cls(stage, n_microbatches=self.options.chunks,
                                                     loss_fn=F.cross_entropy)
        return self._runners[batch_size]

    def _size_and_labels(self, y: Optional[torch.Tensor]) -> tuple[int, Optional[torch.Tensor]]:
        """The batch's size on every rank, its labels where the loss is computed (rank 0 sends them on)."""
        import torch.distributed as dist

        if self.world == 1:
            assert y is not None
            return len(y), y.to(self.device)
        size = torch.tensor([len(y) if y is not None else 0], dtype=torch.int64, device=self.device)
        dist.broadcast(size, src=0)
        batch_size = int(size.item())
        if self.first:
            assert y is not None, "rank 0 reads every batch"
            dist.send(y.to(self.device), self.world - 1)
            return batch_size, None
        if self.last:
            labels = torch.empty(batch_size, dtype=torch.int64, device=self.device)
            dist.recv(labels, 0)
            return batch_size, labels
        return batch_size, None

    def step(self, x, y) -> Optional[float]:
        batch_size, labels = self._size_and_labels(y)
        runner = self._runner(batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        losses: list = []
        if self.world == 1:
            runner.step(x.to(self.device), target=labels, losses=losses)
        elif self.first:
            runner.step(x.to(self.device))
        elif self.last:
            runner.step(target=labels, losses=losses)
        else:
            runner.step()
        with record_function("gpipe_dist/step"):  # the schedule labels forward and backward itself
            self.optimizer.step()
        return float(torch.stack(losses).detach().mean()) if losses else None



def ctx_balance(ctx: "RankContext") -> list[int]:
    """Stages per rank, from the context's groups."""
    return [len(group) for group in ctx.groups]


class GPipeDistOptions(MethodOptions):
    chunks: int = Field(4, ge=1, description="micro-batches per batch")
    schedule: Literal["gpipe", "1f1b"] = "gpipe"


@register_method("gpipe_dist")
class GPipeDistributed(RankMethod):
    display_name = "GPipe (distributed)"
    schedule = "gpipe"  # or "1f1b" by its `schedule` option (schedule_for)
    paper_order = 80
    report_order = 30
    colour = "tab:red"
    bp_gradient = True
    fixed_input_shape = True  # the stages' buffers keep the first step's shapes (text: max_len-wide batches)
    Options = GPipeDistOptions
    options: GPipeDistOptions

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        chunks = cls.Options.model_validate(options).chunks
        if batch_size % chunks:
            return f"batch_size {batch_size} must be a multiple of chunks {chunks} (equal micro-batches)"
        return None

    @classmethod
    def schedule_for(cls, options: dict) -> str:
        return cls.Options.model_validate(options).schedule  # "gpipe" | "1f1b"

    def make_rank_trainer(self, ctx: "RankContext") -> PipelineTrainer:
        return PipelineTrainer(self, ctx)
