"""bench.predict's simulator against schedules worked out by hand (no torch, milliseconds)."""
from __future__ import annotations

import pytest

from bench.predict.costs import CostCurve, StageCosts
from bench.predict.links import Link
from bench.predict.outcome import run_schedule
from bench.predict.schedules import Plan, build_schedule
from bench.predict.simulator import DeadlockError, Task, simulate

FREE = Link("free", 0.0, float("inf"))


def _plan(costs: StageCosts, devices: int, **kw) -> Plan:
    per = costs.num_stages // devices
    return Plan(CostCurve((costs,)), kw.pop("batch", costs.batch), (per,) * devices, kw.pop("link", FREE), **kw)


def _outcome(schedule: str, plan: Plan, warmup: int = 0):
    return run_schedule(build_schedule(schedule, plan), plan.devices, warmup)


def test_resources_run_in_order_and_wait_for_dependencies():
    done = simulate([Task("a", "d0", 2.0), Task("b", "d1", 1.0, after=("a",)), Task("c", "d1", 1.0),
                     Task("d", "d0", 1.0, after_start=("c",))])
    assert [(done[n].start, done[n].end) for n in "abcd"] == [(0, 2), (2, 3), (3, 4), (3, 4)]


def test_an_order_against_the_dependencies_is_a_deadlock():
    with pytest.raises(DeadlockError, match="no resource can start"):
        simulate([Task("a", "d0", 1.0, after=("b",)), Task("b", "d0", 1.0)])


def test_a_transfer_costs_latency_plus_bytes_over_bandwidth():
    link = Link("x", 1e-5, 1e9)
    assert link.transfer_s(4e6) == pytest.approx(1e-5 + 4e-3)
    costs = StageCosts.uniform(2, forward=1.0, batch=1)
    plan = _plan(costs, 2, link=link, activation_bytes=(4e6, 0.0), batches=1)
    assert _outcome("naive", plan).step_s == pytest.approx(2.0 + 1e-5 + 4e-3 + 1e-5 + 4e-3)  # forward + gradient


@pytest.mark.parametrize("n", [1, 2, 4])
def test_naive_model_parallelism_is_the_sum_of_the_stages(n):
    costs = StageCosts(8, (1.0, 2.0, 3.0, 4.0), (0.0, 0.0, 0.0, 0.5), (2.0, 4.0, 6.0, 8.0), (0.1,) * 4)
    outcome = _outcome("naive", _plan(costs, n, batches=3), warmup=1)
    assert outcome.step_s == pytest.approx(costs.total)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 4), (4, 8), (3, 1)])
def test_gpipe_fill_drain_takes_m_plus_n_minus_1_stage_times(n, m):
    t_fw, t_bw = 1.0, 2.0
    costs = StageCosts.uniform(n, forward=t_fw, backward=t_bw, batch=1)  # costs of one micro-batch
    plan = _plan(costs, n, batch=m, micro_batches=m, batches=1)
    assert _outcome("gpipe", plan).step_s == pytest.approx((m + n - 1) * (t_fw + t_bw))


def test_gpipe_recomputation_costs_a_forward_per_checkpointed_micro_batch():
    costs = StageCosts.uniform(1, forward=1.0, backward=2.0, batch=1)
    for checkpoint, extra in (("never", 0), ("except_last", 3), ("always", 4)):
        plan = _plan(costs, 1, batch=4, micro_batches=4, batches=1, checkpoint=checkpoint)
        assert _outcome("gpipe", plan).step_s == pytest.approx(4 * 3.0 + extra)


def test_one_thread_serialises_every_device():
    costs = StageCosts.uniform(2, forward=1.0, backward=2.0, batch=1)
    plan = _plan(costs, 2, batch=4, micro_batches=4, batches=1, one_thread=True)
    assert _outcome("gpipe", plan).step_s == pytest.approx(4 * 2 * 3.0)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 4), (4, 8)])
def test_1f1b_has_gpipes_makespan_with_at_most_n_micro_batches_in_flight(n, m):
    costs = StageCosts.uniform(n, forward=1.0, backward=2.0, batch=1)
    plan = _plan(costs, n, batch=m, micro_batches=m, batches=1)
    outcome = _outcome("1f1b", plan)
    assert outcome.step_s == pytest.approx((m + n - 1) * 3.0)
    for k in range(n):
        events = sorted([(item.start, 1) for item in outcome.timed.values() if item.task.stage == k
                         and item.task.phase == "FW"]
                        + [(item.end, -1) for item in outcome.timed.values() if item.task.stage == k
                           and item.task.phase == "BW"])
        in_flight, peak = 0, 0
        for _, delta in events:
            in_flight += delta
            peak = max(peak, in_flight)
        assert peak <= n - k <= n


def test_decoupled_stages_reach_the_slowest_stage_per_batch():
    costs = StageCosts(8, (0.2, 0.6, 0.4), (0.1, 0.2, 0.1), (0.5, 1.7, 0.8), (0.2, 0.5, 0.2))
    outcome = _outcome("decoupled", _plan(costs, 3, batches=20, queue_depth=2), warmup=5)
    assert outcome.step_s == pytest.approx(max(costs.stage_total(k) for k in range(3)))
    # the slowest device waits only for the drain of the last batch through the stage after it
    assert outcome.bubble[1] == min(outcome.bubble) < 0.05 < outcome.bubble[0]


def test_decoupled_on_one_device_is_the_sum():
    costs = StageCosts(8, (0.2, 0.6), (0.1, 0.2), (0.5, 1.7), (0.2, 0.5))
    assert _outcome("decoupled", _plan(costs, 1, batches=3), warmup=1).step_s == pytest.approx(costs.total)


def test_scpl_gpipe_hands_all_but_the_last_micro_batch_on_before_the_update():
    costs = StageCosts.uniform(2, forward=4.0, backward=4.0, batch=8)
    whole = _outcome("decoupled", _plan(costs, 2, batches=1)).step_s
    micro = _outcome("decoupled_microbatch", _plan(costs, 2, batches=1, micro_batches=4)).step_s
    # device 0: four forwards (1 each) then its backward (4); the last micro-batch leaves after it,
    # while device 1 has already run the first three forwards
    assert whole == pytest.approx(16.0) and micro == pytest.approx(4 * 1.0 + 4.0 + 1.0 + 4.0)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ddp_all_reduce_follows_the_ring_formula(n):
    link, nbytes = Link("x", 2e-5, 1e9), 8e6
    costs = StageCosts.uniform(1, forward=1.0, backward=2.0, update=0.5, batch=1)
    plan = _plan(costs, 1, batch=n, link=link, parameter_bytes=(nbytes,), batches=1, replicas=n)
    ring = 2e-5 + 2 * (n - 1) / n * nbytes / 1e9
    assert link.all_reduce_s(nbytes, n) == pytest.approx(ring)
    assert _outcome("data_parallel", plan).step_s == pytest.approx(1.0 + 2.0 + ring + 0.5)


def test_every_registered_method_declares_a_schedule_the_simulator_has():
    from bench.predict.schedules import SCHEDULES
    from methods import list_methods, method_class

    for name in list_methods():
        assert method_class(name).schedule_for({}) in SCHEDULES, name
    assert method_class("gpipe_dist").schedule_for({"schedule": "1f1b"}) == "1f1b"
