"""Whether a grid's cells fit the GPUs of this machine, checked before the first cell runs.

Why up front: `resolve_devices` refuses a cell asking for more CUDA devices
than exist, but only when that cell starts; a grid of 1/2/4/8-GPU cells would
run the small ones and then fail every large one.  Saying so before anything
runs, with the `--only` filters that would fit, costs nothing.
"""
from __future__ import annotations

from typing import Iterable, Optional

__all__ = ["check_device_counts", "cuda_device_count"]


def cuda_device_count() -> int:
    """GPUs this process sees (CUDA_VISIBLE_DEVICES applied), 0 without CUDA."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _wants_cuda(kind: str, gpus: int) -> bool:
    # "auto" means CUDA only where CUDA exists (resolve_devices); elsewhere it means CPU workers.
    return kind == "cuda" or (kind == "auto" and gpus > 0)


def check_device_counts(cells: Iterable, gpus: Optional[int] = None) -> Optional[str]:
    """One line saying why the cells cannot all run on this machine's GPUs, or None if they can.

    `gpus`: the machine's GPU count (default: `torch.cuda.device_count()`).
    Only cells that will run on CUDA count (`device_kind: cuda`, or `auto` on a
    machine with GPUs); CPU workers are not limited by it.
    """
    gpus = cuda_device_count() if gpus is None else gpus
    counts = sorted({c.devices for c in cells if _wants_cuda(getattr(c.settings, "device_kind", "auto"), gpus)})
    too_many = [n for n in counts if n > gpus]
    if not too_many:
        return None
    fitting = [n for n in counts if n <= gpus]
    if gpus == 0:
        return (f"the grid asks for CUDA devices ({', '.join(map(str, counts))} per cell) but this machine has "
                "no GPU; run it with device_kind: cpu (settings) or on a machine with GPUs")
    where = ("; cells that fit: " + " or ".join(f"--only devices={n}" for n in fitting)) if fitting else \
        "; no cell of this grid fits"
    return (f"the grid asks for up to {max(too_many)} GPUs (devices={', '.join(map(str, too_many))}) but this "
            f"machine has {gpus} GPU{'s' if gpus != 1 else ''}{where}")
