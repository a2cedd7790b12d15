"""The grid: YAML axes and settings, expanded into cells and checked before anything runs.

Importing it is cheap (no torch); `load_grid` imports torch for its last check, whether
each cell can run (bench/grid/feasibility.py builds the models on the meta device).
"""
from .cells import AXES, GRIDS_DIR, Cell, CellSettings, Grid, GridError, load_grid, resolve_grid_path

__all__ = ["AXES", "GRIDS_DIR", "Cell", "CellSettings", "Grid", "GridError", "load_grid", "resolve_grid_path"]
