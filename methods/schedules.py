"""Learning-rate schedules of a training run, one scheduler per optimizer of a method.

Why per optimizer: a decoupled method has one optimizer per stage (each
`StageStep.optimizer`), a coupled one a single one (`Method.optimizers` lists
them; a rank method's ranks start each epoch from its lr); the reference trains every stage with the same schedule, so every optimizer gets
its own scheduler of the same kind.  Here "cosine" is
`torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`,
stepped once per *epoch* (after the epoch's batches), so epoch e (1-based) of E
trains at

    lr_min + (lr - lr_min) * (1 + cos(pi * (e - 1) / E)) / 2

and "constant" keeps `lr` throughout.  The references use no scheduler class:
at the start of every epoch they set a hand-written cosine of the steps done,
`end + (base - end) * (1 + cos(pi * s / S)) / 2` with s = (e - 1) x steps per
epoch and S = E x steps per epoch (SCPL `main.py:19-23,296`; DASCPL
`utils/utils.py:253-257,271-275`, `train_vision.py:464-466`).  s / S = (e - 1) / E,
so the two give every epoch the same rate (tests/test_schedules.py).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

__all__ = ["SCHEDULES", "make_schedulers", "cosine_lr", "current_lr"]

SCHEDULES = ("constant", "cosine")
Schedule = Literal["constant", "cosine"]


def make_schedulers(optimizers: list[torch.optim.Optimizer], schedule: Schedule, epochs: int,
                    lr_min: float = 0.0) -> list[LRScheduler]:
    """One scheduler per optimizer, to be stepped once after each epoch; none for "constant"."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return []
    return [CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min) for optimizer in optimizers]


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float = 0.0) -> float:
    """The closed form of the cosine schedule: the lr epoch `epoch` (1-based) of `epochs` trains at."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


def current_lr(optimizers: list[torch.optim.Optimizer], default: float) -> float:
    """The first optimizer's lr now (the curve's `lr` column), else `default`."""
    return float(optimizers[0].param_groups[0]["lr"]) if optimizers else default
