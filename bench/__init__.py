"""The harness: grids, the runner, execution, measurement, results and reports."""
