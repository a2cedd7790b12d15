"""Where and when stages run: devices, the thread budget, placement, and the executors.

Names are resolved lazily (PEP 562), so importing `bench.execution.threads`
(the grid loader does) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DeviceSet": "devices", "resolve_devices": "devices", "synchronize": "devices",
    "available_cores": "threads", "cores_per_device": "threads",
    "run_pipelined": "pipeline", "run_sequential": "sequential",
    "choose_balance": "placement", "measure_stage_costs": "placement", "stage_devices": "placement",
    "NonFiniteLossError": "record", "RunRecord": "record",
    "Executor": "choice", "choose_executor": "choice", "run_training": "choice",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
