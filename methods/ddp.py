"""Data parallelism: BP replicated over N processes with DistributedDataParallel.

The rival the papers leave out: on equal cores it uses the same resources as
model parallelism.  The global batch is the grid's batch size, split evenly
over the ranks; each rank reads its own contiguous slice of every global batch
(`shard`), and DDP averages gradients, so the update equals BP's on the whole
batch (batch norm statistics are per rank, as in any DDP run).  One
DistributedDataParallel and one optimizer per rank live for the whole cell.

Profiler labels: `ddp/forward|loss|backward|step`, naming no stage (a replica
is the whole network); in a rank's trace such a label is drawn on the rank's
row (bench/profiling/trace_events.py), the gradient all-reduce inside `backward`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function

from .base import make_optimizer
from .rank_method import ModuleTrainer, RankMethod
from .registry import register_method

if TYPE_CHECKING:
    from bench.execution.rank_context import RankContext

__all__ = ["DDP", "DDPTrainer"]


class DDPTrainer(ModuleTrainer):
    """One replica: the whole model on this rank's device, its optimizer, its slice of each batch."""

    reads_data = True

    def __init__(self, method: "DDP", ctx: "RankContext") -> None:
        self.device = ctx.device
        self.model = self.module = method.model.to(ctx.device)
        self.replica = DistributedDataParallel(self.model,
                                               device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
        self.optimizer = make_optimizer(self.replica.parameters(), method.config)
        self.shard: Optional[tuple[int, int]] = (ctx.rank, ctx.world)

    def step(self, x, y) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("ddp/forward"):
            out = self.replica(x.to(self.device))
        with record_function("ddp/loss"):
            loss = F.cross_entropy(out, y.to(self.device))
        with record_function("ddp/backward"):
            loss.backward()  # the all-reduce of the gradients overlaps it (DDP's buckets)
        with record_function("ddp/step"):
            self.optimizer.step()
        return float(loss.detach())



@register_method("ddp")
class DDP(RankMethod):
    display_name = "DDP"
    schedule = "data_parallel"
    paper_order = 90
    report_order = 10
    colour = "tab:purple"
    bp_gradient = True
    replica = True

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        if batch_size % devices:
            return f"batch_size {batch_size} must split evenly over {devices} data-parallel ranks"
        return None

    def make_rank_trainer(self, ctx: "RankContext") -> DDPTrainer:
        return DDPTrainer(self, ctx)
