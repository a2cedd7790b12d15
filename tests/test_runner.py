"""The runner: cells land in parquet, failures become rows, a killed run resumes losing nothing."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from bench.grid import load_grid
from bench.store.parquet import read_results
from bench.run.runner import run_grid
from bench.store.row import ARROW_SCHEMA
from tests.conftest import ROOT


def test_smoke_grid_produces_complete_rows(tmp_path):
    grid = load_grid("smoke")
    summary = run_grid(grid, tmp_path, progress=False)
    assert summary.ran == len(grid.cells) and summary.statuses == {"ok": len(grid.cells)}
    frame = read_results(tmp_path)
    assert list(frame.columns) == ARROW_SCHEMA.names
    assert len(frame) == len(grid.cells)
    for row in frame.itertuples():
        assert row.data_kind == "synthetic" and row.epoch_time_kind == "extrapolated"
        assert row.step_time_p10_s <= row.step_time_median_s <= row.step_time_p90_s
        assert row.timed_steps == len(row.step_times_s) == 2
        assert row.throughput_samples_s > 0 and 0.0 <= row.test_acc <= 1.0
        assert row.peak_mem_bytes > 0 and row.torch_version.startswith("2.14")
        assert row.threads_per_device * row.devices == row.threads_total
        assert sum(row.balance) == 4 and len(row.balance) == row.devices
    scpl2 = frame[(frame.method == "scpl") & (frame.devices == 2)].iloc[0]
    assert len(scpl2.stage_busy_s) == 4 and len(scpl2.device_busy_s) == 2
    assert scpl2.params_affiliated > 0
    bp = frame[frame.method == "bp"].iloc[0]
    assert bp.params_affiliated == 0 and bp.params_effective == 6_318_430
    # The report is written next to the parquet.
    assert (tmp_path / "speedup_convnet_cifar10-synthetic.md").exists()


def test_failing_cells_become_rows_and_others_still_run(tmp_path):
    grid = load_grid("smoke")
    ok = [c for c in grid.cells if c.method == "bp" and c.devices == 1][0]
    nan = dataclasses.replace(ok, settings=dataclasses.replace(ok.settings, lr=1e20, steps=4))
    slow = dataclasses.replace(ok, settings=dataclasses.replace(ok.settings, timeout_s=0.5, seed=7))
    summary = run_grid(grid, tmp_path, cells=[nan, slow, ok], progress=False)
    frame = read_results(tmp_path).set_index("cell_id")
    assert summary.ran == 3
    assert frame.loc[nan.cell_id, "status"] == "nan" and "loss is" in frame.loc[nan.cell_id, "error"]
    assert frame.loc[slow.cell_id, "status"] == "timeout"
    assert frame.loc[ok.cell_id, "status"] == "ok"
    # A timed-out cell is retried on rerun; finished ones are not.
    again = run_grid(grid, tmp_path, cells=[nan, ok], progress=False)
    assert again.ran == 0 and again.skipped == 2


def test_killed_runner_resumes_without_losing_finished_cells(tmp_path):
    results = tmp_path / "res"
    cmd = [sys.executable, "run_matrix.py", "--grid", "smoke", "--results", str(results), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_results(results)) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-grid, cell subprocess included
    proc.wait()
    finished = set(read_results(results)["cell_id"])
    assert 1 <= len(finished) < 4
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(finished)} already done" in rerun.stdout
    frame = read_results(results)
    assert sorted(frame["cell_id"]) == sorted({c.cell_id for c in load_grid("smoke").cells})
    assert set(frame["status"]) == {"ok"}
