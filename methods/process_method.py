"""Methods whose training loop runs in one process per device (GPipe via
torch.distributed.pipelining, DDP).

The parent builds the model once; each rank receives a pickled copy (same
initial weights), trains its share, and returns its timings and its final
parameters, which the parent loads back so evaluation sees the trained network.
A rank result is a dict: completion_times, losses, start_time, busy_s, state.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from .base import Method

__all__ = ["ProcessMethod", "device_sync", "timed_loop"]


def device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_loop(batches: Sequence, device: torch.device, step: Callable[[int, Any, Any], float | None]) -> dict:
    """Run `step(i, x, y)` per batch, recording when each finished (device synchronised)."""
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
    return {"start_time": start, "completion_times": completions, "losses": losses, "busy_s": busy}


class ProcessMethod(Method):
    """A coupled method executed by `bench.execution.processes.run_ranks`."""

    execution = "processes"

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        """Ranks place their own parts; the parent keeps the model where evaluation runs."""
        self.model.to(stage_devices[0])

    def train_step(self, x, y) -> float:
        raise NotImplementedError(f"{self.name} trains in one process per device; the runner calls rank_job")

    def rank_job(self, batches: Sequence, balance: Sequence[int], warmup_steps: int) -> tuple[Callable, tuple]:
        """(fn, args) such that fn(rank, world, device, *args) trains one rank and returns its result dict."""
        raise NotImplementedError

    def absorb(self, results: list[dict]) -> None:
        """Load every rank's trained parameters back into the parent's model."""
        state = self.model.state_dict()
        for result in results:
            for name, tensor in result["state"].items():
                state[name].copy_(tensor.to(state[name].device))
