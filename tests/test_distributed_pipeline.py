"""Decoupled stages in one process per device compute what the sequential loop computes."""
import copy
import os
import signal

import pytest
import torch
from test_ranks import assert_gone, deadline_once_stopped, record_pid

from bench.execution import resolve_devices, run_sequential, stage_devices
from bench.execution.distributed_pipeline import launched_by_torchrun, run_distributed_pipeline
from bench.execution.p2p import decode_header, encode_header, flatten, unflatten
from bench.execution.record import NonFiniteLossError
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


def _params(method):
    return [p.detach().clone() for m in method.modules() for p in m.parameters()]


@pytest.fixture(autouse=True)
def _not_under_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
def test_two_gloo_processes_equal_the_sequential_run_bit_for_bit():
    batches = _batches()
    method = _fresh()
    reference = copy.deepcopy(method)
    ref_record = run_sequential(reference, batches, resolve_devices(1, "cpu", threads_per_device=1), warmup_steps=1)

    devices = resolve_devices(2, "cpu", threads_per_device=1)
    method.place(stage_devices([2, 2], devices.devices))
    record = run_distributed_pipeline(method, [2, 2], devices, batches, warmup_steps=1, queue_depth=2, timeout_s=300)

    for a, b in zip(_params(reference), _params(method)):
        assert torch.equal(a, b)
    assert record.losses == ref_record.losses
    assert record.stage_losses == ref_record.stage_losses  # the same stage loop as the threads' records them
    # the optimizer state came back too: one more step keeps the two runs identical
    x, y = batches[0]
    assert method.train_step(x, y) == reference.train_step(x, y)
    for a, b in zip(_params(reference), _params(method)):
        assert torch.equal(a, b)

    # the record reads like run_pipelined's
    assert len(record.completion_times) == len(batches)
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
    method = _fresh()
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    bad = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]  # wrong image size
    with pytest.raises(RuntimeError, match="rank 0"):
        run_distributed_pipeline(method, [2, 2], devices, bad, warmup_steps=0, timeout_s=120)


@pytest.mark.slow
def test_a_nonfinite_loss_keeps_its_status():
    method = _fresh()
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    x, y = _batches(1)[0]
    with pytest.raises(NonFiniteLossError, match="stage 0"):
        run_distributed_pipeline(method, [2, 2], devices, [(x * float("nan"), y)], warmup_steps=0, timeout_s=120)


def test_balance_must_match_the_devices():
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    with pytest.raises(ValueError, match="balance"):
        run_distributed_pipeline(_fresh(), [1, 1, 2], devices, _batches(1), warmup_steps=0)


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


def test_a_stages_extra_state_comes_back_from_its_rank(monkeypatch):
    """DASCPL's accumulation clock crosses the process boundary like its parameters (one in-process
    torchrun-style rank: the same rank loop and absorb, no spawn)."""
    from bench.execution.ranks import free_port

    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", str(free_port()))):
        monkeypatch.setenv(name, value)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]
    torch.manual_seed(123)
    net = create_model("convnet", num_classes=10, image_size=8)  # small: the clock is what is checked
    method = create_method("dascpl", net, MethodConfig(projector="i", options={"trigger_steps": [1, 2, 3]}))
    reference = copy.deepcopy(method)
    run_sequential(reference, batches, resolve_devices(1, "cpu", threads_per_device=1), warmup_steps=0)
    run_distributed_pipeline(method, [4], resolve_devices(1, "cpu", threads_per_device=1), batches, warmup_steps=0)
    assert method.extra_state() == reference.extra_state() == {"stages": {k: {"calls": 3} for k in range(4)}}
    assert all(torch.equal(a, b) for a, b in zip(_params(reference), _params(method)))


def test_torchrun_is_detected_from_the_environment(monkeypatch):
    assert not launched_by_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert launched_by_torchrun()


@pytest.mark.slow
def test_profiled_ranks_write_one_trace_each_and_leave_the_method_alone(tmp_path):
    from bench.profiling.profiler import profiled_rank
    from bench.profiling.trace_events import load_trace_dir

    method = _fresh()
    before = _params(method)
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    wrap = lambda fn, args: (profiled_rank, (fn, str(tmp_path), False, "cell", *args))  # noqa: E731
    record = run_distributed_pipeline(method, [2, 2], devices, _batches(3), warmup_steps=0, timeout_s=300,
                                      rank_wrapper=wrap, absorb_results=False)
    assert len(record.completion_times) == 3
    assert all(torch.equal(a, b) for a, b in zip(before, _params(method)))
    files = sorted(p.name for p in tmp_path.glob("*.pt.trace.json"))
    assert [f.split(".")[0] for f in files] == ["cell-rank0", "cell-rank1"]
    stages = {e.stage for e in load_trace_dir(tmp_path).phases}  # both ranks on one timeline
    assert stages == {0, 1, 2, 3}


def fault_at_batch(rank: int, world: int, device, inner, pid_dir: str, victim: int, stage: int, batch: int,
                   fault: str, *args):
    """The pipeline's rank job, in which rank `victim` exits or stops as its `stage` starts on `batch`."""
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
    return inner(rank, world, device, *args)


def _with_fault(tmp_path, victim: int, stage: int, fault: str):
    # at batch 1: both ranks have passed the start barrier, so both pids are recorded
    return lambda fn, args: (fault_at_batch, (fn, str(tmp_path), victim, stage, 1, fault, *args))


@pytest.mark.slow
def test_a_rank_that_exits_mid_run_ends_the_pipeline(tmp_path):
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    with pytest.raises(RuntimeError, match="rank 1: exited with code 3"):
        run_distributed_pipeline(_fresh(), [2, 2], devices, _batches(4), warmup_steps=0, timeout_s=600,
                                 rank_wrapper=_with_fault(tmp_path, victim=1, stage=2, fault="exit"))
    assert_gone(tmp_path)


@pytest.mark.slow
def test_a_rank_that_stops_mid_run_ends_the_pipeline_at_its_timeout(tmp_path, monkeypatch):
    deadline_once_stopped(monkeypatch, tmp_path, rank=0)
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    with pytest.raises(TimeoutError, match="did not report within 600 s"):
        run_distributed_pipeline(_fresh(), [2, 2], devices, _batches(4), warmup_steps=0, timeout_s=600,
                                 rank_wrapper=_with_fault(tmp_path, victim=0, stage=0, fault="stop"))
    assert_gone(tmp_path)
