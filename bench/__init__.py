"""The harness: grids, the runner, execution, measurement, results and reports.

Subpackages, one concept each (data flows run_matrix -> bench -> methods/models/data):
    grid/        the grid YAML, its settings schema, expansion into cells, up-front checks
    run/         running a grid: a child process per cell, timeouts, retries, launchers
    cell/        one cell inside its process: phases (data, build, place, train or sample, evaluate,
                 profile) and its result row
    execution/   where and when stages run: devices, placement, the executors
    store/       the row schema and the parquet files rows land in
    profiling/   profiled runs under torch.profiler and reading their traces
    report/      tables and figures from a results folder (`python -m bench.report`)
    benchmark/   `make bench`: the speed targets as measured ratios
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout: where `results/`, `plots/` and the shipped grids live."""
