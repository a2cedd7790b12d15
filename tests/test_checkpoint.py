"""Resumable training runs: a cell killed with SIGKILL mid-run resumes and ends bit for bit as an uninterrupted run."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

from bench.cell.checkpoint import checkpoint_path
from bench.cell.phases import run_cell
from bench.grid.cells import Cell
from bench.grid.settings import CellSettings
from bench.run.cell_process import cell_timeout_s
from bench.store.curves import read_curves
from tests.conftest import ROOT

SETTINGS = dict(epochs=4, max_train_items=40, max_test_items=16, eval_batch_size=16, val_fraction=0.2,
                balance="even", threads_per_device=1, count_train_memory=False, augment="basic", views=2,
                lr_schedule="cosine", lr_min=1e-5, eval_every=2, keep_checkpoints=True, projector="i")


def _cell() -> Cell:
    return Cell(grid="t", method="scpl", model="convnet", dataset="cifar10@synthetic", batch_size=8, devices=1,
                trial=0, settings=CellSettings(**SETTINGS))


# The cell as the runner starts it, except that its first checkpoint, once saved, is announced in the file
# named by CHECKPOINT_SAVED and the cell then waits: a SIGKILL lands between two checkpoints by construction.
PAUSE_AFTER_FIRST_CHECKPOINT = """
import os, runpy, time
from pathlib import Path
import bench.cell.checkpoint as checkpoint

save = checkpoint.save_checkpoint

def save_then_wait(path, method, schedulers, run):
    saved = save(path, method, schedulers, run)
    Path(os.environ["CHECKPOINT_SAVED"]).write_text(str(run.epoch))
    time.sleep(600)
    return saved

checkpoint.save_checkpoint = save_then_wait  # before the training run imports it
runpy.run_module("bench.cell", run_name="__main__", alter_sys=True)
"""


def _start(cell: Cell, work: Path, results: Path, saved: Optional[Path] = None) -> tuple[subprocess.Popen, Path]:
    """The cell in its own process; with `saved`, it stops after its first checkpoint and announces it there."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "cell.json").write_text(cell.to_json())
    row = work / "row.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    entry = ["-m", "bench.cell"] if saved is None else ["-c", PAUSE_AFTER_FIRST_CHECKPOINT]
    if saved is not None:
        env["CHECKPOINT_SAVED"] = str(saved)
    proc = subprocess.Popen([sys.executable, *entry, str(work / "cell.json"), str(row), "", str(results)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, row


def _finish(cell: Cell, work: Path, results: Path) -> dict:
    proc, row = _start(cell, work, results)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and row.exists(), err.decode()[-2000:]
    return json.loads(row.read_text())


def _saved(results: Path, cell: Cell) -> dict:
    return torch.load(checkpoint_path(results, cell.cell_id), weights_only=False)


def _equal(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    cell = _cell()
    # the uninterrupted run in this process (one interpreter fewer); the killed and resumed ones as the runner runs them
    whole = json.loads(json.dumps(run_cell(cell, None, tmp_path / "uninterrupted").to_dict()))

    killed, saved = tmp_path / "killed", tmp_path / "checkpoint-saved"
    proc, row = _start(cell, tmp_path / "w2", killed, saved=saved)
    ckpt = checkpoint_path(killed, cell.cell_id)
    deadline = time.monotonic() + 240
    while not saved.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the cell waits after its first checkpoint: nothing races here
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not row.exists(), "the cell finished before it could be killed"
    first = torch.load(ckpt, weights_only=False)["run"]["epoch"]
    assert 1 <= first < cell.settings.epochs

    resumed = _finish(cell, tmp_path / "w3", killed)
    assert resumed["resumed_from_epoch"] == first >= 1 and whole["resumed_from_epoch"] is None
    for column in ("final_train_loss", "test_acc", "val_acc", "test_acc_curve", "val_acc_curve", "eval_steps",
                   "test_acc_val_selected", "exit_acc"):
        assert resumed[column] == whole[column], column
    a, b = _saved(tmp_path / "uninterrupted", cell), _saved(killed, cell)
    assert _equal(a["method"], b["method"])  # parameters, buffers, optimizer and scheduler states
    assert a["run"]["epoch"] == b["run"]["epoch"] == cell.settings.epochs
    timing = {"wall_s", "epoch_time_s", "data_wait_s", "samples_per_s"}
    strip = lambda curve: [{k: v for k, v in r.items() if k not in timing} for r in curve]
    assert strip(a["run"]["curve"]) == strip(b["run"]["curve"])
    assert len(read_curves(killed)) == cell.settings.epochs  # the resumed attempt's fragment holds every epoch


def test_finished_runs_remove_their_checkpoint_and_timeouts_are_per_epoch(tmp_path):
    cell = Cell(grid="t", method="bp", model="convnet", dataset="cifar10@synthetic", batch_size=8, devices=1,
                trial=0, settings=CellSettings(**{**SETTINGS, "keep_checkpoints": False, "epochs": 1,
                                                  "timeout_s": 60.0}))
    assert run_cell(cell, None, tmp_path / "r").status == "ok"
    assert not checkpoint_path(tmp_path / "r", cell.cell_id).parent.exists()
    assert cell_timeout_s(cell) == 120.0
    assert cell_timeout_s(dataclasses.replace(cell, settings=cell.settings.replace(epochs=None))) == 60.0


@pytest.mark.slow
def test_rank_method_training_run_checkpoints_its_optimizer_and_resumes(tmp_path):
    """DDP trains in its rank, which writes its own shard (Adam state too) and a manifest; a rerun resumes."""
    import torch

    from bench.cell.checkpoint import RankCheckpoints

    settings = {**SETTINGS, "epochs": 1, "views": 1, "augment": "none", "lr_schedule": "constant"}
    cell = Cell(grid="t", method="ddp", model="convnet", dataset="cifar10@synthetic", batch_size=8, devices=1,
                trial=0, settings=CellSettings(**settings))
    row = run_cell(cell, None, tmp_path / "r")
    assert row.status == "ok", row.error
    store = RankCheckpoints(tmp_path / "r", cell.cell_id)
    manifest = torch.load(store.manifest_path, weights_only=False)
    assert manifest["epoch"] == 1 and manifest["world"] == 1 and manifest["shards"] == ["rank0-epoch1.pt"]
    shard = torch.load(store.folder / manifest["shards"][0], weights_only=False)
    steps = {int(s["step"]) for s in shard["state"]["optimizer"]["state"].values()}
    assert steps == {row.steps_per_epoch}  # one Adam step per batch of the epoch
    assert all(torch.isfinite(t).all() for t in shard["state"]["module"].values())
    again = run_cell(cell, None, tmp_path / "r")
    assert again.status == "ok" and again.resumed_from_epoch == 1 and again.test_acc == row.test_acc


def test_an_epoch_past_timeout_s_ends_the_run_as_a_timeout(tmp_path):
    """timeout_s limits each epoch of a training run (a watchdog in the cell), not the whole run."""
    from bench.cell.watchdog import EpochTimeout

    cell = Cell(grid="t", method="bp", model="convnet", dataset="cifar10@synthetic", batch_size=8, devices=1,
                trial=0, settings=CellSettings(**{**SETTINGS, "epochs": 50, "timeout_s": 0.05}))
    with pytest.raises(EpochTimeout, match="exceeded the per-epoch timeout"):
        run_cell(cell, None, tmp_path / "r")
