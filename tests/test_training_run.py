"""Training runs (`epochs` set): whole epochs through the executor, curves, data as read, the grid end to end."""
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cell.phases import build_method, place, prepare_data, run_cell
from bench.cell.training_run import run_epochs
from bench.execution.devices import resolve_devices
from bench.grid import load_grid
from bench.grid.cells import Cell
from bench.grid.settings import CellSettings
from bench.run.runner import run_grid
from bench.store.curves import CURVE_SCHEMA, CurveRow, append_curve, compact_curves, read_curves
from bench.store.read import read_results

TINY = dict(epochs=2, max_train_items=40, max_test_items=16, eval_batch_size=16, val_fraction=0.2,
            balance="even", threads_per_device=1, count_train_memory=False, augment="basic",
            method_options={"scpl": {}, "bp": {}}, projector="i")


def _cell(method: str, devices: int, grid: str = "t", dataset: str = "cifar10@synthetic", **changes) -> Cell:
    return Cell(grid=grid, method=method, model="convnet", dataset=dataset, batch_size=8, devices=devices, trial=0,
                settings=CellSettings(**{**TINY, **changes}))


def _trained(cell: Cell, results_dir=None):
    s = cell.settings
    devices = resolve_devices(cell.devices, "cpu", s.threads_per_device)
    torch.manual_seed(cell.seed)
    data = prepare_data(cell, None)
    placed = place(cell, build_method(cell, data, None), data, devices)
    return placed.method, run_epochs(cell, placed, data, results_dir)


def _state(method) -> dict:
    return {f"{i}.{k}": v for i, m in enumerate(method.modules()) for k, v in m.state_dict().items()}


def test_whole_run_pipelined_equals_sequential_bit_for_bit():
    one, run1 = _trained(_cell("scpl", 1))
    two, run2 = _trained(_cell("scpl", 2))
    assert run1.epochs == run2.epochs == 2 and len(run1.curve) == 2
    a, b = _state(one), _state(two)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for r1, r2 in zip(run1.curve, run2.curve):
        assert r1.train_loss == r2.train_loss and r1.stage_losses == r2.stage_losses
        assert r1.test_acc == r2.test_acc and r1.val_acc == r2.val_acc


def test_row_and_curve_of_a_training_run(tmp_path):
    row = run_cell(_cell("scpl", 2, lr_schedule="cosine", lr_min=1e-5, eval_every=2, epochs=3), None, tmp_path)
    assert row.status == "ok" and row.epochs == 3 and row.epoch_time_kind == "measured"
    assert len(row.epoch_times_s) == 3 and row.epoch_time_s == sorted(row.epoch_times_s)[1]
    assert row.executor == "threads" and row.data_wait_s >= 0 and row.train_wall_s >= sum(row.epoch_times_s) * 0.999
    assert row.steps_per_epoch == 4 and row.train_items == 32  # 40 read, 8 held out for validation
    assert "40 training items read" in row.data_note
    assert row.eval_steps == [8, 12]  # after epoch 2 (eval_every) and after the last
    assert row.test_acc == row.test_acc_curve[-1] and row.test_acc_best == max(row.test_acc_curve)
    curve = read_curves(tmp_path)
    assert list(curve.columns) == CURVE_SCHEMA.names and list(curve.epoch) == [1, 2, 3]
    assert curve.val_acc.isna().tolist() == [True, False, False]
    assert curve.lr.tolist() == pytest.approx([1e-3, 1e-5 + (1e-3 - 1e-5) * 0.75, 1e-5 + (1e-3 - 1e-5) * 0.25])
    assert all(len(s) == 4 for s in curve.stage_losses) and (curve.wall_s.diff().dropna() > 0).all()
    assert curve.train_loss.tolist() == pytest.approx([sum(s) for s in curve.stage_losses], rel=1e-6)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_curves_schema_many_writers_latest_attempt_and_compaction(tmp_path):
    def rows(cell_id: str, loss: float) -> list[CurveRow]:
        return [CurveRow(cell_id=cell_id, grid="g", method="scpl", model="convnet", dataset="d", batch_size=8,
                         devices=2, trial=0, epoch=e, wall_s=float(e), epoch_time_s=1.0, data_wait_s=0.0,
                         samples_per_s=8.0, train_loss=loss, stage_losses=[loss], lr=1e-3,
                         test_acc=0.5 if e == 2 else None) for e in (1, 2)]

    append_curve(tmp_path, rows("a", 1.0))
    append_curve(tmp_path, rows("b", 2.0))
    append_curve(tmp_path, rows("a", 3.0))  # a retried cell: its latest attempt counts
    frame = read_curves(tmp_path)
    assert sorted(zip(frame.cell_id, frame.train_loss)) == [("a", 3.0), ("a", 3.0), ("b", 2.0), ("b", 2.0)]
    assert len(read_curves(tmp_path, all_attempts=True)) == 6
    assert compact_curves(tmp_path) == 6 and not list((tmp_path / "curves").glob("*.parquet"))
    stored = pd.read_parquet(tmp_path / "curves.parquet")
    assert list(stored.columns) == CURVE_SCHEMA.names and len(stored) == 6
    assert read_curves(tmp_path).equals(frame)
    assert stored.test_acc.isna().sum() == 3  # nullable: epochs without evaluation


def _write_cifar(path: Path, images: np.ndarray, labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"x", b"data": images.reshape(len(images), -1), b"labels": labels,
             b"filenames": [b"x.png"] * len(images)}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 8, test: int = 16, seed: int = 0) -> Path:
    """CIFAR-10 in its published python-pickle layout, tiny: 5 training batches and a test batch."""
    rng = np.random.default_rng(seed)
    for b in range(5):
        _write_cifar(root / f"cifar-10-batches-py/data_batch_{b + 1}",
                     rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, per_batch)])
    _write_cifar(root / "cifar-10-batches-py/test_batch", rng.integers(0, 256, (test, 3, 32, 32), dtype=np.uint8),
                 [i % 10 for i in range(test)])
    return root


@pytest.mark.slow
def test_training_small_grid_end_to_end_on_cifar_files(tmp_path):
    data_root = write_cifar10(tmp_path / "data")
    grid = load_grid("training_small", overrides=["axes.dataset=[cifar10]", "settings.max_train_items=null",
                                                  "settings.max_test_items=null", "settings.count_train_memory=false"])
    # two of its four cells keep the test short: BP sequential, SCPL pipelined over 2 devices
    cells = [c for c in grid.cells if (c.method, c.devices) in {("bp", 1), ("scpl", 2)}]
    results = tmp_path / "results"
    summary = run_grid(grid, results, cells=cells, data_root=str(data_root), progress=False)
    assert summary.statuses == {"ok": len(cells)}, summary.failure_text()
    rows = read_results(results)
    assert set(rows.epoch_time_kind) == {"measured"} and set(rows.data_kind) == {"real"}
    assert (rows.epochs == grid.cells[0].settings.epochs).all() and set(rows.executor) == {"sequential", "threads"}
    assert rows.data_note.str.contains("40 training items read, 50000 published").all()
    curves = pd.read_parquet(results / "curves.parquet")
    assert len(curves) == len(cells) * grid.cells[0].settings.epochs
    assert set(curves.cell_id) == set(rows.cell_id) and curves.test_acc.notna().all()
    assert not list((results / "checkpoints").glob("*/checkpoint.pt"))  # removed once finished


def _jpeg(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), colour).save(path, "JPEG", quality=95)


def test_ten_class_tinyimagenet_folder_sets_the_head_and_says_so(tmp_path, capfd):
    base = tmp_path / "tiny-imagenet-200"
    for c in range(10):
        wnid, colour = f"n{c:02d}", (25 * c, 255 - 25 * c, 128)
        for i in range(3):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour)
        _jpeg(base / "val" / wnid / f"val_{c}.JPEG", colour)
    cell = Cell(grid="t", method="bp", model="convnet", dataset="tinyimagenet", batch_size=8, devices=1, trial=0,
                settings=CellSettings(**{**TINY, "val_fraction": 0.0}))
    row = run_cell(cell, str(tmp_path), None)
    assert row.status == "ok" and row.num_classes == 10 and row.train_items == 30
    assert row.data_note.startswith("tinyimagenet: 10 classes in the training files, 200 published")
    assert "30 training items read, 100000 published" in row.data_note
    assert row.params_effective == 6_318_430  # the ConvNet with a 10-way head (as on CIFAR-10), not 200-way
    assert sum("warning: tinyimagenet: 10 classes" in line for line in capfd.readouterr().err.splitlines()) == 1


def test_accuracy_grid_has_the_papers_settings():
    grid = load_grid("accuracy")
    assert all(c.settings.epochs is not None and "@" not in c.dataset for c in grid.cells)
    assert {c.trial for c in grid.cells} == set(range(5))
    vision = [c for c in grid.cells if c.model in ("vgg8", "resnet18", "convnet")]
    text = [c for c in grid.cells if c.model in ("lstm", "transformer")]
    assert len(vision) + len(text) == len(grid.cells)
    for c in vision:
        s = c.settings
        assert (s.epochs, s.lr, s.lr_schedule, s.lr_min) == (200, 1e-3, "cosine", 1e-5)
        contrastive = c.method in ("scpl", "dascpl")
        # every method on the references' two-view batch (SCPL config.ini:4,6; DASCPL train_vision.py:42-44)
        assert (c.batch_size, s.views, s.augment) == ((1024 if contrastive else 128), 2, "basic")
    assert all(c.settings.val_fraction == 0.0 for c in grid.cells)  # the whole training split, as the references
    assert {c.dataset for c in vision if c.model == "convnet"} == {"cifar10", "cifar100"}
    for c in text:
        s = c.settings
        # batch 1024 (DASCPL train_nlp.py:16), each batch padded to its longest text (utils/nlp.py:288-294)
        assert (s.epochs, s.lr, s.lr_schedule, s.glove, c.batch_size) == (50, 1e-3, "constant", True, 1024)
        assert (s.padding, s.padding_side, s.max_len, s.embedding_feature) == ("batch", "right", None, "mean")
        assert s.views == 1  # the references do not augment text
    assert {c.method for c in text} == {"bp", "early_exit", "al", "scpl", "dascpl"}


def test_only_the_rank_that_warns_prints_the_data_warning(capsys):
    """40 of 50,000 items read: one warning line per cell; a distributed cell's other ranks pass warn=False
    (bench/cell/rank_phases.py), so N ranks do not print it N times."""
    cell = _cell("bp", 1)
    prepare_data(cell, None, read_training=False)
    assert capsys.readouterr().err.count("training items read") == 1
    prepare_data(cell, None, read_training=False, warn=False)
    assert "training items read" not in capsys.readouterr().err
