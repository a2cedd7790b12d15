"""`python -m bench.predict` on a results folder written by hand (no cells run: a few seconds)."""
from __future__ import annotations

import csv
import json
import time

import pytest

from bench.predict.cli import main
from bench.predict.links import Link, load_link, shipped_links, write_link
from bench.predict.probe import fit_link
from bench.store.fragments import append_rows
from bench.store.row import ResultRow

SETTINGS = {"warmup_steps": 1, "steps": 2, "queue_depth": 2,
            "method_options": {"gpipe_dist": {"chunks": 4, "schedule": "gpipe"}}}


def _row(method: str, batch: int, devices: int, step: float, busy=(), balance=()) -> ResultRow:
    return ResultRow(cell_id=f"{method}-{batch}-{devices}", grid="g", method=method, model="convnet",
                     dataset="cifar10@synthetic", batch_size=batch, devices=devices, trial=0, data_kind="synthetic",
                     seed=0, device_kind="cpu", step_time_median_s=step, stage_busy_s=list(busy),
                     balance=list(balance), timed_steps=2, settings_json=json.dumps(SETTINGS))


@pytest.fixture
def folder(tmp_path):
    rows = [_row("bp", b, 1, 0.001 * b) for b in (8, 16, 32, 64)]
    rows += [_row("scpl", b, 1, 0.002 * b, busy=[0.001 * b] * 4) for b in (32, 64)]
    rows += [_row("scpl", 64, 2, 0.07, balance=[2, 2]), _row("gpipe_dist", 64, 2, 0.05, balance=[2, 2]),
             _row("ddp", 64, 2, 0.04, balance=[4])]
    append_rows(tmp_path, rows)
    return tmp_path


def _read(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_predicts_every_method_from_the_one_device_cells(folder, capsys):
    start = time.perf_counter()
    assert main([str(folder), "--devices", "2", "4"]) == 0
    assert time.perf_counter() - start < 10  # one meta-device build of the ConvNet dominates
    rows = _read(folder / "predict.csv")
    methods = {r["method"] for r in rows}
    assert methods == {"bp", "scpl", "gpipe_dist", "ddp"}
    best = [r for r in rows if r["best_balance"] == "True"]
    assert {(r["method"], r["batch_size"], r["devices"]) for r in best} >= {("scpl", "64", "2"), ("ddp", "64", "4")}
    bp1 = next(r for r in rows if r["method"] == "bp" and r["batch_size"] == "64" and r["devices"] == "2")
    assert 0.064 < float(bp1["predicted_step_s"]) < 0.064 * 1.15  # naive: the sum, plus the hand-overs
    scpl = [r for r in best if r["method"] == "scpl" and r["batch_size"] == "64" and r["devices"] == "2"][0]
    assert float(scpl["predicted_speedup"]) > 0.064 / 0.128 * 1.5  # pipelined: about half of SCPL's 1-device step
    assert scpl["measured_step_s"] == "0.07" or scpl["balance"] != "2-2"
    text = (folder / "predict.md").read_text()
    assert "## convnet on cifar10@synthetic" in text and "| scpl | 64 | 2 |" in text


def test_timelines_are_drawn_per_batch_and_device_count(folder, tmp_path):
    from bench.predict.links import load_link
    from bench.predict.predictor import predict_grid
    from bench.predict.run import timeline_figures
    from bench.store.read import read_results

    predictions = [p for p in predict_grid(read_results(folder), folder, [2], load_link("cpu-shared-memory"))
                   if p.batch == 64]
    written = timeline_figures(predictions, tmp_path)
    assert [p.name for p in written if p.suffix == ".png"] == ["predicted_timeline_convnet_cifar10-synthetic_b64_d2.png"]


@pytest.mark.parametrize("argv,message", [
    (["--devices", "2"], "no such results folder"),
    (["--link", "carrier-pigeon"], "unknown link 'carrier-pigeon'"),
    (["--balance", "two,2"], "balance 'two,2': use all, auto, even"),
])
def test_bad_input_exits_2_with_one_line(folder, capsys, argv, message):
    target = [str(folder / "missing")] if "no such" in message else [str(folder)]
    assert main(target + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_folder_without_one_device_cells_exits_2(tmp_path, capsys):
    append_rows(tmp_path, [_row("scpl", 64, 2, 0.07, balance=[2, 2])])
    assert main([str(tmp_path)]) == 2
    assert "no finished one-device cells" in capsys.readouterr().err


def test_link_files_round_trip_and_every_shipped_profile_loads(tmp_path):
    assert {"pcie4-x16", "nvlink4", "ib-100g", "ib-400g", "cpu-shared-memory"} <= set(shipped_links())
    for name in shipped_links():
        assert load_link(name).bandwidth_bytes_s > 0
    link = Link("mine", 2e-6, 3e9, "here")
    assert load_link(str(write_link(link, tmp_path / "mine.yaml"))) == link


def test_the_probe_fit_recovers_latency_and_bandwidth():
    sizes = [1024, 4096, 65536, 2 ** 20]
    link = fit_link(sizes, [1e-5 + s / 2e9 for s in sizes], "x", "")
    assert link.latency_s == pytest.approx(1e-5) and link.bandwidth_bytes_s == pytest.approx(2e9)


@pytest.mark.slow
def test_the_probe_measures_gloo_between_two_processes(tmp_path):
    from bench.predict.probe import probe_link

    link = probe_link(sizes=(1024, 65536, 2 ** 20), repeats=2)
    assert link.latency_s >= 0 and link.bandwidth_bytes_s > 0
