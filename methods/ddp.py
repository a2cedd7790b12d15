"""Data parallelism: BP replicated over N processes with DistributedDataParallel.

The rival the papers leave out: on equal cores it uses the same resources as
model parallelism.  The global batch is the grid's batch size, split evenly
over the ranks; DDP averages gradients, so the update equals BP's on the whole
batch (batch norm statistics are per rank, as in any DDP run).

Profiler labels: `ddp/forward|loss|backward|step`, naming no stage (a replica
is the whole network); in a rank's trace such a label is drawn on the rank's
row (bench/profiling/trace_events.py), the gradient all-reduce inside `backward`.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function

from .base import MethodConfig, make_optimizer
from .rank_method import RankMethod, load_optimizer_state, optimizer_state_by_name, timed_loop
from .registry import register_method

__all__ = ["DDP", "ddp_rank"]


def ddp_rank(rank, world, device, model, batches, config: MethodConfig, optimizer_state=None):
    model = model.to(device)
    replica = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = make_optimizer(replica.parameters(), config)
    load_optimizer_state(optimizer, dict(model.named_parameters()), optimizer_state or {})
    # each rank's contiguous slice of every global batch, cut ahead of timing
    shards = [(x.chunk(world)[rank], y.chunk(world)[rank]) for x, y in batches]

    def step(i, x, y):
        optimizer.zero_grad(set_to_none=True)
        with record_function("ddp/forward"):
            out = replica(x.to(device))
        with record_function("ddp/loss"):
            loss = F.cross_entropy(out, y.to(device))
        with record_function("ddp/backward"):
            loss.backward()  # the all-reduce of the gradients overlaps it (DDP's buckets)
        with record_function("ddp/step"):
            optimizer.step()
        return float(loss.detach())

    result = timed_loop(shards, device, step)
    result["state"] = {n: t.detach().cpu() for n, t in model.state_dict().items()} if rank == 0 else {}
    result["grads"] = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    # every rank holds the same moments after the all-reduced steps: rank 0's go back
    result["optimizer_state"] = optimizer_state_by_name(optimizer, dict(model.named_parameters())) if rank == 0 else {}
    return result


@register_method("ddp")
class DDP(RankMethod):
    display_name = "DDP"
    schedule = "data_parallel"
    paper_order = 90
    report_order = 10
    colour = "tab:purple"
    bp_gradient = True

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        if batch_size % devices:
            return f"batch_size {batch_size} must split evenly over {devices} data-parallel ranks"
        return None

    def rank_job(self, batches, balance, warmup_steps):
        return ddp_rank, (self.model, batches, self.rank_config(), self.optimizer_state())
