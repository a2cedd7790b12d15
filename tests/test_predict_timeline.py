"""Predicted timelines are drawn by the measured timelines' code; the report's predicted-vs-measured section."""
from __future__ import annotations

import pytest

from bench.predict.costs import CostCurve, StageCosts
from bench.predict.links import Link
from bench.predict.outcome import run_schedule
from bench.predict.schedules import Plan, build_schedule
from bench.predict.timeline import predicted_trace
from bench.report.timeline import TimelinePanel, save_figure, timeline_figure
from tests.test_predict_command import folder  # noqa: F401 - the fixture


def _outcome(schedule: str, **kw):
    costs = StageCosts.uniform(4, forward=0.01, backward=0.02, update=0.005, batch=8)
    plan = Plan(CostCurve((costs,)), 8, kw.pop("balance", (2, 2)), Link("x", 1e-5, 1e9),
                activation_bytes=(1e4,) * 4, parameter_bytes=(1e6,) * 4, **kw)
    return run_schedule(build_schedule(schedule, plan), plan.devices, 1)


@pytest.mark.parametrize("schedule,kw", [("decoupled", {}), ("gpipe", {"micro_batches": 4}),
                                         ("data_parallel", {"balance": (4,), "replicas": 2})])
def test_a_simulated_schedule_is_a_trace_with_one_step_per_batch(schedule, kw):
    outcome = _outcome(schedule, **kw)
    trace = predicted_trace(outcome)
    assert len(trace.steps) == 3 and trace.steps[-1].end_us == pytest.approx(outcome.completions[-1] * 1e6)
    assert {e.phase for e in trace.phases} >= {"FW", "BW", "UP"}
    assert {e.stage for e in trace.phases} <= set(range(4))


def test_predicted_and_measured_panels_share_the_drawing(tmp_path):
    outcome = _outcome("decoupled")
    panel = TimelinePanel("predicted", predicted_trace(outcome), list(outcome.lanes))
    paths = save_figure(timeline_figure([panel, panel]), tmp_path / "timeline")
    assert all(p.stat().st_size > 0 for p in paths)


def test_the_report_section_lists_every_cell_with_both(folder, tmp_path):  # noqa: F811 - the fixture
    from bench.report.predicted import predicted_vs_measured
    from bench.store.read import read_results

    text, figures = predicted_vs_measured(folder, read_results(folder), tmp_path)
    assert "| scpl | convnet | 64 | 2 | 2-2 |" in text and "| ddp | convnet | 64 | 2 |" in text
    assert figures == []  # no traces in this folder: the table only
