"""TensorBoard round trip: the profiler plugin lists every profiled cell of a results folder."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.cell.phases import run_cell
from bench.grid import Cell, CellSettings

STARTUP_TIMEOUT_S = 60.0
POLL_S = 0.05


def _served_at(proc: subprocess.Popen, log: Path) -> str:
    """Where TensorBoard serves, from its own announcement (written once its socket listens)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        served = re.search(r"TensorBoard \S+ at (http://[^/\s]+)/", log.read_text())
        if served:
            return served.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"tensorboard exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(POLL_S)
    raise AssertionError(f"tensorboard never said where it serves: {log.read_text()[-2000:]}")


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode())


@pytest.mark.slow
def test_profiler_plugin_lists_every_profiled_cell(tmp_path):
    settings = CellSettings(warmup_steps=1, steps=1, eval_batches=1, eval_batch_size=32, balance="even",
                            profile={"wait": 0, "warmup": 1, "active": 1})
    expected = set()
    for method, devices in (("bp", 1), ("scpl", 2)):
        row = run_cell(Cell("tb", method, "convnet", "cifar10@synthetic", 8, devices, 0, settings),
                       results_dir=tmp_path)
        assert row.status == "ok", row.error
        expected.add(row.trace_dir.split("/", 1)[1])  # the run name is the cell's folder under traces/

    log_path = tmp_path / "tensorboard.log"
    log = open(log_path, "w")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(  # port 0: the system picks a free one (no race with other tests for a port)
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "traces"),
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,  # its plugin starts children of its own
    )
    runs, last_error = None, None
    try:
        url = _served_at(proc, log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"tensorboard exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                runs = _get_json(f"{url}/data/plugin/pytorch_profiler/runs")
                if expected <= set(runs["runs"]) and not runs["loading"]:
                    break  # the plugin loads runs in a background thread: ask until all are in
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError) as exc:
                last_error = exc
            time.sleep(POLL_S)
        plugins = _get_json(f"{url}/data/plugins_listing")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # TensorBoard and the loader processes it started, nothing else
        proc.wait(timeout=10)
        log.close()
    assert "pytorch_profiler" in plugins
    assert runs is not None, f"the plugin never answered: {last_error}"
    assert expected <= set(runs["runs"]), f"runs listed {runs['runs']}, expected {sorted(expected)}"
