"""A library schedule's own overhead: charged per micro-batch and device, measured from one-device cells only."""
from __future__ import annotations

import json

import pytest

from bench.predict.costs import CostCurve, StageCosts
from bench.predict.inputs import CellFacts, Network
from bench.predict.links import Link, load_link, write_link
from bench.predict.outcome import run_schedule
from bench.predict.overheads import OverheadCurve, measured_overheads, overhead_for, samples_per_device
from bench.predict.predictor import predict_cell
from bench.predict.schedules import Plan, build_schedule

FREE = Link("free", 0.0, float("inf"))
NET = Network("convnet", "cifar10@synthetic")
# the ConvNet's sizes as model_facts.py caches them, so no test builds the model
FACTS = {"convnet|cifar10@synthetic|{}": {"activation_bytes": [131072.0, 32768.0, 65536.0, 16384.0],
                                          "parameter_bytes": [40576.0, 73984.0, 221696.0, 24937464.0],
                                          "flop_share": [0.25, 0.25, 0.25, 0.25]}}
SETTINGS = {"warmup_steps": 1, "steps": 4, "method_options": {"gpipe": {"chunks": 4, "checkpoint": "never"},
                                                              "gpipe_dist": {"chunks": 4, "schedule": "gpipe"}}}


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_gpipe_with_an_overhead_per_micro_batch_is_m_plus_n_minus_1_times_t_plus_c_over_n(n, m):
    # equal stages: each device's share of a micro-batch's overhead c is c / n
    t_f, t_b, c = 1.0, 2.0, 0.5
    costs = StageCosts.uniform(n, forward=t_f, backward=t_b, batch=1)  # a micro-batch of 1 sample
    plan = Plan(CostCurve((costs,)), m, (1,) * n, FREE, batches=1, micro_batches=m, overhead_s=c)
    outcome = run_schedule(build_schedule("gpipe", plan), n, 0)
    assert outcome.step_s == pytest.approx((m + n - 1) * (t_f + t_b + c / n))


def test_the_overhead_follows_the_stage_work():
    costs = StageCosts(1, (1.0, 3.0), (0.0, 0.0), (2.0, 6.0), (0.0, 0.0))  # stage 1 does 3/4 of the work
    plan = Plan(CostCurve((costs,)), 1, (1, 1), FREE, batches=1, overhead_s=0.4)
    timed = run_schedule(build_schedule("gpipe", plan), 2, 0).timed
    assert timed["FW:t0:j0:k0"].task.duration == pytest.approx(1.0 + 0.2 * 0.25)
    assert timed["BW:t0:j0:k1"].task.duration == pytest.approx(6.0 + 0.2 * 0.75)


def test_ddp_charges_the_overhead_once_per_step_on_every_replica():
    costs = StageCosts.uniform(2, forward=1.0, backward=2.0, batch=1)
    plan = Plan(CostCurve((costs,)), 2, (2,), FREE, batches=1, replicas=2, overhead_s=0.25)
    assert run_schedule(build_schedule("data_parallel", plan), 2, 0).step_s == pytest.approx(2 * 3.0 + 0.25)


def test_the_overhead_curve_interpolates_and_holds_its_ends():
    curve = OverheadCurve(((16.0, 0.002), (32.0, 0.004)))
    assert [curve.at(s) for s in (8, 16, 24, 32, 64)] == pytest.approx([0.002, 0.002, 0.003, 0.004, 0.004])
    assert samples_per_device("data_parallel", 64, 2) == 32 and samples_per_device("gpipe", 64, 2) == 64


def _cell(method: str, batch: int, step: float) -> CellFacts:
    return CellFacts(method, NET, batch, 1, step, SETTINGS, "cpu", row={})


def test_the_overhead_is_the_one_device_cell_minus_bps_simulated_step(tmp_path):
    (tmp_path / "predict_model_facts.json").write_text(json.dumps(FACTS))
    bp = CostCurve((StageCosts.uniform(4, forward=0.001, backward=0.002, batch=8),
                    StageCosts.uniform(4, forward=0.004, backward=0.008, batch=32)))
    c = 0.003  # per micro-batch: four of them in a GPipe step of 32 samples
    link = load_link("cpu-shared-memory")
    base = predict_cell("gpipe", bp, NET, 32, 1, None, link, SETTINGS, "cpu", _facts(tmp_path))
    assert base.step_s == pytest.approx(4 * 4 * 0.003)  # four micro-batches of 8 through 4 stages, one thread
    found = measured_overheads([_cell("bp", 8, 0.012), _cell("bp", 32, 0.048), _cell("gpipe", 32, base.step_s + 4 * c)],
                               {("bp", NET): bp}, "bp", link, tmp_path)
    assert list(found) == [("gpipe", NET)]
    assert overhead_for(found, "gpipe", NET, "gpipe", 32, 2) == pytest.approx(c)
    assert overhead_for(found, "gpipe_dist", NET, "gpipe", 32, 2) == 0.0  # no one-device cell: nothing added
    two = predict_cell("gpipe", bp, NET, 32, 2, (2, 2), link, SETTINGS, "cpu", _facts(tmp_path), overhead_s=c)
    plain = predict_cell("gpipe", bp, NET, 32, 2, (2, 2), link, SETTINGS, "cpu", _facts(tmp_path))
    assert two.step_s == pytest.approx(plain.step_s + 4 * c)  # one thread: both devices' shares in a row


def _facts(folder):
    from bench.predict.predictor import facts_of

    return facts_of(NET, folder)


def test_a_sampled_cell_is_simulated_as_one_fill_batch_then_steps_gaps(tmp_path):
    (tmp_path / "predict_model_facts.json").write_text(json.dumps(FACTS))
    curve = CostCurve((StageCosts.uniform(4, forward=1.0, backward=2.0, batch=32),))
    settings = dict(SETTINGS, warmup_steps=3, steps=5)
    outcome = predict_cell("scpl", curve, NET, 32, 2, (2, 2), FREE, settings, "cpu", _facts(tmp_path))
    assert len(outcome.completions) == 1 + 5  # the warm-up ran (and drained) in a segment of its own
    assert outcome.step_s == pytest.approx(6.0)  # the steady state: the slower device's two stages


def test_a_link_may_give_the_all_reduce_its_own_latency_and_bandwidth(tmp_path):
    link = Link("mine", 1e-5, 4e9, "here", all_reduce_latency_s=2e-4, all_reduce_bus_bytes_s=1e9)
    assert load_link(str(write_link(link, tmp_path / "mine.yaml"))) == link
    assert link.all_reduce_s(8e6, 2) == pytest.approx(2e-4 + 8e6 / 1e9)
    assert link.transfer_s(8e6) == pytest.approx(1e-5 + 8e6 / 4e9)
    assert "all_reduce" not in write_link(Link("plain", 1e-5, 4e9), tmp_path / "plain.yaml").read_text()
