"""Distributed cells as one job: the ranks start once per cell, keep BP's (or the sequential run's) numbers,
and a rank killed mid-epoch ends the cell with no process left, after which the rerun resumes bit for bit.

Tiny training runs (2-3 epochs of a few dozen CIFAR-10-twin items, gloo on CPU); each cell runs in
this process (its ranks are forked by run_ranks' fork server), as under the runner's cell process.
"""
import threading
import time

import psutil
import pytest
import torch

import bench.cell.rank_phases as rank_phases
from bench.cell.checkpoint import RankCheckpoints
from bench.cell.phases import run_cell
from bench.grid.cells import Cell
from bench.grid.settings import CellSettings
from bench.store.curves import read_curves

pytestmark = pytest.mark.slow

TINY = dict(epochs=2, max_train_items=30, max_test_items=16, eval_batch_size=16, val_fraction=0.2, balance="even",
            threads_per_device=1, count_train_memory=False, augment="none", views=1, projector="i",
            device_kind="cpu", executor="processes", timeout_s=120,
            method_options={"gpipe_dist": {"chunks": 2}})


def _cell(method: str, devices: int, **changes) -> Cell:
    return Cell(grid="t", method=method, model="convnet", dataset="cifar10@synthetic", batch_size=8,
                devices=devices, trial=0, settings=CellSettings(**{**TINY, **changes}))


def _curve(results, cell: Cell):
    return read_curves(results).set_index("cell_id").loc[[cell.cell_id]].sort_values("epoch")


def test_distributed_cells_are_one_job_each_with_bps_and_the_sequential_numbers(tmp_path, monkeypatch):
    starts = []
    run_ranks = rank_phases.run_ranks
    monkeypatch.setattr(rank_phases, "run_ranks", lambda *a, **k: starts.append(a[0]) or run_ranks(*a, **k))
    rows = {}
    for method, devices in (("bp", 1), ("ddp", 2), ("gpipe_dist", 2), ("scpl", 1), ("scpl", 2)):
        # DDP's ranks read through a loader worker: forked, not started by the fork server the ranks came from
        cell = _cell(method, devices, data_workers=1 if method == "ddp" else 0)
        row = run_cell(cell, None, tmp_path / "r")
        assert row.status == "ok", row.error
        assert row.cpu_denormals_flushed is True  # one process or rank 0's: the float mode it trained in
        rows[method, devices] = (cell, row)
    assert len(starts) == 3  # DDP, gpipe_dist, SCPL on processes: one rank job each, for both epochs
    assert [rows[k][1].executor for k in rows] == ["sequential", "ranks", "ranks", "sequential", "processes"]

    bp_cell, bp = rows["bp", 1]
    for key in (("ddp", 2), ("gpipe_dist", 2)):  # BP's gradient on 2 ranks: BP's numbers, to float rounding
        cell, row = rows[key]
        assert row.epochs == 2 and len(row.epoch_times_s) == 2 and row.steps_per_epoch == bp.steps_per_epoch
        assert row.final_train_loss == pytest.approx(bp.final_train_loss, abs=1e-5)
        assert row.test_acc == bp.test_acc and row.val_acc == bp.val_acc
        assert list(_curve(tmp_path / "r", cell)["train_loss"]) == pytest.approx(
            list(_curve(tmp_path / "r", bp_cell)["train_loss"]), abs=1e-5)
        assert len(row.peak_mem_per_device) == 2 and row.peak_mem_kind == "cpu_peak_rss"
    (one_cell, one), (two_cell, two) = rows["scpl", 1], rows["scpl", 2]
    assert two.final_train_loss == one.final_train_loss and two.test_acc == one.test_acc  # bit for bit
    assert one.param_checksum and two.param_checksum == one.param_checksum  # the trained stages too
    a, b = _curve(tmp_path / "r", one_cell), _curve(tmp_path / "r", two_cell)
    assert list(a["train_loss"]) == list(b["train_loss"])
    assert [list(s) for s in a["stage_losses"]] == [list(s) for s in b["stage_losses"]]


def _rank_processes() -> list[psutil.Process]:
    """The ranks: what the fork server (a child of this process, bench/execution/ranks.py) has forked."""
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    return sorted((rank for server in servers for rank in server.children()), key=lambda p: p.pid)


def _final_shards(results, cell: Cell) -> list[dict]:
    store = RankCheckpoints(results, cell.cell_id)
    manifest = torch.load(store.manifest_path, weights_only=False)
    return [torch.load(store.folder / name, weights_only=False)["state"] for name in manifest["shards"]]


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_a_rank_killed_mid_epoch_ends_the_cell_and_the_rerun_resumes_bit_for_bit(tmp_path):
    cell = _cell("scpl", 2, epochs=3, max_train_items=120, checkpoint_every=1, keep_checkpoints=True)
    whole = run_cell(cell, None, tmp_path / "whole")
    assert whole.status == "ok", whole.error

    results = tmp_path / "killed"
    manifest = RankCheckpoints(results, cell.cell_id).manifest_path
    outcome: list = []
    started = time.monotonic()

    def run() -> None:
        try:
            outcome.append(run_cell(cell, None, results))
        except Exception as exc:  # noqa: BLE001 - what the cell process turns into a failed row
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    while not manifest.exists():  # epoch 1 is checkpointed: epoch 2 is training now
        assert runner.is_alive() and time.monotonic() < started + 300, f"no checkpoint: {outcome}"
        time.sleep(0.02)
    victims = _rank_processes()
    assert len(victims) == 2
    victims[1].kill()  # SIGKILL one rank
    runner.join(timeout=cell.settings.timeout_s * 4)
    assert not runner.is_alive()
    assert isinstance(outcome[0], RuntimeError) and "exited with code -9" in str(outcome[0])
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in victims)
    assert _rank_processes() == []

    resumed = run_cell(cell, None, results)
    assert resumed.status == "ok" and resumed.resumed_from_epoch in (1, 2)
    assert resumed.final_train_loss == whole.final_train_loss and resumed.test_acc == whole.test_acc
    assert whole.param_checksum and resumed.param_checksum == whole.param_checksum
    assert list(_curve(results, cell)["train_loss"]) == list(_curve(tmp_path / "whole", cell)["train_loss"])
    assert _equal(_final_shards(results, cell), _final_shards(tmp_path / "whole", cell))
