"""GPipe and 1F1B with torch.distributed.pipelining: one process per device.

This backend gives real concurrency on CPU (torchgpipe runs every CPU "device"
on one thread) and is the path to several machines.  BP's network as an
`nn.Sequential` is cut by the balance (stages per device, the head with the
last device) and each mini-batch is split into `chunks` micro-batches; the
loss is the mean over micro-batches, so gradients equal BP's (without batch norm).

Text models: stages send payloads in `to_batch_first` form (`as_pipeline`), a
tuple of tensors each split along dim 0; a stage module gets them as `*args`
and their shapes are inferred at the first step.  Entries that need no
gradient (the bool padding mask, an empty "no LSTM state yet") get none back;
every tensor sent either way is made contiguous (`RankPart`).

Profiler labels: the schedule's `Forward {i}` / `Backward {i}` per micro-batch
and `gpipe_dist/step` for the update, each drawn on the rank's row.

Options: chunks (default 4), schedule "gpipe" | "1f1b".
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.profiler import record_function

from .base import MethodConfig, MethodOptions, make_optimizer
from .rank_method import RankMethod, load_optimizer_state, optimizer_state_by_name, timed_loop
from .registry import register_method
from .sequential_net import PipelineSequential, as_pipeline

__all__ = ["GPipeDistributed", "pipeline_rank"]


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


def pipeline_rank(rank, world, device, model, balance, batches, config: MethodConfig, chunks: int, schedule: str,
                  optimizer_state=None):
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    seq = as_pipeline(model)
    layers = _rank_layers(balance, rank, model.num_stages)
    part = RankPart(*[seq[i] for i in layers]).to(device)
    stage = PipelineStage(part, stage_index=rank, num_stages=world, device=device)
    schedule_cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule]
    runner = schedule_cls(stage, n_microbatches=chunks, loss_fn=F.cross_entropy)
    optimizer = make_optimizer(part.parameters(), config)
    last = rank == world - 1
    owned = tuple(f"stages.{k}." for k in layers if k < model.num_stages) + (("head.",) if last else ())
    load_optimizer_state(
        optimizer, {n: p for n, p in model.named_parameters() if n.startswith(owned)}, optimizer_state or {}
    )

    def step(i, x, y):
        optimizer.zero_grad(set_to_none=True)
        losses: list = []
        if world == 1:
            runner.step(x.to(device), target=y.to(device), losses=losses)
        elif rank == 0:
            runner.step(x.to(device))
        elif last:
            runner.step(target=y.to(device), losses=losses)
        else:
            runner.step()
        with record_function("gpipe_dist/step"):  # the schedule labels forward and backward itself
            optimizer.step()
        return float(torch.stack(losses).detach().mean()) if losses else None

    result = timed_loop(batches, device, step)
    result["state"] = {n: t.detach().cpu() for n, t in model.state_dict().items() if n.startswith(owned)}
    result["grads"] = {n: p.grad.detach().cpu() for n, p in model.named_parameters()
                       if n.startswith(owned) and p.grad is not None}
    result["optimizer_state"] = optimizer_state_by_name(
        optimizer, {n: p for n, p in model.named_parameters() if n.startswith(owned)})
    return result


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

    def rank_job(self, batches, balance, warmup_steps):
        return pipeline_rank, (self.model, list(balance), batches, self.rank_config(), self.options.chunks,
                               self.options.schedule,
                               self.optimizer_state())
