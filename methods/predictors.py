"""Per-stage classifiers (DASCPL's predictors, Early Exit's exit heads), reference sizes.

`l`: Linear(in, C).  `m`: Linear(in, hid) -> act -> Linear(hid, C), with vision
hid 512 and Sigmoid, text hid 300 and Tanh (DASCPL reference).
"""
from __future__ import annotations

from typing import Optional

from torch import nn

__all__ = ["make_predictor", "PREDICTOR_TYPES"]

PREDICTOR_TYPES = ("l", "m")
_HIDDEN = {"vision": (512, nn.Sigmoid), "text": (300, nn.Tanh)}


def make_predictor(kind: Optional[str], in_dim: int, num_classes: int, modality: str) -> nn.Module:
    kind = kind or "m"
    if kind == "l":
        return nn.Linear(in_dim, num_classes)
    if kind == "m":
        hidden, act = _HIDDEN[modality]
        return nn.Sequential(nn.Linear(in_dim, hidden), act(), nn.Linear(hidden, num_classes))
    raise ValueError(f"unknown predictor {kind!r}; choose one of {PREDICTOR_TYPES}")
