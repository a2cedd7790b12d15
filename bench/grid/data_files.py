"""Before a grid runs: every real dataset (and GloVe) it names must be on disk.

Why up front: a missing CIFAR folder found by cell 40 of 60 wastes the hour
before it; checking first turns it into one line (path + where to get it),
exit code 2, and nothing measured is touched.  Synthetic twins need no files.
"""
from __future__ import annotations

from typing import Iterable, Optional

from bench.grid import Cell, GridError

__all__ = ["check_data_files"]


def check_data_files(cells: Iterable[Cell], data_root: Optional[str]) -> None:
    """Raise GridError naming the first missing file of a real dataset or GloVe."""
    from data import DatasetFileError, get_spec, glove_path
    from data import data_root as resolve_root
    from data.glove import require_glove
    from data.sources import require_files, source_for

    root = resolve_root(data_root)
    checked: set = set()
    for cell in cells:
        spec = get_spec(cell.dataset)
        wanted = []
        if spec.kind == "real":
            wanted.append(spec.base)
        if cell.settings.glove:
            wanted.append("glove")
        for name in wanted:
            if name in checked:
                continue
            checked.add(name)
            try:
                if name == "glove":
                    require_glove(glove_path(data_root))
                else:
                    require_files(source_for(name), root)
            except DatasetFileError as exc:
                raise GridError(f"cell {cell.label}: {exc}") from None
