"""Training health (bench/store/health.py): the flags, a cell's `health` column, and every place the report shows them.

The report test makes a run that did not learn on purpose, the way the issue met it: BP
at chance (8.75 % on 10 classes, loss stuck above ln 10) beside an SCPL that learned, in
a results folder as a grid run leaves it (rows and curves; BP's row written before the
`health` column existed, so the report must recompute its flags from the curve).
"""
import json
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.cell.phases import run_cell
from bench.grid.cells import Cell
from bench.grid.settings import CellSettings
from bench.report.console import console_summary
from bench.report.write import write_report_files
from bench.store.curves import CurveRow, append_curve
from bench.store.fragments import append_rows
from bench.store.health import HealthThresholds, LearningTrace, health_flags
from bench.store.read import read_results
from bench.store.row import ARROW_SCHEMA, ResultRow

LIMITS = HealthThresholds.from_settings(CellSettings())


def flags(acc=(), losses=(), per_epoch=True, classes=10, exits=()):
    return health_flags(LearningTrace(classes, list(acc), list(losses), per_epoch, [list(e) for e in exits]), LIMITS)


def test_defaults_are_the_documented_settings():
    assert LIMITS == HealthThresholds(chance_margin=0.05, improving_margin=0.01, improving_window=3,
                                      spike_fraction=0.5)
    assert HealthThresholds.from_settings(CellSettings(health_chance_margin=0.2)).chance_margin == 0.2


def test_did_not_learn_by_accuracy_near_chance_or_by_a_loss_that_never_fell():
    assert flags([0.0875], [2.356, 2.303]) == ["did_not_learn"]  # the BP: 8.75 % on 10 classes
    assert flags([0.149], [2.3, 2.2]) == ["did_not_learn"]  # within 5 points of chance (10 %)
    assert flags([0.55], [2.3, 2.2], classes=2) == []  # SST-2: chance 50 %, 55 % is just past the margin
    assert flags([0.9], [1.0, 1.0, 1.2]) == ["did_not_learn"]  # loss never below the first epoch's
    assert flags([0.9], [1.0, 0.5]) == [] and flags([0.9], [1.0], per_epoch=True) == []  # one epoch: no loss test
    assert flags([0.9], [1.0, 1.0], per_epoch=False) == []  # step losses are not epochs


def test_still_improving_over_the_last_evaluations():
    assert flags([0.5, 0.7, 0.8, 0.85, 0.9], [2, 1, 0.5, 0.4, 0.3]) == ["still_improving"]  # +0.2 over the last 3
    assert flags([0.5, 0.895, 0.9, 0.9, 0.9], [2, 1, 0.5, 0.4, 0.3]) == []  # flat for the last 3 evaluations
    assert flags([0.668, 0.879], [2.2, 0.6]) == ["still_improving"]  # two evaluations: the gain between them


def test_unstable_on_a_spike_or_a_loss_that_is_not_finite():
    assert flags([0.9], [2.3, 0.4, 1.9, 0.3]) == ["unstable"]  # back up by 1.5 > 0.5 x 2.3
    assert flags([0.9], [2.3, 0.04, 0.12, 0.03]) == []  # tripled, but by a hair of the first loss
    assert flags([0.9], [2.3, math.nan]) == ["unstable"] and flags([0.9], [2.3, math.inf]) == ["unstable"]


def test_each_exit_is_judged_on_its_own_accuracy():
    per_evaluation = [[0.1, 0.5, 0.9], [0.11, 0.7, 0.9]]  # exits 1, 2, 3 at two evaluations
    assert flags([0.9, 0.9], [2, 1], exits=per_evaluation) == ["exit1:did_not_learn", "exit2:still_improving"]


@pytest.mark.slow
def test_a_cell_at_lr_zero_writes_did_not_learn_in_its_row():
    """A real cell that cannot learn (lr 0): its row says so. A sampled cell without training is not judged."""
    settings = dict(max_train_items=40, max_test_items=100, eval_batch_size=50, val_fraction=0.0, balance="even",
                    threads_per_device=1, count_train_memory=False, lr=0.0)
    cell = Cell(grid="t", method="bp", model="convnet", dataset="cifar10@synthetic", batch_size=20, devices=1, trial=0,
                settings=CellSettings(epochs=2, **settings))
    row = run_cell(cell, None, None)
    assert row.status == "ok" and "did_not_learn" in row.health, (row.test_acc, row.health)
    sampled = Cell(grid="t", method="bp", model="convnet", dataset="cifar10@synthetic", batch_size=20, devices=1,
                   trial=0, settings=CellSettings(steps=1, warmup_steps=1, **settings))
    assert run_cell(sampled, None, None).health == []


# -- the report of a run that did not learn -------------------------------------------------------

SETTINGS = json.dumps({"epochs": 2, "tta_targets": [0.5]})


def _row(method: str, devices: int, acc: float, epoch_s: float, health=None) -> ResultRow:
    return ResultRow(cell_id=f"{method}{devices}", grid="issue16", method=method, model="convnet", dataset="cifar10",
                     data_kind="real", batch_size=64, devices=devices, trial=0, seed=0, epochs=2,
                     epoch_time_s=epoch_s, epoch_time_kind="measured", test_acc=acc, num_classes=10,
                     settings_json=SETTINGS, device_kind="cpu", threads_per_device=1, health=health)


def _curve(method: str, devices: int, losses: list, accs: list, epoch_s: float) -> list[CurveRow]:
    return [CurveRow(cell_id=f"{method}{devices}", grid="issue16", method=method, model="convnet", dataset="cifar10",
                     batch_size=64, devices=devices, trial=0, epoch=e + 1, wall_s=epoch_s * (e + 1),
                     epoch_time_s=epoch_s, data_wait_s=0.0, samples_per_s=1.0, train_loss=loss, test_acc=acc)
            for e, (loss, acc) in enumerate(zip(losses, accs))]


@pytest.fixture
def unlearned(tmp_path):
    """BP stuck at chance, its row from before the health column (null); SCPL learned, its row says healthy ([])."""
    rows = [_row("bp", 1, 0.0875, 20.0).to_dict(), _row("scpl", 2, 0.9145, 10.0, health=[]).to_dict()]
    rows[0]["health"] = None  # what an older results.parquet reads as: the column filled with nulls
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), tmp_path / "results.parquet")
    append_curve(tmp_path, _curve("bp", 1, [2.356, 2.356], [0.09, 0.0875], 20.0))
    append_curve(tmp_path, _curve("scpl", 2, [6.0, 3.0], [0.91, 0.9145], 10.0))
    assert read_results(tmp_path).set_index("cell_id")["health"].map(lambda h: h is None).tolist() == [True, False]
    return tmp_path


def test_report_flags_a_baseline_that_did_not_learn_everywhere(unlearned):
    written = write_report_files(unlearned)
    line = "BP (1 device), convnet on cifar10, batch 64, trial 0: did_not_learn (final test accuracy 8.75 %, chance 10.0 %)"
    page = (unlearned / "report.html").read_text()
    assert "Training health: 1 of 2 run(s) flagged" in page and line in page
    assert page.index('id="training-health"') < page.index("<h2>Provenance")  # at the top
    for name in ("speedup_convnet_cifar10.md", "accuracy.md", "tta.md", "tta_speedup.md",
                 "accuracy_paper_cifar10.md"):
        text = (unlearned / name).read_text()
        assert text.startswith("**Training health: 1 of 2 run(s) flagged"), name
        assert line in text, name
    assert "Training health: 1 of 2 run(s) flagged" in written.console and line in written.console
    assert written.markdown.startswith("**Training health")
    # speedup of time per epoch: the time stands, the baseline is marked and a note says what the ratios mean
    speedup = (unlearned / "speedup_convnet_cifar10.md").read_text()
    assert "| BP (1 device) | 1x (20.0 s; did not learn) |" in speedup and "| scpl (2 devices) | 2.00x |" in speedup
    assert "BP on 1 device did NOT LEARN at batch 64" in speedup
    # time to accuracy: nothing divided by BP's time, no targets relative to its final accuracy
    tta = (unlearned / "tta_speedup.md").read_text()
    assert "(10.0 s; BP did not learn)" in tta and "x |" not in tta.split("| method |")[1]
    assert "% of BP" not in tta and "BP on 1 device did not learn convnet on cifar10 at batch 64" in tta
    stats = pd.read_csv(unlearned / "tta_speedup.csv")
    assert stats["speedup"].isna().all() and stats.loc[stats.method == "scpl", "bp_did_not_learn"].all()


def test_healthy_results_have_no_block(tmp_path):
    append_rows(tmp_path, [_row("bp", 1, 0.9, 20.0, health=[]), _row("scpl", 2, 0.91, 10.0, health=[])])
    written = write_report_files(tmp_path)
    assert "Training health" not in (tmp_path / "report.html").read_text()
    assert "Training health" not in written.console and "did not learn" not in written.markdown
    assert (tmp_path / "speedup_convnet_cifar10.md").read_text().startswith("**Speedup")


def test_console_summary_keeps_its_lines_without_flags():
    frame = pd.DataFrame({"status": ["ok"], "epoch_time_kind": ["extrapolated"], "data_kind": ["synthetic"]})
    assert console_summary(["T"], [], frame, [], "report: x") == "T\ncells: 1 ok\nreport: x"
