"""A registered model sized for a dataset: its class count, and its vocabulary for text.

Why here and not in the harness: every caller (the cell, the grid's up-front
checks on the meta device, tests) must size a model the same way, and the
rule belongs to the models.  `spec` is any object with `modality`,
`num_classes` and, for text, `vocab_size` (a `data.DatasetSpec`).
"""
from __future__ import annotations

from typing import Any

import torch

from .registry import create_model, model_accepts
from .staged import StagedModel

__all__ = ["build_model"]


def build_model(model: str, spec: Any, device: str | torch.device | None = None, **kwargs: Any) -> StagedModel:
    """Create `model` sized for dataset `spec` (classes, and vocabulary for text)."""
    if spec.modality == "text" and model_accepts(model, "vocab_size"):
        kwargs.setdefault("vocab_size", spec.vocab_size)
    if device is None:
        staged = create_model(model, num_classes=spec.num_classes, **kwargs)
    else:
        with torch.device(device):
            staged = create_model(model, num_classes=spec.num_classes, **kwargs)
    staged.name = model  # methods with per-model reference sizes (AL) read it
    return staged
