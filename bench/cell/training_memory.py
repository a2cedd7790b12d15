"""Training memory per stage, counted from tensors rather than read from an allocator.

Why: the decoupled methods' memory claim (ContSup, SCPL: a module needs only its
own activations) is about *per module* memory, but on CPU every stage worker
shares one process, so peak RSS cannot be split by stage, and CUDA's
`max_memory_allocated` splits only by device.  Counting is exact on any device:
for one training step we add up the storages autograd saves for backward
during the forward and loss (each storage once, parameters excluded), plus the
parameters, their gradients and the optimizer state.  Decoupled methods get one
number per stage step; coupled methods (BP, GPipe, DDP's parent step) one
number for the whole network, which is what a single module must hold there.

Recomputation during backward (GPipe's checkpointing) is not counted: only
tensors saved while no backward is running are.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from methods.base import Method

__all__ = ["SavedTensorBytes", "training_memory_bytes", "static_bytes"]


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    return (t.device.type, t.device.index, storage.data_ptr())


class SavedTensorBytes:
    """Context manager: bytes of distinct storages autograd saves for backward, outside backward."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {_storage_key(t) for t in exclude}
        self._seen: set = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if torch._C._current_autograd_node() is None:  # forward/loss, not recomputation in backward
            key = _storage_key(t)
            if key not in self._excluded and key not in self._seen:
                self._seen.add(key)
                self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _optimizers(obj) -> list[torch.optim.Optimizer]:
    found = []
    for value in vars(obj).values():
        if isinstance(value, torch.optim.Optimizer):
            found.append(value)
    return found


def static_bytes(params: Sequence[nn.Parameter], optimizers: Sequence[torch.optim.Optimizer]) -> int:
    """Parameters + their gradients + the optimizer state (after a step, when it exists)."""
    total = sum(p.numel() * p.element_size() for p in params)
    total += sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    for opt in optimizers:
        for state in opt.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return total


def _move_to_cpu(method: Method) -> None:
    """Every module of `method` and the state of the optimizers its coupled step uses on the CPU
    (the Parameter objects stay)."""
    for module in method.modules():
        module.cpu()
    for optimizer in _optimizers(method):  # what train_step steps and static_bytes counts
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.cpu()


def training_memory_bytes(method: Method, batch: tuple, on_cpu: bool = False) -> list[int]:
    """Bytes one training step holds, per stage step (decoupled) or for the whole network.

    Runs on a deep copy, so the measured method's parameters and optimizer state
    are untouched.  `on_cpu`: a coupled method's step runs on the CPU, for a
    pipeline rank's method, which placed only its own stages (the other ranks'
    stayed on the CPU), so its whole network spans devices it cannot step across;
    the bytes a step holds are the same on any device.
    """
    trial = copy.deepcopy(method)
    if on_cpu and not trial.decoupled:
        _move_to_cpu(trial)
    x, y = batch
    if trial.decoupled:
        out = []
        for step in trial.stage_steps():
            params = list(step.parameters())
            with SavedTensorBytes(exclude=params) as saved:
                x, _ = step(x, y)
            out.append(saved.bytes + static_bytes(params, [step.optimizer]))
        return out
    params = [p for module in trial.modules() for p in module.parameters()]
    if hasattr(trial, "pipe"):  # torchgpipe holds its own copy of the layers
        params = list(trial.pipe.parameters())
    with SavedTensorBytes(exclude=params) as saved:
        trial.train_step(x, y)
    return [saved.bytes + static_bytes(params, _optimizers(trial))]
