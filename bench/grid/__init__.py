"""The grid: YAML axes and settings, expanded into cells and checked before anything runs.

Cheap to import (no torch): `--dry-run` and every check of a grid go through here.
"""
from .cells import AXES, GRIDS_DIR, Cell, CellSettings, Grid, GridError, load_grid, resolve_grid_path

__all__ = ["AXES", "GRIDS_DIR", "Cell", "CellSettings", "Grid", "GridError", "load_grid", "resolve_grid_path"]
