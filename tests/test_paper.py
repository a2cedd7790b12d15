"""The paper's numbers beside measured ones: recognition of paper items and the comparison arithmetic."""
import json

import pandas as pd
import pytest

from bench.report.paper import base_dataset, compare, paper_items, recognise, write_paper_comparisons
from bench.store.fragments import append_rows
from bench.store.read import read_results
from bench.store.row import ResultRow


def _row(method, devices, batch, epoch, model="vgg8", dataset="tinyimagenet@synthetic", trial=0, status="ok",
         acc=None, step=None, device_kind="cpu"):
    return ResultRow(
        cell_id=f"{method}{model}{dataset}{devices}{batch}{trial}{status}", grid="paper", method=method, model=model,
        dataset=dataset, data_kind="synthetic" if "@" in dataset else "real", batch_size=batch, devices=devices,
        trial=trial, seed=trial, status=status, error=None if status == "ok" else "RuntimeError: boom",
        epoch_time_s=epoch if status == "ok" else None, epoch_time_kind="extrapolated", timed_steps=2,
        step_time_median_s=step, test_acc=acc, device_kind=device_kind,
        device_names=[f"cpu-worker{d}" for d in range(devices)], oversubscribed=False,
        settings_json=json.dumps({"lr": 0.001}),
    )


def test_paper_data_loads_in_the_papers_order():
    keys = [item.key for item in paper_items()]
    assert keys == ["table2", "table3", "figure4", "figures5_12", "figure13",
                    "table4", "table5", "table6", "table7", "table8"]
    table3 = next(i for i in paper_items() if i.key == "table3").data
    assert len(table3) == 35 and table3["bp_minutes"].dropna().tolist() == [204, 215, 220, 224, 244]
    assert base_dataset("tinyimagenet@synthetic") == "tinyimagenet"


def test_recognition_by_model_dataset_method_devices_batch(tmp_path):
    rows = [_row("bp", 1, 32, 100.0), _row("scpl", 2, 32, 50.0)]  # Table 3 cells, and Figure 8's pair
    assert [i.key for i in recognise(pd.DataFrame([r.to_dict() for r in rows]))] == ["table3", "figures5_12"]
    other = [_row("bp", 1, 48, 100.0, model="convnet", dataset="cifar10@synthetic")]
    assert recognise(pd.DataFrame([r.to_dict() for r in other])) == []  # no paper cell
    fig4 = [_row("bp", 4, 64, 10.0, model="lstm", dataset="imdb", step=0.4)]
    assert [i.key for i in recognise(pd.DataFrame([r.to_dict() for r in fig4]))] == ["figure4"]
    fig13 = [_row("scpl", 4, 96, 10.0, step=0.24), _row("gpipe", 4, 96, 10.0, step=0.31)]
    assert "figure13" in [i.key for i in recognise(pd.DataFrame([r.to_dict() for r in fig13]))]
    acc = [_row("scpl", 1, 128, 10.0, model="vgg8", dataset="cifar10@synthetic", acc=0.9)]
    assert [i.key for i in recognise(pd.DataFrame([r.to_dict() for r in acc]))] == ["table7"]


def test_speedup_comparison_arithmetic_and_verdict(tmp_path):
    rows = [_row("bp", 1, 32, 120.0), _row("scpl", 2, 32, 120.0 / 0.82),  # paper 0.82x: ratio 1.00
            _row("scpl", 4, 32, 120.0 / 1.3),  # paper 1.04x: 1.25 -> not within 10 %
            _row("gpipe", 2, 32, 1.0, status="failed"), _row("ddp", 2, 32, 60.0)]
    append_rows(tmp_path, rows)
    frame = read_results(tmp_path)
    comparison = compare(next(i for i in paper_items() if i.key == "table3"), frame)
    t = comparison.table.set_index(["method", "devices", "batch_size"])
    assert t.loc[("scpl", 2, 32), "measured_speedup"] == pytest.approx(0.82)
    assert t.loc[("scpl", 2, 32), "measured_over_paper"] == pytest.approx(1.0)
    assert t.loc[("scpl", 4, 32), "measured_over_paper"] == pytest.approx(1.3 / 1.04)
    assert t.loc[("bp", 1, 32), "paper_bp_minutes_whole_run"] == 204
    assert t.loc[("bp", 1, 32), "measured_bp_minutes_per_epoch"] == pytest.approx(2.0)
    assert t.loc[("gpipe", 2, 32), "status"].startswith("failed")
    assert bool(t.loc[("ddp", 2, 32), "extra"]) and t.loc[("ddp", 2, 32), "measured_speedup"] == pytest.approx(2.0)
    md = comparison.markdown
    assert "| BP | 1x (204 min) | 1x (2.0 min/epoch) |" in md
    assert "SCPL (2 CPU devices) | " in md and "DDP (2 CPU devices) [extra]" in md
    assert "1 of 2 cells within 10 %" in comparison.verdict and "SCPL (4 CPU devices) b32" in comparison.verdict
    assert "not a reproduction" in comparison.verdict and "synthetic" in comparison.verdict
    assert md.index("| BP |") < md.index("GPipe (1 CPU device)") < md.index("SCPL (1 CPU device)") \
        < md.index("| DDP (2 CPU devices) [extra]")  # the paper's row order, extras last
    written = write_paper_comparisons(tmp_path, frame)
    assert {c.item.key for c in written} == {"table3", "figures5_12"}
    assert (tmp_path / "paper_table3.md").exists() and (tmp_path / "paper_table3.csv").exists()


def test_gpus_are_called_gpus():
    rows = [_row("bp", 1, 32, 100.0, dataset="tinyimagenet", device_kind="cuda"),
            _row("scpl", 4, 32, 50.0, dataset="tinyimagenet", device_kind="cuda")]
    comparison = compare(next(i for i in paper_items() if i.key == "table3"),
                         pd.DataFrame([r.to_dict() for r in rows]).assign(speedup=None))
    assert "SCPL (4 GPUs)" in comparison.markdown and "not a reproduction" not in comparison.verdict


def test_figure4_figure13_and_figures5_12_ratios():
    items = {i.key: i for i in paper_items()}
    fig4 = pd.DataFrame([r.to_dict() for r in [_row("bp", 4, 64, 1.0, model="lstm", dataset="imdb@synthetic", step=0.5),
                                                _row("scpl", 4, 64, 1.0, model="lstm", dataset="imdb@synthetic",
                                                     step=0.3)]])
    t = compare(items["figure4"], fig4).table.set_index("method")
    assert t.loc["bp", "measured_iteration_ms"] == pytest.approx(500.0)
    assert t.loc["scpl/bp", "paper_iteration_ms"] == pytest.approx(265.11 / 435.362)
    assert t.loc["scpl/bp", "measured_over_paper"] == pytest.approx(0.6 / (265.11 / 435.362))
    fig13 = pd.DataFrame([r.to_dict() for r in [_row("scpl", 4, 96, 1.0, step=0.24), _row("gpipe", 4, 96, 1.0, step=0.31),
                                                 _row("scpl_gpipe", 4, 96, 1.0, step=0.22)]])
    c = compare(items["figure13"], fig13)
    t = c.table.set_index("schedule")
    assert t.loc["GPipe", "paper_ratio_to_scpl"] == pytest.approx(31 / 24)
    assert t.loc["GPipe", "measured_over_paper"] == pytest.approx(1.0)
    assert "2 of 2 cells within" in c.verdict
    pair = pd.DataFrame([r.to_dict() for r in [_row("bp", 1, 128, 200.0, model="lstm", dataset="agnews@synthetic"),
                                                _row("scpl", 4, 128, 125.0, model="lstm", dataset="agnews@synthetic")]])
    t = compare(items["figures5_12"], pair).table
    assert list(t["figure"]) == ["Figure 9"] and t["paper_scpl4_over_bp"][0] == 1.6
    assert t["measured_scpl4_over_bp"][0] == pytest.approx(1.6) and t["measured_over_paper"][0] == pytest.approx(1.0)


def test_accuracy_mean_std_and_difference_in_paper_std():
    rows = [_row("scpl", 1, 128, 1.0, model="vgg8", dataset="cifar10@synthetic", acc=a, trial=k)
            for k, a in enumerate([0.9331, 0.9353])]  # mean 93.42 = the paper's SCPL VGG on CIFAR-10
    rows.append(_row("bp", 1, 128, 1.0, model="vgg8", dataset="cifar10@synthetic", acc=0.8902))  # paper 93.02
    c = compare(next(i for i in paper_items() if i.key == "table7"), pd.DataFrame([r.to_dict() for r in rows]))
    t = c.table.set_index("method")
    assert t.loc["scpl", "measured_mean"] == pytest.approx(93.42)
    assert t.loc["scpl", "measured_std"] == pytest.approx(pd.Series([93.31, 93.53]).std())
    assert t.loc["scpl", "difference_in_paper_std"] == pytest.approx(0.0, abs=1e-9)
    assert t.loc["bp", "difference_points"] == pytest.approx(-4.0)
    assert t.loc["bp", "difference_in_paper_std"] == pytest.approx(-4.0 / 0.03)
    assert "1 of 2 cells within 2 points" in c.verdict and "BP vgg8" in c.verdict


def _trained(method, best, last, trial=0, epochs=3):
    """A training run's row on CIFAR-10 (Table 7): its test curve peaks at `best` and ends at `last`."""
    row = _row(method, 1, 128, 10.0, model="vgg8", dataset="cifar10", acc=last, trial=trial)
    row.epochs, row.epoch_time_kind = epochs, "measured"
    row.eval_steps, row.test_acc_curve = [1, 2, 3], [best - 0.05, best, last]
    row.test_acc_val_selected, row.test_acc_best = last, best
    return row


def test_accuracy_of_a_training_run_is_its_best_epoch_as_the_references_report(tmp_path):
    # SCPL main.py:308-309,321 and DASCPL train_vision.py:488-490,516 print the best test accuracy over epochs
    append_rows(tmp_path, [_trained("scpl", 0.9342, 0.9002)])  # paper SCPL VGG CIFAR-10: 93.42
    frame = read_results(tmp_path)
    item = next(i for i in paper_items() if i.key == "table7")
    c = compare(item, frame)
    t = c.table.set_index("method")
    assert t.loc["scpl", "measured_mean"] == pytest.approx(93.42) and t.loc["scpl", "statistic"] == "best epoch"
    assert t.loc["scpl", "measured_final_mean"] == pytest.approx(90.02)
    assert t.loc["scpl", "difference_points"] == pytest.approx(0.0, abs=1e-9) and "1 of 1 cells within" in c.verdict
    assert "| 93.42 ± 0.00 (1) | best epoch | +0.00 |" in c.markdown and "`test_acc_best`" in c.markdown
    assert c.markdown.rstrip().splitlines()[4].endswith(" 90.02 |")  # the final head beside it
    final = compare(item, frame, accuracy="final").table.set_index("method")  # the other statistic, one argument away
    assert final.loc["scpl", "measured_mean"] == pytest.approx(90.02) and final.loc["scpl", "statistic"] == "final"
    with pytest.raises(ValueError, match="reference, final"):
        compare(item, frame, accuracy="best")


def test_accuracy_of_a_sampled_cell_is_its_final_head(tmp_path):
    sampled = _row("scpl", 1, 128, 10.0, model="vgg8", dataset="cifar10", acc=0.90)
    sampled.eval_steps, sampled.test_acc_curve, sampled.test_acc_best = [5, 10], [0.95, 0.90], 0.95  # no epochs
    append_rows(tmp_path, [sampled, _trained("scpl", 0.96, 0.92, trial=1)])
    frame = read_results(tmp_path)
    item = next(i for i in paper_items() if i.key == "table7")
    alone = compare(item, frame[frame["epochs"].isna()]).table.set_index("method")
    assert alone.loc["scpl", "measured_mean"] == pytest.approx(90.0) and alone.loc["scpl", "statistic"] == "final"
    c = compare(item, frame)  # a group of both: each row its own statistic, both named
    t = c.table.set_index("method")
    assert t.loc["scpl", "measured_mean"] == pytest.approx(93.0) and t.loc["scpl", "statistic"] == "best epoch (1), final (1)"
    written = write_paper_comparisons(tmp_path, frame)
    assert [w.item.key for w in written] == ["table7"] and "best epoch (1), final (1)" in (tmp_path / "paper_table7.md").read_text()
