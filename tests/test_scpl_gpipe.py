"""SCPL + GPipe: micro-batches change when a stage computes, not what it learns.

The local loss sees the whole batch (every micro-batch output), so with no batch
norm the update equals plain SCPL's; fed by the 2-device pipelined executor
micro-batch by micro-batch it must still give the same numbers.
"""
import pytest
import torch

from bench.execution import resolve_devices, run_pipelined, run_sequential, stage_devices
from methods import MethodConfig, create_method
from models import create_model

TOL = 1e-6


def _batches(n=3, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def _fresh(name, **options):
    torch.manual_seed(7)
    net = create_model("convnet", num_classes=10, image_size=8)
    # SGD: Adam divides by sqrt(v) + eps, so it blows a ~1e-9 rounding difference in a
    # near-zero gradient up to a full lr-sized step, which would hide real agreement.
    return create_method(name, net, MethodConfig(projector="l", optimizer="sgd", lr=0.05, options=options))


def _params(method):
    return [p.detach().clone() for m in method.modules() for p in m.parameters()]


def _train(method, devices, balance, batches):
    devs = resolve_devices(devices, "cpu", threads_per_device=1)
    method.place(stage_devices(balance, devs.devices))
    if devices > 1:
        return run_pipelined(method.stage_steps(), balance, devs, batches, warmup_steps=1)
    return run_sequential(method, batches, devs, warmup_steps=1)


@pytest.fixture(scope="module")
def plain_scpl():
    method = _fresh("scpl")
    record = _train(method, 1, [4], _batches())
    return _params(method), record.losses


def _assert_same(params, reference, losses, ref_losses):
    assert len(params) == len(reference)
    worst = max((a - b).abs().max().item() for a, b in zip(params, reference))
    assert worst <= TOL, f"parameters differ from plain SCPL's by {worst:.3g}"
    assert losses == pytest.approx(ref_losses, abs=1e-5)


@pytest.mark.parametrize("chunks", [2, 4])
def test_equals_plain_scpl_sequentially(plain_scpl, chunks):
    method = _fresh("scpl_gpipe", chunks=chunks)
    assert all(step.chunks == chunks for step in method.stage_steps())
    record = _train(method, 1, [4], _batches())
    _assert_same(_params(method), *plain_scpl[:1], record.losses, plain_scpl[1])


@pytest.mark.parametrize("chunks,balance", [(2, [2, 2]), (4, [1, 3])])
def test_equals_plain_scpl_on_the_two_device_pipeline(plain_scpl, chunks, balance):
    method = _fresh("scpl_gpipe", chunks=chunks)
    record = _train(method, 2, balance, _batches())
    _assert_same(_params(method), *plain_scpl[:1], record.losses, plain_scpl[1])
    # micro-batches really travel separately: stage intervals are per micro-batch
    assert len(record.stage_intervals) == 4 * chunks * len(_batches())


def test_incompatibility_names_the_reason():
    cls = type(_fresh("scpl_gpipe"))
    assert "multiple of chunks" in cls.incompatibility(modality="vision", batch_size=6, devices=2, options={"chunks": 4})
    assert "vision" in cls.incompatibility(modality="text", batch_size=8, devices=2, options={})
    assert cls.incompatibility(modality="vision", batch_size=8, devices=1, options={"chunks": 4}) is None
