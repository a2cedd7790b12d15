"""The `profile: {wait, warmup, active}` setting of a grid, checked without importing torch.

Why a module of its own: the grid loader validates settings before any cell
runs and must stay cheap to import, while the profiler itself (bench.profiling)
pulls in torch.  The three numbers mean what they mean in
`torch.profiler.schedule`: skip `wait` steps, record `warmup` steps and throw
them away (the profiler's own start-up cost), then keep `active` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ProfileSchedule"]

_KEYS = ("wait", "warmup", "active")


@dataclass(frozen=True)
class ProfileSchedule:
    wait: int = 0
    warmup: int = 1
    active: int = 1

    @classmethod
    def from_setting(cls, value: Any) -> "ProfileSchedule":
        """Parse the grid value; a wrong one raises ValueError that shows the valid form."""
        example = "profile: {wait: 0, warmup: 1, active: 1}"
        if not isinstance(value, dict):
            raise ValueError(f"profile must be a mapping like `{example}`, not {value!r}")
        unknown = [k for k in value if k not in _KEYS]
        if unknown:
            raise ValueError(f"profile keys {unknown} unknown; valid keys: {', '.join(_KEYS)} (e.g. `{example}`)")
        for key, number in value.items():
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValueError(f"profile.{key} must be a non-negative integer, not {number!r}")
        schedule = cls(**value)
        if schedule.active < 1:
            raise ValueError(f"profile.active must be at least 1 (steps kept in the trace); `{example}`")
        return schedule

    @property
    def recorded_steps(self) -> int:
        """Steps the profiler's schedule walks through: wait + warmup + active."""
        return self.wait + self.warmup + self.active

    def batches(self, devices: int, queue_depth: int = 2) -> int:
        """Batches to feed: the schedule's steps plus enough to keep a pipeline full after them.

        A step ends when a batch leaves the *last* stage; the first stages may
        run ahead by a queue's depth per device boundary.  Without batches
        beyond the active steps they would already be idle (out of input)
        during them, and the trace would show the pipeline draining rather than
        its steady state.
        """
        return self.recorded_steps + max(0, devices - 1) * (queue_depth + 2)

    def active_indices(self) -> range:
        """Indices of the batches whose steps end up in the trace."""
        return range(self.wait + self.warmup, self.recorded_steps)
