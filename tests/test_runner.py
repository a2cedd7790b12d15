"""The runner: cells land in parquet, failures become rows, a killed run resumes losing nothing."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import run_matrix
from bench.grid import load_grid
from bench.run.runner import run_grid
from bench.store.read import read_results
from bench.store.row import ARROW_SCHEMA
from tests.conftest import ROOT, run_main


@pytest.mark.slow
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


@pytest.mark.slow
def test_failing_cells_become_rows_and_others_still_run(tmp_path):
    grid = load_grid("smoke")
    ok = [c for c in grid.cells if c.method == "bp" and c.devices == 1][0]
    nan = dataclasses.replace(ok, settings=ok.settings.replace(lr=1e20, steps=4))
    slow = dataclasses.replace(ok, settings=ok.settings.replace(timeout_s=0.5, seed=7))
    summary = run_grid(grid, tmp_path, cells=[nan, slow, ok], progress=False)
    frame = read_results(tmp_path).set_index("cell_id")
    assert summary.ran == 3
    assert frame.loc[nan.cell_id, "status"] == "nan" and "loss is" in frame.loc[nan.cell_id, "error"]
    assert frame.loc[slow.cell_id, "status"] == "timeout"
    assert frame.loc[ok.cell_id, "status"] == "ok"
    # A timed-out cell is retried on rerun; finished ones are not.
    again = run_grid(grid, tmp_path, cells=[nan, ok], progress=False)
    assert again.ran == 0 and again.skipped == 2


# The cell module of a run that is killed mid-grid: the first cell runs for real, the next one says so in
# SECOND_CELL_STARTED and waits, so the runner is killed with exactly one cell stored, by construction.
# The rerun's cells are stand-ins that write ok rows (FAKE_CELL below): what is tested is which cells the
# rerun runs and what the store holds after it; real cells through the runner are the smoke test's.
FIRST_CELL_THEN_WAIT = """
import json, os, runpy, time
from pathlib import Path

started = Path(os.environ["SECOND_CELL_STARTED"])
first = started.with_name("first-cell-started")
if not first.exists():
    first.write_text("")
    runpy.run_module("bench.cell", run_name="__main__", alter_sys=True)
else:
    started.write_text(json.dumps({"cell": os.getpid()}))
    time.sleep(600)
"""


@pytest.mark.slow
def test_killed_runner_resumes_without_losing_finished_cells(tmp_path, monkeypatch, capsys):
    results = tmp_path / "res"
    cmd = [sys.executable, "run_matrix.py", "--grid", "smoke", "--results", str(results), "--no-progress"]
    env = _cell_module_env(tmp_path, "firstcell", FIRST_CELL_THEN_WAIT)
    env["SECOND_CELL_STARTED"] = str(tmp_path / "second-cell-started")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_for(tmp_path / "second-cell-started", within_s=240)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-grid: the second cell's supervisor ends it (parent-death signal)
    proc.wait()
    finished = set(read_results(results)["cell_id"])
    assert 1 <= len(finished) < 4
    _set_env(monkeypatch, _fake_cell_env(tmp_path, "ok"))
    rerun = run_main(run_matrix.main, cmd[2:], capsys)  # the rerun's own process is not the subject here
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(finished)} already done" in rerun.stdout
    frame = read_results(results)
    assert sorted(frame["cell_id"]) == sorted({c.cell_id for c in load_grid("smoke").cells})
    assert set(frame["status"]) == {"ok"}


# --- Faults of issue 11: every process a cell starts ends with it; exit status; retries; no leftovers.
# A fake cell (SCPLBENCH_CELL_MODULE) stands in for bench.cell: it starts a grandchild, records
# the pids, and then sleeps, fails or writes an ok row, as FAKE_CELL_MODE says.

FAKE_CELL = '''
import json, os, subprocess, sys, time
from pathlib import Path

mode = os.environ["FAKE_CELL_MODE"]
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
Path(os.environ["FAKE_CELL_PIDS"]).write_text(json.dumps(
    {"entry": os.getppid(), "cell": os.getpid(), "grandchild": grandchild.pid}))
if mode == "sleep":
    time.sleep(120)
elif mode == "fail":
    print("fake cell failed on purpose", file=sys.stderr)
    sys.exit(3)
else:
    from bench.grid import Cell  # only here: the modes above are ready the moment they start
    from bench.store.row import ResultRow

    cell = Cell.from_json(Path(sys.argv[1]).read_text())
    row = ResultRow(cell_id=cell.cell_id, grid=cell.grid, method=cell.method, model=cell.model,
                    dataset=cell.dataset, data_kind="synthetic", batch_size=cell.batch_size,
                    devices=cell.devices, trial=cell.trial, seed=cell.seed, status="ok")
    Path(sys.argv[2]).write_text(json.dumps(row.to_dict()))
'''


def _cell_module_env(tmp_path, name, source):
    """An environment in which the runner starts `source` (written to tmp_path/<name>.py) as each cell."""
    (tmp_path / f"{name}.py").write_text(source)
    env = dict(os.environ, SCPLBENCH_CELL_MODULE=name)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), env.get("PYTHONPATH")]))
    return env


def _fake_cell_env(tmp_path, mode):
    return dict(_cell_module_env(tmp_path, "fakecell", FAKE_CELL), FAKE_CELL_MODE=mode,
                FAKE_CELL_PIDS=str(tmp_path / "pids.json"))


def _set_env(monkeypatch, env):
    """`env` for the runner in this process and the cell processes it starts (they inherit it)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _gone(pid, within_s=10.0):
    """True once `pid` no longer runs (a zombie counts as gone: it runs nothing)."""
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def _wait_for(path, within_s=60.0):
    deadline = time.time() + within_s
    while time.time() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"
    return json.loads(path.read_text())


def _one_cell(timeout_s):
    cell = load_grid("smoke").cells[0]
    replace = getattr(cell.settings, "replace", None) or (lambda **kw: dataclasses.replace(cell.settings, **kw))
    return dataclasses.replace(cell, settings=replace(timeout_s=timeout_s))


class _CellClock:
    """An injected clock for the runner's limit on a cell (`Popen.wait(timeout=...)` on bench.run.cell_entry).

    `run_out=True`: the limit is reached the moment the fake cell is ready (its pids
    written, its grandchild started), whatever the limit says; `run_out=False`: the
    clock stands still and the cell takes what it takes.  So a timeout neither races
    the machine's process start-up nor costs the limit's seconds, and a cell that
    must finish is never cut short by a slow machine.
    """

    def __init__(self, monkeypatch, ready, run_out=True):
        self.ready, self.run_out = ready, run_out
        real_wait = subprocess.Popen.wait

        def wait(proc, timeout=None):
            if timeout is None or "bench.run.cell_entry" not in proc.args:
                return real_wait(proc, timeout)
            if not self.run_out:
                return real_wait(proc)
            _wait_for(self.ready)
            raise subprocess.TimeoutExpired(proc.args, timeout)

        monkeypatch.setattr(subprocess.Popen, "wait", wait)


@pytest.mark.slow
def test_timeout_ends_the_cells_whole_process_group(tmp_path, monkeypatch):
    _set_env(monkeypatch, _fake_cell_env(tmp_path, "sleep"))
    _CellClock(monkeypatch, ready=tmp_path / "pids.json")
    cell = _one_cell(2.0)
    summary = run_grid(load_grid("smoke"), tmp_path / "res", cells=[cell], progress=False)
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert summary.statuses == {"timeout": 1} and summary.exit_code == 1
    assert all(_gone(pid) for pid in pids.values()), pids  # the grandchild (a rank, say) too
    assert not (tmp_path / "res" / ".tmp").exists()


RUNNER_SCRIPT = '''
import sys
from pathlib import Path
from bench.grid import load_grid
from bench.run.runner import run_grid
grid = load_grid("smoke")
cell = [c for c in grid.cells if c.cell_id.startswith(sys.argv[2])][0]
run_grid(grid, Path(sys.argv[1]), cells=[cell], progress=False)
'''


@pytest.mark.slow
def test_runner_killed_by_sigkill_leaves_no_process_and_no_scratch(tmp_path):
    results = tmp_path / "res"
    cell = _one_cell(600.0)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER_SCRIPT, str(results), cell.cell_id], cwd=ROOT,
                              env=_fake_cell_env(tmp_path, "sleep"))
    pids = _wait_for(tmp_path / "pids.json")
    assert (results / ".tmp").exists()
    runner.kill()  # SIGKILL: no handler runs; the parent-death signal must do the work
    runner.wait()
    assert all(_gone(pid) for pid in pids.values()), pids
    assert not (results / ".tmp").exists()
    assert not list(results.rglob("*.tmp*"))


@pytest.mark.slow
def test_runner_stopped_by_sigterm_exits_with_its_signal_and_cleans_up(tmp_path):
    results = tmp_path / "res"
    cell = _one_cell(600.0)
    cmd = [sys.executable, "run_matrix.py", "--grid", "smoke", "--results", str(results), "--only", cell.cell_id,
           "--no-progress"]
    runner = subprocess.Popen(cmd, cwd=ROOT, env=_fake_cell_env(tmp_path, "sleep"), stderr=subprocess.PIPE, text=True)
    pids = _wait_for(tmp_path / "pids.json")
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert all(_gone(pid) for pid in pids.values()), pids
    assert not (results / ".tmp").exists() and not list(results.rglob("*.tmp*"))


@pytest.mark.slow
def test_exit_status_and_failure_summary(tmp_path, monkeypatch, capsys):
    """run_matrix's exit status and summary, from its main() in this process; the cells are processes (fakes)."""
    results = tmp_path / "res"
    cell = _one_cell(60.0)
    argv = ["--grid", "smoke", "--results", str(results), "--only", cell.cell_id, "--no-progress"]
    _set_env(monkeypatch, _fake_cell_env(tmp_path, "fail"))
    failing = run_main(run_matrix.main, argv, capsys)
    assert failing.returncode == 1, failing.stderr
    assert "1 of 1 cells did not finish ok" in failing.stdout
    assert f"{cell.cell_id[:10]}" in failing.stdout and "failed: cell process exited with 3" in failing.stdout
    # a failed cell is not retried by default (only timeouts and killed cells are): still exit 1
    monkeypatch.setenv("FAKE_CELL_MODE", "ok")
    again = run_main(run_matrix.main, argv, capsys)
    assert again.returncode == 1 and "skipped 1 already done" in again.stdout
    fixed = run_main(run_matrix.main, argv + ["--retry", "failed"], capsys)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    bad = run_main(run_matrix.main, argv + ["--results", str(ROOT / "run_matrix.py")], capsys)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is a file" in bad.stderr


@pytest.mark.slow
def test_retried_timeout_is_a_new_attempt_and_reports_use_the_latest(tmp_path, monkeypatch):
    from bench.store.read import read_history

    _set_env(monkeypatch, _fake_cell_env(tmp_path, "sleep"))
    clock = _CellClock(monkeypatch, ready=tmp_path / "pids.json")
    grid, cell = load_grid("smoke"), _one_cell(6.0)
    assert run_grid(grid, tmp_path, cells=[cell], progress=False).statuses == {"timeout": 1}
    monkeypatch.setenv("FAKE_CELL_MODE", "ok")
    clock.run_out = False
    summary = run_grid(grid, tmp_path, cells=[cell], progress=False)  # default --retry timeout
    assert summary.ran == 1 and summary.exit_code == 0
    history = read_history(tmp_path)
    assert list(history["attempt"]) == [1, 2] and list(history["status"]) == ["timeout", "ok"]
    latest = read_results(tmp_path)
    assert len(latest) == 1 and latest.iloc[0]["status"] == "ok"
    assert "did not finish" not in summary.report  # the report lists only the latest attempt
    assert run_grid(grid, tmp_path, cells=[cell], progress=False).ran == 0
