"""Time-to-accuracy (bench/report/tta.py) on hand-made curves: targets, not reached, speedup over BP."""
import json
import math

import pandas as pd
import pytest

from bench.report.tta import curves_with_rows, first_reached, load_curves, tta_frame, tta_speedup_frame, write_tta
from bench.report.variants import label_variants
from bench.store.fragments import append_rows
from bench.store.read import read_results
from bench.store.row import ResultRow

SETTINGS = json.dumps({"epochs": 4, "tta_targets": [0.5]})


def result_row(method, devices, trial, acc, dataset="cifar10@synthetic", val=None):
    return ResultRow(cell_id=f"{method}{devices}{trial}{dataset}", grid="hand", method=method, model="vgg8",
                     dataset=dataset, data_kind="synthetic", batch_size=32, devices=devices, trial=trial, seed=trial,
                     epoch_time_s=10.0, epoch_time_kind="measured", test_acc=acc, val_acc=val, settings_json=SETTINGS,
                     device_kind="cpu", threads_per_device=1)


def curve(method, devices, trial, walls, accs, dataset="cifar10@synthetic", vals=None):
    cell = f"{method}{devices}{trial}{dataset}"
    return pd.DataFrame({
        "cell_id": cell, "grid": "hand", "method": method, "model": "vgg8", "dataset": dataset, "batch_size": 32,
        "devices": devices, "trial": trial, "epoch": range(1, len(walls) + 1), "wall_s": walls,
        "epoch_time_s": 1.0, "data_wait_s": 0.0, "samples_per_s": 1.0, "train_loss": 1.0,
        "stage_losses": [[1.0]] * len(walls), "lr": 0.001, "test_acc": accs,
        "val_acc": vals if vals is not None else [None] * len(walls), "exit_acc": [[]] * len(walls),
        "attempt_id": cell, "finished_at": "2024-01-01T00:00:00+00:00"})


def hand_made(tmp_path):
    """BP (2 trials, final 0.80) and SCPL on 2 devices evaluated every 2nd epoch; SCPL alone on another dataset."""
    append_rows(tmp_path, [result_row("bp", 1, 0, 0.80), result_row("bp", 1, 1, 0.80),
                           result_row("scpl", 2, 0, 0.78), result_row("scpl", 2, 1, 0.78),
                           result_row("scpl", 2, 0, 0.6, dataset="other@synthetic")])
    curves = pd.concat([
        curve("bp", 1, 0, [10, 20, 30, 40], [0.50, 0.73, 0.77, 0.80]),  # 90 %: 20 s, 95 %: 30 s, 99 %: 40 s
        curve("bp", 1, 1, [12, 24, 36, 48], [0.60, 0.75, 0.79, 0.80]),  # 24, 36, 48 -> BP means 22, 33, 44
        curve("scpl", 2, 0, [5, 10, 15, 20], [None, 0.74, None, 0.78]),  # 10 s, 20 s, never 0.792
        curve("scpl", 2, 1, [5, 10, 15, 20], [None, 0.74, None, 0.78]),
        curve("scpl", 2, 0, [5, 10], [0.4, 0.6], dataset="other@synthetic"),
    ], ignore_index=True)
    curves.to_parquet(tmp_path / "curves.parquet")
    frame = label_variants(read_results(tmp_path))
    return frame, curves_with_rows(load_curves(tmp_path), frame)


def test_first_reached_is_the_first_evaluated_epoch_at_or_above():
    run = curve("scpl", 2, 0, [5, 10, 15, 20], [None, 0.74, None, 0.78])
    assert first_reached(run, "test_acc", 0.72) == {"reached": True, "time_s": 10.0, "epoch": 2, "lower_s": 0.0}
    assert first_reached(run, "test_acc", 0.78) == {"reached": True, "time_s": 20.0, "epoch": 4, "lower_s": 10.0}
    missed = first_reached(run, "test_acc", 0.79)
    assert missed["reached"] is False and math.isnan(missed["time_s"]) and math.isnan(missed["epoch"])


def test_targets_from_bp_final_accuracy_and_absolute_targets(tmp_path):
    frame, curves = hand_made(tmp_path)
    tta, notes = tta_frame(frame, curves)
    test = tta[(tta["metric"] == "test") & (tta["dataset"] == "cifar10@synthetic")]
    targets = test.drop_duplicates("target").set_index("target")["target_acc"]
    assert list(targets.index) == ["acc 50.0 %", "90 % of BP", "95 % of BP", "99 % of BP"]
    assert targets["90 % of BP"] == pytest.approx(0.72) and targets["99 % of BP"] == pytest.approx(0.792)
    bp0 = test[test["cell_id"] == "bp10cifar10@synthetic"].set_index("target")
    assert list(bp0["time_s"]) == [10.0, 20.0, 30.0, 40.0]
    scpl = test[test["cell_id"] == "scpl20cifar10@synthetic"].set_index("target")
    assert scpl.at["95 % of BP", "time_s"] == 20.0 and scpl.at["95 % of BP", "lower_s"] == 10.0
    assert not scpl.at["99 % of BP", "reached"] and math.isnan(scpl.at["99 % of BP", "time_s"])
    # no BP on the other dataset: only the absolute target, and a note that says why
    other = tta[tta["dataset"] == "other@synthetic"]
    assert set(other["target"]) == {"acc 50.0 %"}
    assert any("no BP run on 1 device" in n and "other@synthetic" in n for n in notes)
    assert not (tta["metric"] == "val").any()  # no validation curve: no validation rows


def test_speedup_over_bp_and_not_reached(tmp_path):
    frame, curves = hand_made(tmp_path)
    stats = tta_speedup_frame(tta_frame(frame, curves)[0])
    mine = stats[(stats["method"] == "scpl") & (stats["dataset"] == "cifar10@synthetic")].set_index("target")
    assert mine.at["90 % of BP", "speedup"] == pytest.approx(22 / 10)
    assert mine.at["95 % of BP", "speedup"] == pytest.approx(33 / 20)
    assert mine.at["99 % of BP", "trials_reached"] == 0 and math.isnan(mine.at["99 % of BP", "speedup"])
    bp = stats[stats["method"] == "bp"].set_index("target")
    assert bp.at["99 % of BP", "tta_mean_s"] == pytest.approx(44.0)


def test_written_files_say_not_reached_never_a_number(tmp_path):
    frame, curves = hand_made(tmp_path)
    sections, tta = write_tta(tmp_path, frame, curves)
    assert len(tta) == len(tta_frame(frame, curves)[0])
    assert sections and all((tmp_path / f).exists() for f in ("tta.md", "tta.csv", "tta_speedup.md", "tta_speedup.csv"))
    speedup_md = (tmp_path / "tta_speedup.md").read_text()
    assert "| scpl (2 devices) | 1.10x | 2.20x | 1.65x | not reached by 2/2 trials |" in speedup_md
    assert "1x (22.0 s)" in speedup_md and "upper bound" in speedup_md
    assert "not reached (4 ep)" in (tmp_path / "tta.md").read_text()
    csv = pd.read_csv(tmp_path / "tta.csv")
    missed = csv[~csv["reached"]]
    assert not missed.empty and missed["time_s"].isna().all()
    speed_csv = pd.read_csv(tmp_path / "tta_speedup.csv")
    assert speed_csv["speedup"].dtype == float


def test_no_curves_no_tables(tmp_path):
    append_rows(tmp_path, [result_row("bp", 1, 0, 0.8)])
    frame = read_results(tmp_path)
    sections, tta = write_tta(tmp_path, frame, curves_with_rows(load_curves(tmp_path), frame))
    assert sections == [] and tta.empty
    assert not (tmp_path / "tta.md").exists()
