"""A simulated schedule as a `Trace`, so predicted timelines are drawn by bench/report/timeline.py like measured ones.

Same lanes (lanes[stage] = device), same phase codes and colours, same time
axis; one `ProfilerStep` per simulated batch, from the previous batch's
completion to its own, as the profiler marks iterations.  A collective (DDP's
all-reduce) is drawn on every device it occupies, as a copy.
"""
from __future__ import annotations

from bench.profiling.trace_events import PhaseEvent, StepSpan, Trace

from .outcome import Outcome

__all__ = ["predicted_trace"]


def predicted_trace(outcome: Outcome) -> Trace:
    """The simulated tasks as phase events (µs) and iterations."""
    phases = []
    devices = sorted(set(outcome.lanes))
    for item in outcome.timed.values():
        task = item.task
        if item.end <= item.start:
            continue
        stages = [task.stage] if task.stage is not None else devices  # a collective: every device
        for stage in stages:
            phases.append(PhaseEvent(stage, task.phase, item.start * 1e6, item.end * 1e6, task.name,
                                     "predicted", task.resource))
    steps, previous = [], 0.0
    for number, end in enumerate(outcome.completions):
        steps.append(StepSpan(number, previous * 1e6, end * 1e6))
        previous = end
    return Trace(phases=sorted(phases, key=lambda e: e.start_us), steps=steps)
