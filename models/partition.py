"""Contiguous groupings of a sequence of stages (or blocks) over devices.

Why contiguous: a stage only talks to its neighbours, so each device holds a
run of consecutive stages and activations cross a device boundary only
between runs (the torchgpipe "balance" convention: a list of stages per device).
The stages themselves never change; only the grouping does.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Sequence

__all__ = ["validate_split", "even_balance", "contiguous_balance"]


def validate_split(num_stages: int, devices: int) -> None:
    """Raise ValueError, listing the valid device counts, unless 1 <= devices <= num_stages."""
    if not _is_count(num_stages) or num_stages < 1:
        raise ValueError(f"a model needs at least one stage, got num_stages={num_stages!r}")
    if not _is_count(devices) or not 1 <= devices <= num_stages:
        raise ValueError(
            f"model with {num_stages} stages cannot be split over {devices} devices "
            f"(every device needs at least one whole stage); choose devices in {list(range(1, num_stages + 1))}"
        )


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def even_balance(num_stages: int, devices: int) -> list[int]:
    """Stages per device as equal as counts allow; later devices take the remainder.

    Example: even_balance(10, 4) == [2, 2, 3, 3].
    """
    validate_split(num_stages, devices)
    base, extra = divmod(num_stages, devices)
    return [base] * (devices - extra) + [base + 1] * extra


def contiguous_balance(costs: Sequence[float], devices: int) -> list[int]:
    """Stages per device that minimise the most expensive device's total cost.

    `costs[k]` is stage k's cost (e.g. measured seconds).  Among groupings with
    the same minimal maximum, earlier devices get fewer stages (the
    lexicographically smallest balance), so the choice is deterministic.
    Exact: the optimum is found by dynamic programming over (first stage,
    devices left), O(K^2 N) for K stages and N devices.

    Example: contiguous_balance([1, 1, 1, 5], 2) == [3, 1].
    """
    costs = [float(c) for c in costs]
    validate_split(len(costs), devices)
    if any(not math.isfinite(c) or c < 0 for c in costs):
        raise ValueError(f"stage costs must be finite and non-negative, got {costs}")
    num_stages = len(costs)

    def group(start: int, stop: int) -> float:
        # fsum is exactly rounded, so equal groups compare equal however they are summed.
        return math.fsum(costs[start:stop])

    @lru_cache(maxsize=None)
    def best(start: int, left: int) -> float:
        """Smallest possible max group cost for stages[start:] over `left` devices."""
        if left == 1:
            return group(start, num_stages)
        return min(
            max(group(start, stop), best(stop, left - 1))
            for stop in range(start + 1, num_stages - left + 2)
        )

    target = best(0, devices)
    balance: list[int] = []
    start = 0
    for left in range(devices, 1, -1):
        # The shortest first group that still lets the rest reach the optimum.
        stop = next(
            stop for stop in range(start + 1, num_stages - left + 2)
            if group(start, stop) <= target and best(stop, left - 1) <= target
        )
        balance.append(stop - start)
        start = stop
    balance.append(num_stages - start)
    return balance
