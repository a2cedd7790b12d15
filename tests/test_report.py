"""Report values computed from a hand-made parquet."""
import pandas as pd
import pytest

from bench.report.write import main as write_main
from bench.report.write import speedup_table, write_report
from bench.store.fragments import append_rows
from bench.store.read import read_results
from bench.store.row import ResultRow
from tests.conftest import run_main


def _row(method, devices, batch, epoch, trial=0, status="ok", acc=0.5):
    return ResultRow(
        cell_id=f"{method}{devices}{batch}{trial}{status}", grid="hand", method=method, model="vgg8",
        dataset="cifar10@synthetic", data_kind="synthetic", batch_size=batch, devices=devices, trial=trial,
        seed=trial, status=status, epoch_time_s=epoch if status == "ok" else None, epoch_time_kind="extrapolated",
        timed_steps=5, test_acc=acc, device_names=["cpu-worker0"], oversubscribed=False,
    )


def _hand_made(tmp_path):
    rows = [
        _row("bp", 1, 32, 100.0), _row("bp", 1, 32, 110.0, trial=1),  # mean 105
        _row("bp", 1, 64, 80.0),
        _row("scpl", 1, 32, 105.0), _row("scpl", 2, 32, 50.0), _row("scpl", 2, 32, 70.0, trial=1),  # mean 60
        _row("scpl", 2, 64, 40.0), _row("scpl", 4, 64, 1.0, status="failed"),
    ]
    append_rows(tmp_path, rows)
    return read_results(tmp_path)


def test_speedup_values(tmp_path):
    table = speedup_table(_hand_made(tmp_path))
    assert list(table.columns) == ["batch 32", "batch 64"]
    assert table.loc["BP (1 device)", "batch 32"] == "1x (105.0 s)"
    assert table.loc["BP (1 device)", "batch 64"] == "1x (80.0 s)"
    assert table.loc["scpl (1 device)", "batch 32"] == "1.00x"
    assert table.loc["scpl (2 devices)", "batch 32"] == "1.75x"  # 105 / 60
    assert table.loc["scpl (2 devices)", "batch 64"] == "2.00x"
    assert table.loc["scpl (1 device)", "batch 64"] == "–"
    assert "scpl (4 devices)" not in table.index  # failed cells never enter the table


def test_report_files_caption_and_cli(tmp_path, capsys):
    _hand_made(tmp_path)
    text = write_report(tmp_path)
    assert "SYNTHETIC" in text and "EXTRAPOLATED" in text and "1 cell(s) did not finish" in text
    md = (tmp_path / "speedup_vgg8_cifar10-synthetic.md").read_text()
    assert "| scpl (2 devices) | 1.75x | 2.00x |" in md
    csv = pd.read_csv(tmp_path / "speedup_vgg8_cifar10-synthetic.csv", index_col=0)
    assert csv.loc["scpl (2 devices)", "batch 64"] == "2.00x"
    assert "50.00 ± 0.00 (n=2)" in (tmp_path / "accuracy.md").read_text()
    proc = run_main(write_main, ["bench.report.write", str(tmp_path)], capsys)
    assert proc.returncode == 0 and "1.75x" in proc.stdout
    bad = run_main(write_main, ["bench.report.write", str(tmp_path / "nope")], capsys)
    assert bad.returncode == 2 and "run_matrix.py" in bad.stderr


def test_variants_of_one_method_get_their_own_rows():
    import json

    from bench.report.variants import label_variants

    def settings(**kw):
        return json.dumps({"lr": 0.001, "seed": 0, "method_options": kw.pop("opts", {}), **kw})

    frame = pd.DataFrame({
        "method": ["bp", "bp", "contsup", "contsup", "scpl"],
        "settings_json": [settings(), settings(), settings(opts={"context": "E"}), settings(opts={"context": "R1E"}),
                          settings(local_loss="suncet")],
    })
    labels = list(label_variants(frame)["method"])
    assert labels == ["bp", "bp", "contsup[context=E]", "contsup[context=R1E]", "scpl"]


def test_exit_and_selection_tables_from_hand_made_rows(tmp_path):
    rows = []
    for trial, (acc1, acc2) in enumerate([(0.4, 0.8), (0.6, 0.6)]):
        row = _row("dascpl", 1, 32, 10.0, trial=trial)
        row.exit_acc, row.exit_time_s, row.exit_params = [acc1, acc2], [0.001, 0.003], [100, 300]
        row.exit_policy, row.exit_policy_acc = ["fixed:1", "confidence:0.9"], [acc1, 0.75]
        row.exit_policy_depth, row.exit_policy_time_s = [1.0, 1.5], [0.001, 0.002]
        row.eval_steps, row.test_acc_val_selected, row.test_acc_best = [5, 10], 0.5 + trial * 0.1, 0.9
        rows.append(row)
    append_rows(tmp_path, rows)
    write_report(tmp_path)
    exits = pd.read_csv(tmp_path / "exits.csv")
    assert list(exits["accuracy %"]) == [50.0, 70.0]  # mean over the two trials, per exit
    assert list(exits["time ms/sample"]) == [1.0, 3.0] and list(exits["parameters"]) == [100, 300]
    policies = pd.read_csv(tmp_path / "exit_policies.csv")
    assert list(policies["mean depth"]) == [1.0, 1.5] and list(policies["accuracy %"]) == [50.0, 75.0]
    text = (tmp_path / "accuracy.md").read_text()
    assert "55.00 ± 7.07 (n=2)" in text  # validation-selected: 0.5 and 0.6
    assert "Best test accuracy" in text and "90.00 ± 0.00 (n=2)" in text


def test_bp_baseline_survives_failed_bp_variants(tmp_path):
    """A BP variant that failed (another lr) neither relabels the good BP row nor takes away its baseline."""
    import json

    rows = [_row("bp", 1, 32, 100.0), _row("scpl", 2, 32, 50.0)]
    for r in rows:
        r.settings_json = json.dumps({"lr": 0.001})
    bad = _row("bp", 1, 32, 1.0, status="nan")
    bad.cell_id, bad.settings_json = "bp-diverged", json.dumps({"lr": 10.0})
    append_rows(tmp_path, rows + [bad])
    text = write_report(tmp_path)
    table = pd.read_csv(tmp_path / "speedup_vgg8_cifar10-synthetic.csv", index_col=0)
    assert table.loc["BP (1 device)", "batch 32"] == "1x (100.0 s)"
    assert table.loc["scpl (2 devices)", "batch 32"] == "2.00x" and "no BP baseline" not in text


def test_bp_baseline_ignores_settings_that_do_not_change_time(tmp_path):
    """Two good BP variants differing in lr: each row still has a baseline; one differing in views does not match."""
    import json

    from bench.report.baseline import with_bp_baseline

    rows = [_row("bp", 1, 32, 100.0), _row("scpl", 2, 32, 50.0), _row("scpl", 1, 32, 400.0, trial=1)]
    rows[0].settings_json, rows[1].settings_json = json.dumps({"lr": 0.1}), json.dumps({"lr": 0.01})
    rows[2].settings_json = json.dumps({"views": 2})
    append_rows(tmp_path, rows)
    frame = with_bp_baseline(read_results(tmp_path)).set_index(["method", "devices"])
    assert frame.loc[("scpl", 2), "speedup"] == pytest.approx(2.0)
    assert frame.loc[("scpl", 1), "speedup"] == pytest.approx(0.25)  # BP's only key: used for a row it lacks


def test_console_summary_is_speedup_health_and_where(tmp_path):
    """The run's console: speedup table, counts of ok and not, where the rest is; no accuracy tables."""
    from bench.report.write import write_report_files

    _hand_made(tmp_path)
    written = write_report_files(tmp_path)
    console = written.console
    assert "| scpl (2 devices) | 1.75x | 2.00x |" in console and "SYNTHETIC" in console
    assert "cells: 7 ok, 1 failed" in console
    assert f"report: {tmp_path / 'report.html'}" in console and "figure file(s) in" in console
    assert "Test accuracy" not in console and "paper" not in console.lower()  # sampled, synthetic: in the files
    assert "Test accuracy" in written.markdown and "Table 7" in written.markdown


def test_console_compares_accuracy_with_the_paper_only_for_training_runs_on_real_data(tmp_path):
    from bench.report.write import write_report_files

    rows = [_row("bp", 1, 32, 100.0), _row("scpl", 2, 32, 50.0)]
    for r in rows:
        r.dataset, r.data_kind, r.epoch_time_kind = "cifar10", "real", "measured"
    append_rows(tmp_path, rows)
    assert "Table 7" in write_report_files(tmp_path).console


def test_report_facts_of_an_unregistered_method_and_of_variants():
    """Old results may name a method no longer registered: own name, last, a colour, not BP's gradient."""
    from bench.report.method_facts import display_name, method_colour, report_rank, uses_bp_gradient

    assert display_name("retired") == "retired" and not uses_bp_gradient("retired")
    assert report_rank("retired") > max(report_rank(m) for m in ("bp", "scpl", "contsup", "ddp"))
    assert method_colour("retired") is not None and method_colour("retired") == method_colour("retired[lr=1]")
    assert display_name("contsup[context=R1E]") == "ContSup[context=R1E]" and uses_bp_gradient("gpipe[chunks=4]")
    assert method_colour("bp[lr=0.1]") == method_colour("bp")
