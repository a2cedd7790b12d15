"""Decoupled stages in one process per device (`executor: processes`) compute what the sequential loop computes.

Each rank builds the method itself and keeps its stage group for every
segment it trains (bench/execution/rank_loops.py `StageGroupLoop`), as the
ranks of a distributed cell do for the whole cell.
"""
import functools
import os
import signal

import pytest
import torch
from rank_jobs import context, one_rank_group, rank_loop_job, train_segments
from test_ranks import assert_gone, deadline_once_stopped, record_pid

from bench.execution import resolve_devices, run_sequential
from bench.execution.p2p import decode_header, encode_header, flatten, unflatten
from bench.execution.rank_context import pipeline_context
from bench.execution.ranks import RanksFailed, run_ranks
from methods import MethodConfig, create_method
from methods.base import StageStep
from models import create_model


def _batches(n=4, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def _fresh(method_name="scpl", **options):
    torch.manual_seed(123)
    net = create_model("convnet", num_classes=10)
    return create_method(method_name, net, MethodConfig(projector="l", options=options))


def _steps_state(method) -> dict:
    return {f"step{k}.{n}": p.detach().clone() for k, step in enumerate(method.stage_steps())
            for n, p in step.named_parameters()}


def _run(segments, balance=(2, 2), timeout_s=300, **job):
    devices = resolve_devices(len(balance), "cpu", threads_per_device=1)
    return run_ranks(functools.partial(rank_loop_job, **job), devices, (_fresh, list(balance), segments),
                     timeout_s=timeout_s)


@pytest.mark.slow
def test_two_gloo_processes_equal_the_sequential_run_bit_for_bit():
    """Two segments through the same ranks (their stages, optimizers and clocks live on between them)."""
    batches = _batches()
    reference = _fresh()
    ref_record = run_sequential(reference, batches, resolve_devices(1, "cpu", threads_per_device=1), warmup_steps=0)

    results = _run([batches[:3], batches[3:]])
    params = {n: t for r in results for n, t in r["params"].items()}
    expected = _steps_state(reference)
    assert params.keys() == expected.keys() and all(torch.equal(params[k], expected[k]) for k in expected)
    first, second = results[0]["records"]
    assert first.losses + second.losses == ref_record.losses
    assert [a + b for a, b in zip(first.stage_losses, second.stage_losses)] == ref_record.stage_losses

    # the record reads like run_pipelined's
    record = first
    assert len(record.completion_times) == 3
    assert record.completion_times == sorted(record.completion_times)
    assert record.start_time < record.completion_times[0]
    assert len(record.device_busy_s) == 2 and all(b > 0 for b in record.device_busy_s)
    assert all(b > 0 for b in record.stage_busy_s)
    assert {iv[0] for iv in record.stage_intervals} == {0, 1, 2, 3}
    # rank 0 ran ahead: its stages worked on a later batch while rank 1 worked on an earlier one
    assert any(
        s0 < e1 and s1 < e0 and b0 > b1
        for k0, b0, s0, e0 in record.stage_intervals if k0 < 2
        for k1, b1, s1, e1 in record.stage_intervals if k1 >= 2
    )


@pytest.mark.slow
def test_a_failing_rank_is_raised_not_hung():
    bad = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]  # wrong image size
    with pytest.raises(RuntimeError, match="rank 0"):
        _run([bad], timeout_s=120)


@pytest.mark.slow
def test_a_nonfinite_loss_is_named():
    x, y = _batches(1)[0]
    with pytest.raises(RanksFailed, match="NonFiniteLossError: loss is nan at stage 0"):
        _run([[(x * float("nan"), y)]], timeout_s=120)


def test_balance_must_match_the_ranks():
    with pytest.raises(ValueError, match="balance"):
        pipeline_context(0, 2, torch.device("cpu"), [1, 1, 2])


def test_headers_round_trip_tensors_and_text_payloads():
    y = torch.zeros(4, dtype=torch.long)
    payloads = [
        torch.randn(4, 8, 5, 5),
        (torch.randn(4, 7, 16), torch.ones(4, 7, dtype=torch.bool), None, torch.randn(2, 4, 16)),
    ]
    for x in payloads:
        layout, tensors = flatten(x, y)
        decoded_layout, specs = decode_header(encode_header(layout, tensors, torch.device("cpu")))
        assert decoded_layout == layout
        rebuilt = [None if s is None else torch.zeros(s[1], dtype=s[0]) for s in specs]
        assert [None if t is None else (t.dtype, tuple(t.shape)) for t in rebuilt] == \
               [None if t is None else (t.dtype, tuple(t.shape)) for t in tensors]
        x2, y2 = unflatten(decoded_layout, rebuilt)
        assert type(x2) is type(x) and y2.shape == y.shape


def test_a_stages_extra_state_lives_on_in_its_rank():
    """DASCPL's accumulation clock is kept by the rank between segments (one in-process rank)."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]

    def build():
        torch.manual_seed(123)
        net = create_model("convnet", num_classes=10, image_size=8)  # small: the clock is what is checked
        return create_method("dascpl", net, MethodConfig(projector="i", options={"trigger_steps": [1, 2, 3]}))

    reference, method = build(), build()
    run_sequential(reference, batches, resolve_devices(1, "cpu", threads_per_device=1), warmup_steps=0)
    with one_rank_group():
        train_segments(method, context(method, 0, 1, torch.device("cpu"), [4]), [batches[:1], batches[1:]])
    assert method.extra_state() == reference.extra_state() == {"stages": {k: {"calls": 3} for k in range(4)}}
    assert all(torch.equal(a, b) for a, b in zip(_steps_state(reference).values(), _steps_state(method).values()))


def fault_at_batch(pid_dir: str, victim: int, stage: int, batch: int, fault: str, rank: int) -> None:
    """In rank `victim`, exit or stop as its `stage` starts on `batch`."""
    record_pid(pid_dir, rank)
    if rank == victim:
        accept, seen = StageStep.accept, [0]

        def faulty(step, x, y, chunk, chunks):
            if step.index == stage:
                if seen[0] == batch and fault == "exit":
                    os._exit(3)
                if seen[0] == batch and fault == "stop":
                    os.kill(os.getpid(), signal.SIGSTOP)
                seen[0] += 1
            return accept(step, x, y, chunk, chunks)

        StageStep.accept = faulty  # in this rank's process only


def _with_fault(tmp_path, victim: int, stage: int, fault: str):
    # at batch 1: both ranks have passed the start barrier, so both pids are recorded
    return functools.partial(fault_at_batch, str(tmp_path), victim, stage, 1, fault)


@pytest.mark.slow
def test_a_rank_that_exits_mid_run_ends_the_pipeline(tmp_path):
    with pytest.raises(RuntimeError, match="rank 1: exited with code 3"):
        _run([_batches(4)], timeout_s=600, fault=_with_fault(tmp_path, victim=1, stage=2, fault="exit"))
    assert_gone(tmp_path)


@pytest.mark.slow
def test_a_rank_that_stops_mid_run_ends_the_pipeline_at_its_timeout(tmp_path, monkeypatch):
    deadline_once_stopped(monkeypatch, tmp_path, rank=0)
    with pytest.raises(TimeoutError, match="did not report within 600 s"):
        _run([_batches(4)], timeout_s=600, fault=_with_fault(tmp_path, victim=0, stage=0, fault="stop"))
    assert_gone(tmp_path)
