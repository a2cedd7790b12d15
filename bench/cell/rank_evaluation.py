"""Evaluation inside the ranks of a distributed cell: the same numbers as `evaluation.evaluate_now`, no parent.

Called in every rank of a distributed cell (each rank has built the same test
and validation batch lists on the CPU):

    evaluate_in_ranks(method, ctx: RankContext, test_batches, val_batches,
                      policies=DEFAULT_POLICIES) -> Optional[EvalPoint]

It is collective (every rank must call it, with the same batches); rank 0 gets
the `EvalPoint`, every other rank None.  The accuracies, the sample count and
the exits' accuracies and policies equal what `evaluate_now(method, test, val)`
gives in one process for the same trained parameters, because the deployed
predictor is defined once, in pieces, on the method (`Method.predict_stage`,
`predict_head`, `predict_return`; `Method.predict` is the same pieces in one
process) and the exits are scored by the same `evaluation.exit_report`.

How it runs, no_grad and in eval mode:

- a pipeline (`ctx.replica` False: decoupled stages with `executor: processes`,
  torch.distributed GPipe): rank 0 takes each batch, every rank runs the
  stages it owns (`ctx.stages`; the other stages' modules in a rank are stale
  and never used) and sends the payload and labels on with p2p.py's
  header+tensor messages, one batch after another, a few in flight; the last
  rank applies the head.  With a return path (AL: decoders h_K..h_1, each on
  its stage's rank) the last rank keeps the head's outputs until the forward
  pass has ended, then sends them back down, rank by rank, and rank 0 holds the
  prediction (the forward pass ends first, so no rank ever waits for a rank
  that waits for it);
- replicas (`ctx.replica` True: DDP): each rank evaluates its contiguous shard
  of the batches with the whole network.

The correct counts are summed over the ranks with `all_reduce`; exit logits
(methods with `exit_classifiers()`) go to rank 0 with `gather_object` as CPU
tensors, which is fine at test-set size.

`exit_time_s` is a measurement and is defined for ranks as the cumulative
compute time of stages and exit classifiers 1..k, each device synchronised,
summed over the split and divided by its samples: the time a pipeline rank
waits for its neighbour's message is not counted (in one process that wait does
not exist; the copy onto the next device, which it does count, is here the
receive).  So it is comparable with one process's exit times, not equal.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist

from bench.cell.evaluation import (
    EvalPoint,
    ExitReport,
    exit_classifiers,
    exit_logits,
    exit_parameters,
    exit_report,
    exits_after,
)
from bench.execution.devices import synchronize
from bench.execution.p2p import P2PReceiver, P2PSender
from bench.execution.rank_context import RankContext
from bench.execution.rank_loops import barrier
from methods.base import Method
from methods.exits import DEFAULT_POLICIES
from models import payload_to
from models.staged import Payload

__all__ = ["evaluate_in_ranks", "shard"]

_IN_FLIGHT = 4  # batches a rank may send ahead of the next one's receive


@dataclass
class _Pass:
    """What one rank saw of one split: correct answers among how many, and its exits' logits and times."""

    correct: int = 0
    total: int = 0
    exit_logits: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # exit -> per-batch CPU logits
    exit_busy_s: dict[int, float] = field(default_factory=dict)  # exit -> seconds of its stage + its classifier

    def count(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.correct += int((logits.argmax(dim=1).cpu() == y.cpu()).sum())
        self.total += len(y)


def shard(batches: Sequence, rank: int, world: int) -> Sequence:
    """Replica `rank`'s contiguous share of `batches` (shares differ by at most one batch)."""
    n = len(batches)
    return batches[rank * n // world:(rank + 1) * n // world]


def _received(peer: int, device: torch.device) -> Iterator[tuple[Payload, torch.Tensor]]:
    """Every message rank `peer` sends this rank, until its END."""
    inbound = P2PReceiver(peer, device)
    while (arrival := inbound.wait()) is not None:
        yield inbound.take(arrival)


def _forward(method: Method, ctx: RankContext, source: Iterable, last: bool,
             classifiers: Optional[Sequence[torch.nn.Module]], seen: _Pass) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's stages on every batch from `source`; sent on, counted, or (a return path) kept for the way back.

    With exit `classifiers`, each of its stages' exit logits and compute time are kept too.
    """
    outbound = None if last else P2PSender(ctx.rank + 1, _IN_FLIGHT, ctx.device)
    kept = []
    for x, y in source:
        if classifiers is not None:
            synchronize([ctx.device])  # a CUDA receive or copy still queued is not this rank's compute
        for k in ctx.stages:
            start = time.perf_counter()
            x = method.predict_stage(k, x)
            if classifiers is None:
                continue
            # the stage's time goes to its first exit, each further exit adds its classifier's
            for j in exits_after(method, k):
                logits = exit_logits(method, classifiers, j, x)
                synchronize([ctx.device])
                seen.exit_busy_s[j] = seen.exit_busy_s.get(j, 0.0) + time.perf_counter() - start
                start = time.perf_counter()
                seen.exit_logits.setdefault(j, []).append(logits.cpu())
        if outbound is not None:
            outbound.put(x, y)
        elif method.return_path:
            kept.append((method.predict_head(x), y))
        else:
            seen.count(method.predict_head(x), y)
    if outbound is not None:
        outbound.close()
    return kept


def _return(method: Method, ctx: RankContext, source: Iterable, first: bool, seen: _Pass) -> None:
    """The way back (`Method.predict_return`) through this rank's stages, last to first; rank 0 counts."""
    outbound = None if first else P2PSender(ctx.rank - 1, _IN_FLIGHT, ctx.device)
    for t, y in source:
        for k in reversed(ctx.stages):
            t = method.predict_return(k, t)
        if outbound is None:
            seen.count(t, y)
        else:
            outbound.put(t, y)
    if outbound is not None:
        outbound.close()


@torch.no_grad()
def _evaluate_split(method: Method, ctx: RankContext, batches: Sequence,
                    classifiers: Optional[Sequence[torch.nn.Module]]) -> _Pass:
    """This rank's part of the deployed prediction (and exits) over one split."""
    seen = _Pass()
    first, last = ctx.replica or ctx.first, ctx.replica or ctx.last
    mine = shard(batches, ctx.rank, ctx.world) if ctx.replica else batches
    barrier(ctx.device)  # the receivers are built after it (see P2PReceiver)
    source = ((payload_to(x, ctx.device), y) for x, y in mine) if first else _received(ctx.rank - 1, ctx.device)
    kept = _forward(method, ctx, source, last, classifiers, seen)
    if method.return_path:
        _return(method, ctx, kept if last else _received(ctx.rank + 1, ctx.device), first, seen)
    return seen


def _sum_counts(ctx: RankContext, *passes: _Pass) -> list[int]:
    counts = torch.tensor([n for p in passes for n in (p.correct, p.total)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(counts)
    return [int(n) for n in counts.tolist()]


def _gathered_exits(method: Method, ctx: RankContext, classifiers: Sequence[torch.nn.Module], test: _Pass,
                    labels: torch.Tensor, policies: Sequence[str]) -> Optional[ExitReport]:
    """Rank 0: every exit's logits in sample order (stages by owner, replicas' shards in rank order), scored."""
    part = {"logits": {k: torch.cat(parts) for k, parts in test.exit_logits.items()}, "busy_s": test.exit_busy_s}
    parts: Optional[list] = [None] * ctx.world if ctx.first else None
    dist.gather_object(part, parts, dst=0)
    if parts is None:
        return None
    n_exits = len(classifiers)
    logits = [torch.cat([p["logits"][k] for p in parts if k in p["logits"]]) for k in range(n_exits)]
    busy = [sum(p["busy_s"].get(k, 0.0) for p in parts) for k in range(n_exits)]
    ready = [sum(busy[:k + 1]) for k in range(n_exits)]
    return exit_report(logits, labels, ready, exit_parameters(method, classifiers), policies)


def evaluate_in_ranks(method: Method, ctx: RankContext, test_batches: Sequence, val_batches: Optional[Sequence],
                      policies: Sequence[str] = DEFAULT_POLICIES) -> Optional[EvalPoint]:
    """Test and hold-out accuracy, then every exit, computed by the ranks: rank 0's `EvalPoint`, None elsewhere.

    Collective: every rank calls it with the same batches.  Raises on every rank
    when the test split is empty, as `evaluation.test_accuracy` does.
    """
    classifiers = exit_classifiers(method)
    method.train(False)
    try:
        test = _evaluate_split(method, ctx, test_batches, classifiers)
        val = _evaluate_split(method, ctx, val_batches, None) if val_batches else _Pass()
    finally:
        method.train(True)
    correct, total, val_correct, val_total = _sum_counts(ctx, test, val)
    if total == 0:
        raise ValueError("evaluation saw 0 test samples: the test split is empty")
    labels = torch.cat([y for _, y in test_batches])
    report = None if classifiers is None else _gathered_exits(method, ctx, classifiers, test, labels, policies)
    if not ctx.first:
        return None
    val_acc = val_correct / max(val_total, 1) if val_batches else None
    return EvalPoint(correct / max(total, 1), total, val_acc, report)
