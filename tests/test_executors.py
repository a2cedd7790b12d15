"""Where stages run must not change what they compute; decoupled stages really overlap."""
import functools
import threading

import pytest
import torch

from bench.execution import resolve_devices, run_pipelined, run_sequential, stage_devices
from methods import MethodConfig, create_method
from models import create_model


def _batches(n=4, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def _fresh(method_name, model="convnet", projector="l"):
    torch.manual_seed(123)
    net = create_model(model, num_classes=10)
    return create_method(method_name, net, MethodConfig(projector=projector))


def _params(method):
    return [p.detach().clone() for m in method.modules() for p in m.parameters()]


def _train(method_name, devices, balance, batches):
    method = _fresh(method_name)
    devs = resolve_devices(devices, "cpu", threads_per_device=1)
    method.place(stage_devices(balance, devs.devices))
    if method.decoupled and devices > 1:
        record = run_pipelined(method.stage_steps(), balance, devs, batches, warmup_steps=1)
    else:
        record = run_sequential(method, batches, devs, warmup_steps=1)
    return method, record


@functools.lru_cache(maxsize=None)
def _sequential_scpl():
    """SCPL on one device over `_batches()`, trained once: the reference every split below is compared with."""
    return _train("scpl", 1, [4], _batches())


@pytest.mark.parametrize("devices,balance", [(2, [2, 2]), (2, [1, 3]), (4, [1, 1, 1, 1])])
def test_scpl_pipelined_is_bit_identical_to_sequential(devices, balance):
    reference, ref_record = _sequential_scpl()
    piped, record = _train("scpl", devices, balance, _batches())
    for a, b in zip(_params(reference), _params(piped)):
        assert torch.equal(a, b)
    assert record.losses == ref_record.losses
    assert record.stage_losses == ref_record.stage_losses


def test_bp_on_n_devices_equals_bp_on_one():
    batches = _batches()
    one, _ = _train("bp", 1, [4], batches)
    four, _ = _train("bp", 4, [1, 1, 1, 1], batches)
    for a, b in zip(_params(one), _params(four)):
        assert torch.equal(a, b)


def test_no_gradient_reaches_an_earlier_stage():
    method = _fresh("scpl")
    steps = method.stage_steps()
    x, y = _batches(1)[0]
    first_stage = method.model.stages[0]
    out = first_stage(x)  # NOT detached: still attached to stage 0's parameters
    assert out.requires_grad
    for p in first_stage.parameters():
        p.grad = None
    steps[1](out, y)
    assert all(p.grad is None for p in first_stage.parameters())
    # and stage 1 itself did learn from its own loss
    assert all(p.grad is not None for p in method.model.stages[1].parameters())


def test_each_stage_gradient_comes_from_its_own_loss_only():
    """After a full SCPL step, stage 0's gradient equals that of its local loss alone."""
    method = _fresh("scpl")
    x, y = _batches(1)[0]
    import copy

    alone = copy.deepcopy(method)
    alone_step = alone.stage_steps()[0]
    alone_step.optimizer.zero_grad()
    loss = alone_step.objective(alone_step.encoder(x), y)
    loss.backward()
    method.train_step(x, y)
    for p_full, p_alone in zip(method.stage_steps()[0].encoder.parameters(), alone_step.encoder.parameters()):
        assert torch.allclose(p_full.grad, p_alone.grad, atol=1e-7)


class _MeetAt:
    """A stage step that waits at `barrier` inside its `batch`-th step (its timed interval).

    Two steps on different devices that meet at one barrier are busy at the same
    time by construction, however the threads are scheduled; an executor that
    joined its devices after every batch could never let them meet, and the
    barrier's timeout fails the run instead of a race deciding it.
    """

    def __init__(self, step, batch: int, barrier: threading.Barrier):
        self._step, self._batch, self._barrier, self._seen = step, batch, barrier, 0

    def __getattr__(self, name):
        return getattr(self._step, name)

    def accept(self, x, y, chunk, chunks):
        if self._seen == self._batch:
            self._barrier.wait()
        self._seen += 1
        return self._step.accept(x, y, chunk, chunks)


def test_pipelined_stages_overlap_in_time():
    """Stage 1 works on batch t while stage 0 already works on batch t+1 (not joined every batch)."""
    method = _fresh("scpl")
    devs = resolve_devices(2, "cpu", threads_per_device=1)
    method.place(stage_devices([2, 2], devs.devices))
    meet = threading.Barrier(2, timeout=60)
    steps = list(method.stage_steps())
    steps[0] = _MeetAt(steps[0], batch=1, barrier=meet)  # device 0 on batch 1 ...
    steps[2] = _MeetAt(steps[2], batch=0, barrier=meet)  # ... while device 1 is still on batch 0
    try:
        record = run_pipelined(steps, [2, 2], devs, _batches(n=6), warmup_steps=1)
    except threading.BrokenBarrierError:
        pytest.fail("device 0 never started batch 1 while device 1 worked on batch 0: stages joined every batch")
    by_device = {0: [], 1: []}
    for stage, batch, start, end in record.stage_intervals:
        by_device[0 if stage < 2 else 1].append((batch, start, end))
    overlaps = [
        (b0, b1)
        for b0, s0, e0 in by_device[0]
        for b1, s1, e1 in by_device[1]
        if s0 < e1 and s1 < e0 and b0 > b1
    ]
    assert overlaps, "no stage of device 0 ran on a later batch while device 1 worked"


def test_worker_failure_is_raised_not_hung():
    method = _fresh("scpl")
    devs = resolve_devices(2, "cpu", threads_per_device=1)
    bad = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]  # wrong image size
    with pytest.raises(RuntimeError):
        run_pipelined(method.stage_steps(), [2, 2], devs, bad, warmup_steps=0)
