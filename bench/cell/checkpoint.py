"""Resumable training runs: everything needed to go on after epoch e, written atomically.

Why these contents: a run resumed from epoch e must end with the parameters,
losses and curve of the uninterrupted run, bit for bit on CPU.  Parameters and
buffers alone are not enough: Adam's moments and step counts, the lr
schedulers' positions, the method's `extra_state` (DASCPL's per-stage batch
counters, its accumulation clock) and the random number generators (dropout,
any draw not seeded per batch) all carry over from one epoch to the next.  The data order and
augmentation need nothing: they are functions of (seed, epoch, batch)
(data/epochs.py).

The file is written under a temp name and renamed over the old one (fsynced
first), so a process killed at any moment leaves the previous checkpoint or the
new one, never half a file.

    <results>/checkpoints/<cell_id>/checkpoint.pt

A distributed cell (bench/cell/rank_phases.py) checkpoints per rank: each rank
writes its own shard (its stages' parameters, optimizer and scheduler states,
extra state, its RNG states), versioned by epoch, atomically; after a barrier
rank 0 writes one manifest (epoch, world, balance, the shards' names, the run
state) atomically and then deletes older shards.  So a rank killed while
writing leaves the last manifest and the shards it names; a resume reads the
manifest, refuses another world or balance, and loads its own shard.

    <results>/checkpoints/<cell_id>/manifest.pt
    <results>/checkpoints/<cell_id>/rank<r>-epoch<e>.pt
"""
from __future__ import annotations

import errno
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from bench.store.layout import atomic_write
from methods.base import Method

__all__ = ["RunState", "checkpoint_path", "save_checkpoint", "load_checkpoint", "remove_checkpoint",
           "method_state", "restore_method", "RankCheckpoints"]

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class RunState:
    """What a training run has done so far, besides the method's own state."""

    epoch: int = 0  # epochs finished
    wall_s: float = 0.0  # training wall-clock so far (evaluation excluded)
    curve: list[dict] = field(default_factory=list)  # CurveRow dicts, one per finished epoch
    selection: dict = field(default_factory=dict)  # SelectionCurve fields
    epoch_times_s: list[float] = field(default_factory=list)
    data_wait_s: list[float] = field(default_factory=list)
    samples: int = 0
    last_loss: Optional[float] = None
    resumed_from_epoch: Optional[int] = None  # set on the run that loaded the checkpoint


def checkpoint_path(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / CHECKPOINTS_DIR / cell_id / CHECKPOINT_FILE


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def method_state(method: Method, schedulers: list) -> dict:
    """Parameters, buffers, optimizer and scheduler states, and the extra state of `method`."""
    steps = method.stage_steps() if method.decoupled else []
    return {
        "modules": [m.state_dict() for m in method.modules()],
        # the stage steps' own modules (objectives may hold modules outside `modules()`)
        "steps": [s.state_dict() for s in steps],
        "extra_state": method.extra_state(),  # e.g. DASCPL's accumulation clock
        "optimizers": [o.state_dict() for o in method.optimizers()],
        "schedulers": [s.state_dict() for s in schedulers],
    }


def restore_method(method: Method, schedulers: list, state: dict) -> None:
    """Load `method_state` back into a freshly built, placed method and its schedulers."""
    for module, saved in zip(method.modules(), state["modules"]):
        module.load_state_dict(saved)
    steps = method.stage_steps() if method.decoupled else []
    for step, saved in zip(steps, state["steps"]):
        step.load_state_dict(saved)
    if "extra_state" not in state:
        raise RuntimeError("checkpoint has no extra_state: it was written by an older version; delete it to "
                           "train this cell from the start")
    method.load_extra_state(state["extra_state"])
    optimizers = method.optimizers()
    if len(optimizers) != len(state["optimizers"]):
        raise RuntimeError(f"checkpoint has {len(state['optimizers'])} optimizer states, the method "
                           f"{len(optimizers)}: it was written by a different method or version")
    for optimizer, saved in zip(optimizers, state["optimizers"]):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(schedulers, state["schedulers"]):
        scheduler.load_state_dict(saved)


# below this much free space a failed write is put down to a full disk
_FULL_DISK_BYTES = 256 * 2**20


def _save(blob: dict, path: Path) -> Path:
    """`torch.save(blob)` to `path` atomically, saying so plainly when the disk is full.

    Why: torch.save on a full disk fails with "[enforce fail at inline_container.cc]
    unexpected pos N vs M", which names neither the cause nor the file (pytorch/pytorch
    issue 76108); a reference ConvNet's checkpoint (parameters and Adam's two moments)
    is about 75 MB.
    """
    try:
        return atomic_write(path, lambda tmp: torch.save(blob, tmp))
    except (RuntimeError, OSError) as exc:
        free = shutil.disk_usage(path.parent).free
        if free >= _FULL_DISK_BYTES and getattr(exc, "errno", None) != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"no space left to write checkpoint {path} ({free / 2**20:.0f} MiB free on "
                                    "its disk): free some space, or pass --results a folder on a larger "
                                    "disk") from exc


def save_checkpoint(path: Path, method: Method, schedulers: list, run: RunState) -> Path:
    """Write the checkpoint of `method` after `run.epoch` epochs, atomically."""
    blob = {"method": method_state(method, schedulers), "run": vars(run).copy(), "rng": _rng_state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(blob, path)


def load_checkpoint(path: Path, method: Method, schedulers: list) -> Optional[RunState]:
    """Restore `method`, its schedulers and the RNGs from `path`; the run state, or None if there is none."""
    if not path.exists():
        return None
    blob: dict[str, Any] = torch.load(path, weights_only=False, map_location="cpu")
    restore_method(method, schedulers, blob["method"])
    _set_rng_state(blob["rng"])
    return RunState(**blob["run"])


def remove_checkpoint(path: Path) -> None:
    """Delete a finished run's checkpoint folder."""
    shutil.rmtree(path.parent, ignore_errors=True)


MANIFEST_FILE = "manifest.pt"


class RankCheckpoints:
    """One distributed cell's per-rank checkpoint shards and their manifest (see the module docstring)."""

    def __init__(self, results_dir: Path, cell_id: str) -> None:
        self.folder = Path(results_dir) / CHECKPOINTS_DIR / cell_id
        self.manifest_path = self.folder / MANIFEST_FILE

    @staticmethod
    def shard_name(rank: int, epoch: int) -> str:
        return f"rank{rank}-epoch{epoch}.pt"

    def save_shard(self, rank: int, epoch: int, state: dict, schedulers: list) -> None:
        """This rank's shard after `epoch` epochs: its own training state, its schedulers and RNGs."""
        blob = {"state": state, "schedulers": [s.state_dict() for s in schedulers], "rng": _rng_state()}
        self.folder.mkdir(parents=True, exist_ok=True)
        _save(blob, self.folder / self.shard_name(rank, epoch))

    def save_manifest(self, epoch: int, world: int, balance: list[int], run: RunState) -> None:
        """Rank 0, after every rank's shard of `epoch` is written: the manifest, then older shards go."""
        shards = [self.shard_name(r, epoch) for r in range(world)]
        blob = {"epoch": epoch, "world": world, "balance": list(balance), "shards": shards, "run": vars(run).copy()}
        _save(blob, self.manifest_path)
        for old in self.folder.glob("rank*-epoch*.pt"):
            if old.name not in shards:
                old.unlink(missing_ok=True)

    def load(self, rank: int, world: int, balance: list[int], state_target, schedulers: list) -> Optional[RunState]:
        """Restore this rank from the manifest's shard (`state_target.load_state_dict`); None without one."""
        if not self.manifest_path.exists():
            return None
        manifest: dict[str, Any] = torch.load(self.manifest_path, weights_only=False)
        if manifest["world"] != world or list(manifest["balance"]) != list(balance):
            raise RuntimeError(
                f"checkpoint {self.manifest_path} was written by {manifest['world']} ranks with balance "
                f"{manifest['balance']}; this run has {world} ranks with balance {list(balance)}. Resume with the "
                "same devices and balance, or delete the folder to train this cell from the start")
        blob = torch.load(self.folder / manifest["shards"][rank], weights_only=False, map_location="cpu")
        state_target.load_state_dict(blob["state"])
        for scheduler, saved in zip(schedulers, blob["schedulers"]):
            scheduler.load_state_dict(saved)
        _set_rng_state(blob["rng"])
        return RunState(**manifest["run"])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
