"""`--only`: which cells of a grid to run.

`KEY=VALUE` keeps cells whose axis KEY equals VALUE; several values of one key
are alternatives (`--only devices=1 --only devices=2` keeps both), different
keys must all hold.  A bare word keeps cells whose id starts with it.
"""
from __future__ import annotations

from typing import Iterable

from .cells import AXES, Cell, GridError

__all__ = ["select_cells"]


def select_cells(cells: Iterable[Cell], only: Iterable[str]) -> list[Cell]:
    """The cells matching every key of `only` (any of its values), and every id prefix given."""
    wanted: dict[str, set[str]] = {}
    prefixes: list[str] = []
    for rule in only:
        if "=" in rule:
            key, value = rule.split("=", 1)
            if key not in AXES:
                raise GridError(f"--only {rule}: unknown key {key!r}; filter on one of {', '.join(AXES)}")
            wanted.setdefault(key, set()).add(value)
        else:
            prefixes.append(rule)
    return [c for c in cells
            if all(str(getattr(c, key)) in values for key, values in wanted.items())
            and all(c.cell_id.startswith(p) for p in prefixes)]
