"""Projector heads g_k of the contrastive methods, with the reference sizes.

Types (METHODS.md): `i` identity, `l` Linear(in, out), `m` Linear(in, hid) ->
ReLU -> Linear(hid, out).  Vision uses hid 512 / out 1024 and `m` by default;
text uses 300 / 300 and `i` by default.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

__all__ = ["make_projector", "PROJECTOR_SIZES", "DEFAULT_PROJECTOR", "PROJECTOR_TYPES"]

PROJECTOR_TYPES = ("i", "l", "m")
PROJECTOR_SIZES = {"vision": (512, 1024), "text": (300, 300)}  # (hidden, out)
DEFAULT_PROJECTOR = {"vision": "m", "text": "i"}


def make_projector(kind: Optional[str], in_dim: int, modality: str) -> nn.Module:
    """Build projector `kind` (None = the modality's reference default)."""
    kind = kind or DEFAULT_PROJECTOR[modality]
    hidden, out = PROJECTOR_SIZES[modality]
    if kind == "i":
        return nn.Identity()
    if kind == "l":
        return nn.Linear(in_dim, out)
    if kind == "m":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
    raise ValueError(f"unknown projector {kind!r}; choose one of {PROJECTOR_TYPES}")
