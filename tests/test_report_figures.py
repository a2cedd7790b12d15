"""Every figure of a report, drawn for awkward result shapes; a figure that fails costs only itself."""
import html
import json

import pandas as pd
import pytest

from bench.report.figures import epoch_time_figure, plots_dir
from bench.report.write import write_report
from bench.store.fragments import append_rows
from bench.store.row import ResultRow
from tests.test_tta import curve


def _row(method, devices=1, batch=32, epoch=60.0, trial=0, status="ok", settings=None, trace_dir=None,
         kind="extrapolated"):
    return ResultRow(
        cell_id=f"{method}-{devices}-{batch}-{trial}-{status}-{kind}", grid="awkward", method=method, model="vgg8",
        dataset="cifar10@synthetic", data_kind="synthetic", batch_size=batch, devices=devices, trial=trial,
        seed=trial, status=status, epoch_time_s=epoch if status == "ok" else None, epoch_time_kind=kind,
        timed_steps=5, test_acc=0.5 if status == "ok" else None, device_names=["cpu-worker0"], oversubscribed=False,
        settings_json=json.dumps(settings or {}), balance=[2, 2] if devices == 2 else [4], trace_dir=trace_dir,
        error=None if status == "ok" else "RuntimeError: boom",
    )


def _trace(folder, stages=2):
    """A minimal torch.profiler trace: one ProfilerStep and a forward per stage."""
    folder.mkdir(parents=True)
    events = [{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1", "ts": 0, "dur": 1000}]
    events += [{"ph": "X", "cat": "user_annotation", "name": f"stage{k}/forward", "ts": 100 * k, "dur": 300,
                "pid": 1, "tid": k} for k in range(stages)]
    (folder / "worker0.1.pt.trace.json").write_text(json.dumps({"traceEvents": events}))
    return str(folder)


def _curve(row, accs):
    """Two epochs of `row`'s training run."""
    return curve(row.method, row.devices, row.trial, [5, 10], accs).assign(
        cell_id=row.cell_id, attempt_id=row.cell_id, batch_size=row.batch_size)


SHAPES = {
    "one device count, one batch, one method": lambda tmp: [_row("bp")],
    "one device count, three methods with long variant labels (sampled and training runs)": lambda tmp: [
        _row(m, devices=2, batch=64, epoch=10.0 + i, settings=settings, kind=kind)
        for i, m in enumerate(["ddp", "gpipe_dist", "scpl"])
        for settings, kind in (({"epochs": None, "lr_schedule": "constant"}, "extrapolated"),
                               ({"epochs": 2, "lr_schedule": "cosine"}, "measured"))],
    "many methods, several devices and batches, profiled": lambda tmp: [
        _row(m, devices=d, batch=b, epoch=100.0 / d + i, trace_dir=_trace(tmp / "traces" / f"{m}{d}{b}")
             if b == 64 else None)
        for i, m in enumerate(["bp", "scpl", "gpipe", "ddp", "dascpl", "al", "early_exit", "contsup",
                               "scpl_gpipe", "gpipe_dist", "retired_method", "another_retired_one"])
        for d in (1, 2) for b in (32, 64)],
    "a method whose every cell failed": lambda tmp: [
        _row("bp"), _row("bp", devices=2), _row("scpl", status="failed"), _row("scpl", devices=2, status="failed")],
    "every cell failed": lambda tmp: [_row("bp", status="failed"), _row("scpl", devices=2, status="timeout")],
    "no BP baseline": lambda tmp: [_row("scpl"), _row("scpl", devices=2)],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_figure_draws_for_awkward_shapes(tmp_path, capsys, shape):
    rows = SHAPES[shape](tmp_path)
    append_rows(tmp_path, rows)
    ok = [r for r in rows if r.status == "ok"]
    if ok:  # training-run curves too: one line per cell, the first never evaluated
        curves = pd.concat([_curve(r, [0.4, 0.6] if i else [None, None]) for i, r in enumerate(ok)],
                           ignore_index=True)
        curves.to_parquet(tmp_path / "curves.parquet")
    text = write_report(tmp_path)
    assert "not drawn" not in text and "not drawn" not in capsys.readouterr().err
    assert (tmp_path / "report.html").exists()
    written = sorted(p.name for p in plots_dir(tmp_path).glob("*.png")) if ok else []
    if ok:
        assert "epoch_time_vgg8_cifar10-synthetic.png" in written
    if "profiled" in shape:
        assert "timeline_vgg8_cifar10-synthetic_b64.png" in written
        assert "speedup_vgg8_cifar10-synthetic.png" in written


def test_long_legend_on_one_x_value_fits(tmp_path):
    """The shape that took a run down: seaborn's legend wider than a figure sized for one device count."""
    frame = pd.DataFrame({"method": [f"{m}[epochs=2,lr_schedule=cosine,xxxxxxxxxx]" for m in ("ddp", "gpipe", "scpl")],
                          "devices": 2, "batch_size": 64, "status": "ok", "epoch_time_s": [10.0, 11.0, 12.0]})
    fig = epoch_time_figure(frame, "one x value")
    width, height = fig.get_size_inches()
    assert width > 2.88 and height == pytest.approx(3.2)  # widened by the legend, the panel kept
    fig.savefig(tmp_path / "epoch.png")


def test_a_failing_figure_is_reported_and_the_rest_written(tmp_path, capsys, monkeypatch):
    import bench.report.figures as figures

    def broken(part, title):
        raise ValueError("left cannot be >= right\nsecond line")

    monkeypatch.setattr(figures, "epoch_time_figure", broken)
    append_rows(tmp_path, [_row("bp"), _row("scpl", devices=2, epoch=30.0)])
    text = write_report(tmp_path)
    line = "epoch_time_vgg8_cifar10-synthetic: ValueError: left cannot be >= right"
    assert "1 figure(s) not drawn" in text and "second line" not in text
    assert line in capsys.readouterr().err
    assert (plots_dir(tmp_path) / "speedup_vgg8_cifar10-synthetic.png").exists()  # the next figure still drawn
    assert not (plots_dir(tmp_path) / "epoch_time_vgg8_cifar10-synthetic.png").exists()
    assert (tmp_path / "speedup_vgg8_cifar10-synthetic.md").exists()  # and every table
    page = (tmp_path / "report.html").read_text()
    assert "1 figure(s) could not be drawn" in page and html.escape(line) in page
