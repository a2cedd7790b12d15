"""Where stages go: contiguous groups of stages per device, given or balanced by measured time.

Why measure: VGG8's four stages differ several-fold in cost, so an even split
would leave one device idle most of the time.  Changing the stages to chase a
speedup is not allowed (every method must train the same network); only the
grouping may change.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from models.partition import contiguous_balance, even_balance, validate_split

if TYPE_CHECKING:
    from methods.base import Method

__all__ = ["stage_devices", "measure_stage_costs", "measure_layer_costs", "choose_balance", "BALANCE_PROBE_BATCHES"]

PROFILE_SAMPLES = 64  # samples per profiled batch when balancing by measured time
BALANCE_PROBE_BATCHES = 2  # batches (sliced to PROFILE_SAMPLES) timed to choose an "auto" balance


def stage_devices(balance: Sequence[int], devices: Sequence[torch.device]) -> list[torch.device]:
    """Expand a balance (stages per device) into one device per stage."""
    out: list[torch.device] = []
    for count, device in zip(balance, devices):
        out.extend([device] * count)
    return out


def measure_stage_costs(method: Method, batches: Sequence, repeats: int = 3,
                        device: Optional[torch.device] = None) -> list[float]:
    """Median seconds per stage step on a throw-away copy of a decoupled method, on `device`.

    A copy, so the profiled updates never touch the parameters being benchmarked.
    On `device` (the cell's first), because a split chosen from CPU timings of a
    network that trains on GPUs balances the wrong costs; None: where it is.
    """
    trial = copy.deepcopy(method)
    steps = trial.stage_steps()
    if device is not None:
        for step in steps:
            step.place(device)
    times: list[list[float]] = [[] for _ in steps]
    for i in range(repeats + 1):
        x, y = batches[i % len(batches)]
        for k, step in enumerate(steps):
            start = time.perf_counter()
            x, loss = step(x, y)
            float(loss)  # forces completion (a CUDA sync) before the clock is read
            if i > 0:  # the first round is warm-up (allocator, kernels)
                times[k].append(time.perf_counter() - start)
    return [sorted(t)[len(t) // 2] for t in times]


def measure_layer_costs(model, batches: Sequence, repeats: int = 3,
                        device: Optional[torch.device] = None) -> list[float]:
    """Median forward+backward seconds per stage of a coupled network (for GPipe/NMP balance).

    Each stage is timed on its own, input detached, backward of its output's
    sum, on a copy of the model.
    """
    from models import detach_payload, payload_to

    trial = copy.deepcopy(model)
    if device is not None:  # where it trains (see measure_stage_costs)
        trial.to(device)
    where = device if device is not None else next(trial.parameters()).device
    times: list[list[float]] = [[] for _ in trial.stages]
    for i in range(repeats + 1):
        x = payload_to(batches[i % len(batches)][0], where)
        for k, stage in enumerate(trial.stages):
            start = time.perf_counter()
            out = stage(x)
            first = out if isinstance(out, torch.Tensor) else out[0]
            if first.requires_grad:
                first.float().sum().backward()
            first.sum().item()  # completes queued device work before the clock is read
            if i > 0:
                times[k].append(time.perf_counter() - start)
            x = detach_payload(out)
    return [sorted(t)[len(t) // 2] for t in times]


def choose_balance(method: Method, num_devices: int, batches: Sequence, balance="auto",
                   device: Optional[torch.device] = None) -> tuple[list[int], list[float] | None]:
    """Resolve the grid's `balance` setting: a list, "even", "auto" (by measured time) or "predicted".

    `auto` and `predicted` time the stages on `device`, the cell's first (None: where the
    method is, the CPU before placement).
    """
    num_stages = method.model.num_stages
    validate_split(num_stages, num_devices)
    if isinstance(balance, (list, tuple)):
        if len(balance) != num_devices or sum(balance) != num_stages or min(balance) < 1:
            raise ValueError(
                f"balance {list(balance)} must have {num_devices} positive entries summing to {num_stages}"
            )
        return list(balance), None
    if num_devices == 1:
        return [num_stages], None
    if balance == "even":
        return even_balance(num_stages, num_devices), None
    # Relative stage costs are what placement needs, and they hardly depend on the batch
    # size; profiling on a slice keeps a batch-512 cell from spending minutes on it.
    sample = [(x[:PROFILE_SAMPLES], y[:PROFILE_SAMPLES]) for x, y in batches[:BALANCE_PROBE_BATCHES]]
    if method.decoupled:
        costs = measure_stage_costs(method, sample, device=device)
    else:
        costs = measure_layer_costs(method.model, sample, device=device)
    if balance == "predicted":  # the split bench.predict's simulator finds fastest for this method's schedule
        from bench.predict.balance import predicted_balance

        kind = device.type if device is not None else next(method.model.parameters()).device.type
        return predicted_balance(method, num_devices, costs, len(sample[0][1]), kind), costs
    return contiguous_balance(costs, num_devices), costs
