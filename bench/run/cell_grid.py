"""One cell as a grid file of its own, for an entry that finds a cell by grid and id (`bench.run.rank_cell`).

Why a file per cell and not the user's grid: the cell a runner launches may come from a
shipped grid changed by `--set` overrides, or from a grid file edited after a job was
submitted; its id hashes its settings, so only a file that says exactly those settings
finds it again. Written next to the job (on the file system the nodes share), read by
every rank; loading it gives back the same cell (the same `cell_id`).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from bench.grid import Cell

__all__ = ["cell_grid_text", "write_cell_grid"]


def cell_grid_text(cell: Cell) -> str:
    """The YAML of a grid whose only cell is `cell`: one value per axis, the cell's settings in full."""
    raw = {
        "name": cell.grid,
        "description": f"cell {cell.cell_id} ({cell.label}), written by the runner for its distributed job",
        "axes": {"method": [cell.method], "model": [cell.model], "dataset": [cell.dataset],
                 "batch_size": [cell.batch_size], "devices": [cell.devices], "trial": [cell.trial]},
        "settings": cell.settings.as_dict(),  # threads_per_device filled: the file says what the cell ran with
    }
    return yaml.safe_dump(raw, sort_keys=False)


def write_cell_grid(cell: Cell, folder: Path) -> Path:
    """`folder/<cell_id>.yaml`, written whole (a temporary name renamed into place), so a rank never reads half."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cell.cell_id}.yaml"
    tmp = folder / f".{cell.cell_id}.{os.getpid()}.yaml.tmp"
    tmp.write_text(cell_grid_text(cell))
    tmp.replace(path)
    return path
