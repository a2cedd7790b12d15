"""Rank methods: the training loop runs in one process per device, a rank each (GPipe via
torch.distributed.pipelining, DDP); `execution` is RANKS.

The parent builds the model once; each rank receives a pickled copy (same
initial weights), trains its share, and returns its timings and its final
parameters, which the parent loads back so evaluation sees the trained network.
A rank result is a dict: completion_times, losses, start_time, busy_s, state,
optimizer_state.  `RankMethod` is the contract `bench.execution.choice` runs
such a method through (`rank_job`, `absorb`, `optimizer_state`).

`timed_loop` is every rank's loop; `after_each_step` lets the code around a rank
(the profiler, bench/profiling/profiler.py) act at its step boundary without the
rank's job knowing: the profiler's `step()`, hence its schedule and its
`ProfilerStep#N` marks, as in the in-process executors.
"""
from __future__ import annotations

import dataclasses
import time
from abc import abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Execution, Method, MethodConfig, make_optimizer

__all__ = ["RankMethod", "device_sync", "timed_loop", "load_optimizer_state", "optimizer_state_by_name",
           "after_each_step"]

_step_hooks: list[Callable[[int], None]] = []


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def after_each_step(hook: Callable[[int], None]) -> Iterator[None]:
    """While open, `timed_loop` in this process calls `hook(i)` once batch i is done (in the loop's thread)."""
    _step_hooks.append(hook)
    try:
        yield
    finally:
        _step_hooks.remove(hook)


def timed_loop(batches: Sequence, device: torch.device, step: Callable[[int, Any, Any], float | None]) -> dict:
    """Run `step(i, x, y)` per batch, recording when each finished (device synchronised), then the step hooks."""
    import torch.distributed as dist

    dist.barrier()  # every rank starts the clock together
    start = time.perf_counter()
    completions, losses, busy = [], [], 0.0
    for i, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        loss = step(i, x, y)
        device_sync(device)
        t1 = time.perf_counter()
        busy += t1 - t0
        completions.append(t1)
        losses.append(loss)
        for hook in _step_hooks:
            hook(i)
    return {"start_time": start, "completion_times": completions, "losses": losses, "busy_s": busy}


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, named: dict[str, nn.Parameter]) -> dict:
    """{parameter name: its optimizer state on the CPU}: what crosses between parent and ranks."""
    return {name: {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for name, p in named.items() if p in optimizer.state}


def load_optimizer_state(optimizer: torch.optim.Optimizer, named: dict[str, nn.Parameter], state: dict) -> None:
    """Give a rank's optimizer the parent's per-parameter state (Adam moments, step), matched by name."""
    for name, param in named.items():
        if name in state:
            # Adam's "step" stays a CPU tensor (what a non-capturable optimizer expects)
            optimizer.state[param] = {k: v.to(param.device) if torch.is_tensor(v) and k != "step" else v
                                      for k, v in state[name].items()}


class RankMethod(Method):
    """A coupled method whose ranks train it, run by `bench.execution.ranks.run_ranks`.

    The parent holds the whole model and one optimizer over it: lr schedulers
    step that optimizer like any method's, the ranks start every epoch from its
    lr and its state (`rank_config`, `optimizer_state`), and `absorb` brings
    their parameters and optimizer state back into it.
    """

    execution = Execution.RANKS

    def __init__(self, model, config) -> None:
        super().__init__(model, config)
        # Built now, not at the first untimed step: a training run's schedulers and checkpoints
        # need it from the start, and it holds the Adam state the ranks hand back between epochs.
        self.optimizer: torch.optim.Optimizer = make_optimizer(model.parameters(), config)

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        """Ranks place their own parts; the parent keeps the model where evaluation runs."""
        self.model.to(stage_devices[0])

    def train_step(self, x, y) -> float:
        """Untimed (accuracy) training in the parent: BP's step on the whole batch.

        It is the update the ranks compute (GPipe's micro-batch mean and DDP's
        averaged shards both equal it without batch norm), without spawning
        processes per step; the optimizer state goes on to the ranks
        (`optimizer_state`).  Before this existed a grid with `train_steps` > 0
        failed every process-method cell.
        """
        device = next(self.model.parameters()).device
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x.to(device)), y.to(device))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def rank_config(self) -> MethodConfig:
        """The config the ranks build their optimizers from: the lr is the parent optimizer's now.

        So a rank method's epochs follow the same `CosineAnnealingLR` that
        steps every other method's optimizers (methods/schedules.py).
        """
        return dataclasses.replace(self.config, lr=float(self.optimizer.param_groups[0]["lr"]))

    def optimizer_state(self) -> dict:
        """{parameter name: optimizer state} so far (empty before any step), for the ranks to continue from."""
        return optimizer_state_by_name(self.optimizer, dict(self.model.named_parameters()))

    @abstractmethod
    def rank_job(self, batches: Sequence, balance: Sequence[int], warmup_steps: int) -> tuple[Callable, tuple]:
        """(fn, args) such that fn(rank, world, device, *args) trains one rank and returns its result dict."""

    def absorb(self, results: list[dict]) -> None:
        """Load every rank's trained parameters back into the parent's model."""
        state = self.model.state_dict()
        for result in results:
            for name, tensor in result["state"].items():
                state[name].copy_(tensor.to(state[name].device))
        # and their optimizer state (Adam's moments and step), so a training run's next epoch, or
        # a checkpoint, goes on from where the ranks stopped rather than from fresh moments
        moments = {name: s for result in results for name, s in result.get("optimizer_state", {}).items()}
        if moments:
            load_optimizer_state(self.optimizer, dict(self.model.named_parameters()), moments)
