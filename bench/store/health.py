"""Training health: did a run learn, is it still learning, did its loss spike? The row's `health` column.

Why: a run that never learned still yields an accuracy, an epoch time and a
speedup, and a table prints them like any other.  Real MNIST digits on the
vanilla ConvNet with Adam at 1e-3 left BP at chance (loss above ln 10) while
SCPL reached 91 %, and the report said "BP 8.75 %" as a result.  These flags
say so wherever the numbers appear (report.html, the markdown tables, the
console summary), and speedup tables stop treating such a baseline as one.

Flags (an empty list is a healthy run), for the final head and, for methods
with early exits, per exit as `exit<k>:<flag>` (k from 1):

- `did_not_learn`: the final accuracy is below chance (1 / classes) plus
  `chance_margin`, or the training loss never went below its first epoch's.
- `still_improving`: the accuracy rose by more than `improving_margin` over the
  last `improving_window` evaluations: more epochs would change the numbers
  (and maybe the ranking).
- `unstable`: a loss is not finite, or rose above the lowest loss before it
  by more than `spike_fraction` of the first loss (a spike that undoes half
  the progress at the default 0.5; measured against the first loss so a tiny
  loss late in training does not count a wobble as a spike).

What each mode can flag (docs/TRAINING.md "Training health"): a training run
all three, from its curve (per-epoch loss, accuracy per evaluation, per exit).
A sampled cell is judged only when it trained before it was timed
(`train_steps` > 0; otherwise its few steps measure time, not learning):
`did_not_learn` by accuracy, `still_improving` over its evaluation points,
`unstable` over the losses of its timed steps; the loss criterion of
`did_not_learn` needs epochs, which it has not.

Torch-free and pandas-free: the cell computes its row's flags, and the report
recomputes them from rows and curves for results written before the column
existed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

__all__ = ["DID_NOT_LEARN", "STILL_IMPROVING", "UNSTABLE", "FLAGS", "THRESHOLD_SETTINGS", "HealthThresholds",
           "LearningTrace", "health_flags", "exit_flag", "head_flags"]

DID_NOT_LEARN = "did_not_learn"
STILL_IMPROVING = "still_improving"
UNSTABLE = "unstable"
FLAGS = (DID_NOT_LEARN, STILL_IMPROVING, UNSTABLE)

THRESHOLD_SETTINGS = {  # HealthThresholds field -> the grid setting (bench/grid/settings.py) that sets it
    "chance_margin": "health_chance_margin",
    "improving_margin": "health_improving_margin",
    "improving_window": "health_improving_window",
    "spike_fraction": "health_spike_fraction",
}


@dataclass(frozen=True)
class HealthThresholds:
    """The margins the flags use; their defaults and meanings live on the grid settings (THRESHOLD_SETTINGS)."""

    chance_margin: float
    improving_margin: float
    improving_window: int
    spike_fraction: float

    @classmethod
    def from_settings(cls, settings: Any) -> "HealthThresholds":
        """From CellSettings, or from a mapping holding the settings (e.g. a row's settings_json with defaults)."""
        values: Mapping[str, Any] = (settings if isinstance(settings, Mapping) else
                                     {key: getattr(settings, key) for key in THRESHOLD_SETTINGS.values()})
        return cls(**{name: values[key] for name, key in THRESHOLD_SETTINGS.items()})


@dataclass(frozen=True)
class LearningTrace:
    """What a cell measured about its learning, in order of training.

    `acc_curve`: the final head's accuracy at each evaluation (the last is the final
    accuracy); `losses`: per epoch (a training run) or per step (a sampled cell's
    timed steps); `exit_curves`: per evaluation, the accuracy of each exit.
    `losses_per_epoch` says whether the loss criterion of did_not_learn applies.
    """

    num_classes: Optional[int]
    acc_curve: Sequence[float] = ()
    losses: Sequence[float] = ()
    losses_per_epoch: bool = False
    exit_curves: Sequence[Sequence[float]] = field(default_factory=tuple)


def _finite(values: Sequence[Optional[float]]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _accuracy_flags(curve: Sequence[float], classes: Optional[int], limits: HealthThresholds) -> list[str]:
    flags = []
    if curve and classes and curve[-1] < 1.0 / classes + limits.chance_margin:
        flags.append(DID_NOT_LEARN)
    window = curve[-(limits.improving_window + 1):]  # the last window evaluations' gains, from the one before
    if len(window) >= 2 and window[-1] - window[0] > limits.improving_margin:
        flags.append(STILL_IMPROVING)
    return flags


def _loss_flags(losses: Sequence[float], per_epoch: bool, limits: HealthThresholds) -> list[str]:
    flags = []
    if any(not math.isfinite(v) for v in losses):
        return [UNSTABLE]
    if per_epoch and len(losses) >= 2 and min(losses[1:]) >= losses[0]:
        flags.append(DID_NOT_LEARN)
    lowest = math.inf
    for value in losses:
        if value - lowest > limits.spike_fraction * abs(losses[0]):
            flags.append(UNSTABLE)
            break
        lowest = min(lowest, value)
    return flags


def head_flags(trace: LearningTrace, limits: HealthThresholds) -> list[str]:
    """The final head's flags, each once, in FLAGS order."""
    found = set(_accuracy_flags(_finite(trace.acc_curve), trace.num_classes, limits))
    found |= set(_loss_flags([float(v) for v in trace.losses if v is not None], trace.losses_per_epoch, limits))
    return [flag for flag in FLAGS if flag in found]


def exit_flag(exit_number: int, flag: str) -> str:
    """`exit2:did_not_learn`: a flag of one early exit (numbered from 1)."""
    return f"exit{exit_number}:{flag}"


def health_flags(trace: LearningTrace, limits: HealthThresholds) -> list[str]:
    """Every flag of a run: the final head's, then each exit's accuracy flags (`exit<k>:...`)."""
    flags = head_flags(trace, limits)
    exits = max((len(point) for point in trace.exit_curves), default=0)
    for k in range(exits):
        curve = _finite([point[k] if k < len(point) else None for point in trace.exit_curves])
        flags += [exit_flag(k + 1, f) for f in _accuracy_flags(curve, trace.num_classes, limits)]
    return flags
