"""What a library schedule costs beyond the stage work it schedules, measured on one device.

Why: GPipe (torchgpipe, torch.distributed.pipelining) and DDP are costed from
BP's one-device cells (same network, same forward and backward; predictor.py),
but their own runs cost more: the batch split and the schedule's Python per
micro-batch, checkpointing's bookkeeping, smaller kernels on micro-batches,
DDP's bucket hooks and its rank's loop -- none of which BP pays, and which weigh
most at small batches.  Where the folder has a one-device cell of such a
method, its overhead is the measured step minus the step simulated for one
device from BP's costs, per micro-batch (per step for a data-parallel replica).
On one device the simulated step grows linearly with the overhead, so two
simulations give the count.  On N devices (`Plan.overhead_s`) a micro-batch's
overhead is spread over the stages by their share of the work, so each device
pays for the stages it runs, not the whole of it: on this VM torchgpipe's own
fixed cost was under 1 ms per micro-batch (tiny linear layers, chunks 4, one
thread: 3.1 ms a step on one partition, 4.1 ms on two), against the 9-20 ms
per micro-batch its ConvNet cells show over BP, so most of it is work that goes
where the stages go.  Each batch size gives a point; the overhead of a device's
step of another size is interpolated linearly, the nearest point outside the
range.  No multi-device cell is read.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .costs import CostCurve
from .inputs import CellFacts, Network, options_of
from .links import Link
from .predictor import OWN_COSTS, curve_for, facts_of, predict_cell

__all__ = ["OverheadCurve", "measured_overheads", "overhead_for", "samples_per_device"]

_PROBE_S = 1e-3  # the overhead of the second simulation (any positive value: the step is linear in it)


@dataclass(frozen=True)
class OverheadCurve:
    """(samples a device steps on, seconds per unit) points, sorted by samples."""

    points: tuple[tuple[float, float], ...]

    def at(self, samples: float) -> float:
        xs = [x for x, _ in self.points]
        i = bisect.bisect_left(xs, samples)
        if i == 0:
            return self.points[0][1]
        if i == len(xs):
            return self.points[-1][1]
        (x0, y0), (x1, y1) = self.points[i - 1], self.points[i]
        return y0 + (y1 - y0) * (samples - x0) / (x1 - x0)


def samples_per_device(schedule: str, batch: int, devices: int) -> float:
    """What one device steps on: a data-parallel replica's share, else the whole batch (split in micro-batches)."""
    return batch / devices if schedule == "data_parallel" else float(batch)


def _one_device_overhead(cell: CellFacts, curve: CostCurve, link: Link, results_dir: Path) -> Optional[float]:
    facts = facts_of(cell.network, results_dir)

    def simulated(overhead: float) -> float:
        return predict_cell(cell.method, curve, cell.network, cell.batch, 1, None, link, cell.settings,
                            cell.device_kind, facts, overhead_s=overhead).step_s

    base, probed = simulated(0.0), simulated(_PROBE_S)
    units = (probed - base) / _PROBE_S
    if cell.step_s is None or units <= 0:
        return None
    return (cell.step_s - base) / units


def measured_overheads(ones: list[CellFacts], curves: dict[tuple[str, Network], CostCurve], bp: Optional[str],
                       link: Link, results_dir: Path) -> dict[tuple[str, Network], OverheadCurve]:
    """(method, network) -> its overhead curve, for every method costed from BP that ran on one device."""
    from methods import method_class

    points: dict[tuple[str, Network], dict[float, float]] = {}
    for cell in ones:
        schedule = method_class(cell.method).schedule_for(options_of(cell.method, cell.settings))
        if schedule in OWN_COSTS:
            continue  # its one-device cells are its costs: no overhead beyond them
        curve = curve_for(cell.method, schedule, cell.network, curves, bp)
        overhead = _one_device_overhead(cell, curve, link, results_dir) if curve is not None else None
        if overhead is not None:
            points.setdefault((cell.method, cell.network), {})[float(cell.batch)] = overhead
    return {key: OverheadCurve(tuple(sorted(by.items()))) for key, by in points.items()}


def overhead_for(overheads: dict[tuple[str, Network], OverheadCurve], method: str, network: Network,
                 schedule: str, batch: int, devices: int) -> float:
    """The overhead to simulate `method` with at `batch` on `devices` (0 without a one-device measurement)."""
    curve = overheads.get((method, network))
    return curve.at(samples_per_device(schedule, batch, devices)) if curve else 0.0
