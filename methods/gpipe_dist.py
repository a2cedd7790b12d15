"""GPipe and 1F1B with torch.distributed.pipelining: one process per device.

This backend gives real concurrency on CPU (torchgpipe runs every CPU "device"
on one thread) and is the path to several machines.  BP's network as an
`nn.Sequential` is cut by the balance (stages per device, the head with the
last device) and each mini-batch is split into `chunks` micro-batches; the
loss is the mean over micro-batches, so gradients equal BP's (without batch norm).

Options: chunks (default 4), schedule "gpipe" | "1f1b".
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import MethodConfig, make_optimizer
from .process_method import ProcessMethod, load_optimizer_state, timed_loop
from .registry import register_method
from .sequential_net import as_sequential

__all__ = ["GPipeDistributed", "pipeline_rank"]

SCHEDULES = ("gpipe", "1f1b")


def _rank_layers(balance: Sequence[int], rank: int, num_stages: int) -> list[int]:
    first = sum(balance[:rank])
    layers = list(range(first, first + balance[rank]))
    if rank == len(balance) - 1:
        layers.append(num_stages)  # the head goes with the last stage
    return layers


def pipeline_rank(rank, world, device, model, balance, batches, config: MethodConfig, chunks: int, schedule: str,
                  optimizer_state=None):
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    seq = as_sequential(model)
    layers = _rank_layers(balance, rank, model.num_stages)
    part = nn.Sequential(*[seq[i] for i in layers]).to(device)
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
        optimizer.step()
        return float(torch.stack(losses).detach().mean()) if losses else None

    result = timed_loop(batches, device, step)
    result["state"] = {n: t.detach().cpu() for n, t in model.state_dict().items() if n.startswith(owned)}
    result["grads"] = {n: p.grad.detach().cpu() for n, p in model.named_parameters()
                       if n.startswith(owned) and p.grad is not None}
    return result


@register_method("gpipe_dist")
class GPipeDistributed(ProcessMethod):
    OPTIONS = ("chunks", "schedule")

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        self.chunks = int(config.options.get("chunks", 4))
        self.schedule = config.options.get("schedule", "gpipe")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"gpipe_dist: schedule {self.schedule!r} unknown; choose one of {SCHEDULES}")

    @classmethod
    def incompatibility(cls, *, modality, batch_size, devices, options):
        if modality == "text":
            return (f"{cls.name} splits batch-first tensors into micro-batches; text models pass "
                    "(hidden, mask, LSTM state) payloads: use a vision model")
        chunks = int(options.get("chunks", 4))
        if batch_size % chunks:
            return f"batch_size {batch_size} must be a multiple of chunks {chunks} (equal micro-batches)"
        return None

    def rank_job(self, batches, balance, warmup_steps):
        return pipeline_rank, (self.model, list(balance), batches, self.config, self.chunks, self.schedule,
                               self.optimizer_state())
