"""Rank methods: the training loop runs in one process per device, a rank each (GPipe via
torch.distributed.pipelining, DDP); `execution` is RANKS.

A distributed cell is one job of N rank processes that live for the whole cell
(bench/cell/rank_phases.py): every rank builds the same method with the same
seed, and `RankMethod.rank_trainer(ctx)` turns it into that rank's trainer, built
once and kept for the whole cell (DDP: one DistributedDataParallel and one
optimizer; gpipe_dist: one PipelineStage and schedule).  The rank's loop
(bench/execution/rank_loops.py) calls `step(x, y)` once per batch; a rank that
reads no training data (`reads_data` False) gets `(None, None)`.

`after_each_step` lets the code around a rank (the profiler) act at its step
boundary without the rank's trainer knowing: the profiler's `step()`, hence its
schedule and its `ProfilerStep#N` marks, as in the in-process executors.
"""
from __future__ import annotations

from abc import abstractmethod
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Execution, Method, make_optimizer

if TYPE_CHECKING:
    from bench.execution.rank_context import RankContext

__all__ = ["RankMethod", "RankTrainer", "ModuleTrainer", "after_each_step", "step_hooks"]

_step_hooks: list[Callable[[int], None]] = []


@contextmanager
def after_each_step(hook: Callable[[int], None]) -> Iterator[None]:
    """While open, a rank's loop in this process calls `hook(i)` once batch i is done (in the loop's thread)."""
    _step_hooks.append(hook)
    try:
        yield
    finally:
        _step_hooks.remove(hook)


def step_hooks() -> list[Callable[[int], None]]:
    """The hooks `after_each_step` opened, for the rank loop to call after each batch."""
    return list(_step_hooks)


class RankTrainer(Protocol):
    """One rank's share of a rank method, built once per cell (`RankMethod.rank_trainer`)."""

    reads_data: bool  # whether this rank reads training batches (the others get (None, None))
    shard: Optional[tuple[int, int]]  # (rank, world): the rank reads its slice of every global batch

    def step(self, x: Any, y: Any) -> Optional[float]:
        """Train on one batch; the loss where this rank computes one, else None."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """This rank's optimizers: what the lr schedulers step and its checkpoint shard saves."""

    def state_dict(self) -> dict:
        """This rank's parameters, buffers and optimizer state (its checkpoint shard)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


class ModuleTrainer:
    """The state of a rank trainer that trains one module with one optimizer (DDP's replica, a pipeline part)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])


class RankMethod(Method):
    """A coupled method whose ranks train it; each rank builds its `rank_trainer` once per cell.

    `optimizer` over the whole model exists for what runs outside the ranks'
    loop: BP's `train_step`, with which bench/cell/training_memory.py counts one
    step's memory.  Once a rank has built its trainer, `optimizers()` returns
    the trainer's, so lr schedulers and checkpoints see the rank's own.
    """

    execution = Execution.RANKS
    # True: every rank holds the whole network and reads its own slice of each global batch (DDP);
    # False: rank r holds the r-th stage group of a pipeline cut by the balance
    replica: ClassVar[bool] = False

    def __init__(self, model, config) -> None:
        super().__init__(model, config)
        self.optimizer: torch.optim.Optimizer = make_optimizer(model.parameters(), config)
        self._rank_optimizers: Optional[list[torch.optim.Optimizer]] = None

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        """Ranks place their own parts (`rank_trainer`); otherwise the model goes where evaluation runs."""
        self.model.to(stage_devices[0])

    def train_step(self, x, y) -> float:
        """BP's step on the whole batch, outside any rank: the update the ranks compute together.

        GPipe's micro-batch mean and DDP's averaged shards both equal it without
        batch norm; the training-memory count runs it on a copy.
        """
        device = next(self.model.parameters()).device
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x.to(device)), y.to(device))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self._rank_optimizers) if self._rank_optimizers is not None else [self.optimizer]

    def rank_trainer(self, ctx: "RankContext") -> RankTrainer:
        """This rank's trainer, inside an initialised process group; built once per cell."""
        trainer = self.make_rank_trainer(ctx)
        self._rank_optimizers = trainer.optimizers()
        return trainer

    @abstractmethod
    def make_rank_trainer(self, ctx: "RankContext") -> RankTrainer:
        """Build this rank's trainer (its part of the model on `ctx.device`, its optimizer)."""
