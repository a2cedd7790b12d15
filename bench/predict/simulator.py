"""A discrete-event simulator: one queue per resource (a device, a link), tasks with dependencies.

Why this shape: every schedule the harness runs (naive model parallelism,
GPipe, 1F1B, decoupled stages, data parallelism) is, per device, a fixed order
of work -- the order the executor's loop issues it -- plus "this needs that
finished (or started)" between devices.  So a schedule is a list of `Task`s;
each resource runs its own tasks in list order, a task starting once its
resource is free and its dependencies are met.  What is *not* modelled is
contention between resources (two links sharing a switch, compute slowing a
copy), by design: docs/PREDICT.md lists the assumptions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["Task", "TimedTask", "simulate", "DeadlockError"]


class DeadlockError(RuntimeError):
    """No resource can start its next task: a schedule whose order contradicts its dependencies."""


@dataclass(frozen=True, slots=True)
class Task:
    """One piece of work on one resource.

    `after`: names of tasks that must have *ended*; `after_start`: names of tasks
    that must have *started* (a bounded queue has room once the receiver took an item).
    `stage`, `phase` ("FW" | "LOSS" | "BW" | "UP" | "COPY"), `batch` and `micro`
    only describe the task for timelines and metrics.
    """

    name: str
    resource: str
    duration: float
    after: tuple[str, ...] = ()
    after_start: tuple[str, ...] = ()
    stage: Optional[int] = None
    phase: str = "FW"
    batch: int = 0
    micro: int = 0


@dataclass(frozen=True, slots=True)
class TimedTask:
    task: Task
    start: float
    end: float


def simulate(tasks: Sequence[Task]) -> dict[str, TimedTask]:
    """Start and end of every task: each resource runs its tasks in the order given, as early as allowed."""
    queues: dict[str, list[Task]] = {}
    for task in tasks:
        queues.setdefault(task.resource, []).append(task)
    heads = {resource: 0 for resource in queues}
    free = {resource: 0.0 for resource in queues}
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    done: dict[str, TimedTask] = {}
    remaining = len(tasks)
    while remaining:
        progressed = False
        for resource, queue in queues.items():
            i = heads[resource]
            while i < len(queue):
                task = queue[i]
                try:
                    ready = max([free[resource], *(ends[n] for n in task.after), *(starts[n] for n in task.after_start)])
                except KeyError:
                    break  # a dependency has not been scheduled yet
                end = ready + task.duration
                starts[task.name], ends[task.name] = ready, end
                done[task.name] = TimedTask(task, ready, end)
                free[resource] = end
                i += 1
                remaining -= 1
                progressed = True
            heads[resource] = i
        if not progressed:
            stuck = {r: q[heads[r]].name for r, q in queues.items() if heads[r] < len(q)}
            unknown = {n for t in tasks for n in (*t.after, *t.after_start)} - {t.name for t in tasks}
            hint = f"; unknown dependencies {sorted(unknown)[:3]}" if unknown else ""
            raise DeadlockError(f"no resource can start its next task: {stuck}{hint}")
    return done
