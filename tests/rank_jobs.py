"""Rank jobs the tests run: a method built in every rank, trained through its rank loop on given segments.

Not a test module: tests import it (`from rank_jobs import ...`) and hand
`rank_loop_job` to `run_ranks`, which runs it in each rank it forks.  Every rank
builds the method itself (`build()`, seeded inside), as a distributed cell's
ranks do; what comes back is test-only: the record (rank 0) and the state of
the stages each rank owns.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from bench.execution.rank_context import RankContext, pipeline_context, replica_context
from bench.execution.rank_loops import make_rank_loop, shard_of
from bench.execution.ranks import free_port
from methods.rank_method import RankMethod


def context(method, rank: int, world: int, device: torch.device, balance) -> RankContext:
    if isinstance(method, RankMethod) and method.replica:
        return replica_context(rank, world, device, method.model.num_stages)
    return pipeline_context(rank, world, device, balance)


def train_segments(method, ctx: RankContext, segments: list[list], queue_depth: int = 2, warmup_steps: int = 0):
    """Train `method` on each segment (a list of global batches) through one rank loop; rank 0's records."""
    loop = make_rank_loop(method, ctx, queue_depth)
    records = []
    for batches in segments:
        mine = [shard_of(b, loop.shard) for b in batches] if loop.reads_data else None
        summary = loop.run(mine, len(batches), warmup_steps)
        gathered: Optional[list] = [None] * ctx.world if ctx.first else None
        dist.gather_object(summary, gathered, dst=0)
        if gathered is not None:
            records.append(loop.record(gathered, warmup_steps))
    return loop, records


def owned_state(method, loop, ctx: RankContext) -> dict:
    """The parameters (and their gradients) this rank trained, by their name in the method."""
    if isinstance(method, RankMethod):
        owned = {id(p) for p in loop.trainer.module.parameters()}
        named = [(n, p) for n, p in method.model.named_parameters() if id(p) in owned]
    else:
        steps = method.stage_steps()
        named = [(f"step{k}.{n}", p) for k in ctx.stages for n, p in steps[k].named_parameters()]
    return {"params": {n: p.detach().cpu().clone() for n, p in named},
            "grads": {n: p.grad.detach().cpu().clone() for n, p in named if p.grad is not None},
            "extra": method.extra_state()}


def rank_loop_job(rank: int, world: int, device: torch.device, build: Callable, balance, segments: list[list],
                  warmup_steps: int = 0, fault: Optional[Callable] = None) -> dict:
    """One rank: build, train every segment in one loop, return rank 0's records and own state."""
    if fault is not None:
        fault(rank)
    method = build()
    ctx = context(method, rank, world, device, balance)
    loop, records = train_segments(method, ctx, segments, warmup_steps=warmup_steps)
    return {"records": records, **owned_state(method, loop, ctx)}


@contextmanager
def one_rank_group() -> Iterator[None]:
    """A world of one gloo rank in this process (a rank loop needs a process group)."""
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT")}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
