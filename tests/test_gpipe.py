"""GPipe (torchgpipe and torch.distributed.pipelining) and DDP compute BP's update.

Without batch norm, micro-batching and data parallelism change *where* the
arithmetic happens, not what it is: after one step on the same batch every
gradient and every parameter must equal BP's on one device (to float rounding).
The ConvNet has no batch norm, which is why it is the model here.
"""
import copy

import pytest
import torch

from bench.execution import resolve_devices, stage_devices
from bench.execution.processes import record_from_ranks, run_ranks
from methods import MethodConfig, create_method
from models import create_model

TOL = 1e-6


def _batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _fresh(name, **options):
    """Same initial weights for every method (seeded), a small 8x8 ConvNet without batch norm."""
    torch.manual_seed(1)
    net = create_model("convnet", num_classes=10, image_size=8)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    return create_method(name, net, MethodConfig(optimizer="sgd", lr=0.1, options=options))


@pytest.fixture(scope="module")
def bp_after_one_step():
    x, y = _batch()
    bp = _fresh("bp")
    bp.place([torch.device("cpu")] * 4)
    loss = bp.train_step(x, y)
    grads = {n: p.grad.clone() for n, p in bp.model.named_parameters()}
    params = {n: p.detach().clone() for n, p in bp.model.named_parameters()}
    return loss, grads, params


def _assert_close(named, reference, what):
    assert set(named) == set(reference), f"{what}: parameter names differ"
    worst = max((named[n] - reference[n]).abs().max().item() for n in reference)
    assert worst <= TOL, f"{what} differs from BP's by {worst:.3g}"


@pytest.mark.parametrize("chunks", [2, 4])
@pytest.mark.parametrize("balance", [[2, 2], [1, 3]])
def test_torchgpipe_equals_bp(bp_after_one_step, chunks, balance):
    bp_loss, bp_grads, bp_params = bp_after_one_step
    x, y = _batch()
    gpipe = _fresh("gpipe", chunks=chunks)
    gpipe.place(stage_devices(balance, [torch.device("cpu")] * 2), balance)
    assert len(gpipe.pipe.partitions) == 2 and gpipe.pipe.chunks == chunks
    loss = gpipe.train_step(x, y)
    assert loss == pytest.approx(bp_loss, abs=TOL)
    _assert_close({n: p.grad for n, p in gpipe.model.named_parameters()}, bp_grads, "torchgpipe gradient")
    _assert_close(dict(gpipe.model.named_parameters()), bp_params, "torchgpipe parameters")


def _run_process_method(method, devices, balance, batches):
    fn, args = method.rank_job(batches, balance, 0)
    results = run_ranks(fn, resolve_devices(devices, "cpu", threads_per_device=1), args, timeout_s=120)
    grads = {}
    for result in results:
        grads.update(result["grads"])
    return results, grads


def test_distributed_pipelining_equals_bp(bp_after_one_step):
    """One process per stage group (gloo), 4 micro-batches, uneven split: BP's numbers."""
    bp_loss, bp_grads, bp_params = bp_after_one_step
    x, y = _batch()
    method = _fresh("gpipe_dist", chunks=4)
    results, grads = _run_process_method(method, 2, [1, 3], [(x, y)])
    _assert_close(grads, bp_grads, "gpipe_dist gradient")
    method.absorb(results)
    _assert_close(dict(method.model.named_parameters()), bp_params, "gpipe_dist parameters")
    assert record_from_ranks(results, 0).losses[0] == pytest.approx(bp_loss, abs=TOL)


def test_ddp_on_two_processes_equals_bp_on_one(bp_after_one_step):
    """Each rank sees half the global batch; averaged gradients give BP's whole-batch update.

    Also guards the hand-over: if the ranks shared the parent's weights (tensors
    passed as shared memory) each rank would apply the step to the same storage
    and the update would be doubled, and the parent's model would change before
    `absorb`.
    """
    bp_loss, bp_grads, bp_params = bp_after_one_step
    x, y = _batch()
    method = _fresh("ddp")
    before = copy.deepcopy(method.model.state_dict())
    results, grads = _run_process_method(method, 2, [2, 2], [(x, y)])
    for name, tensor in method.model.state_dict().items():
        assert torch.equal(tensor, before[name]), "a rank changed the parent's weights in place"
    _assert_close(grads, bp_grads, "ddp gradient")
    method.absorb(results)
    _assert_close(dict(method.model.named_parameters()), bp_params, "ddp parameters")
    assert record_from_ranks(results, 0).losses[0] == pytest.approx(bp_loss, abs=TOL)


@pytest.mark.parametrize("name,options,balance", [("ddp", {}, [2, 2]), ("gpipe_dist", {"chunks": 2}, [2, 2])])
def test_untimed_steps_in_the_parent_then_ranks_continue_bp(name, options, balance):
    """`train_steps` run in the parent (BP's step); the ranks pick up weights *and* optimizer state.

    SGD with momentum: if the momentum buffers were not handed over, the third
    update would differ from BP's.
    """
    batches = [_batch(seed) for seed in range(3)]
    bp = _fresh("bp")
    for x, y in batches:
        bp.train_step(x, y)
    method = _fresh(name, **options)
    method.place([torch.device("cpu")] * 4)
    for x, y in batches[:2]:
        method.train_step(x, y)
    results, _ = _run_process_method(method, 2, balance, batches[2:])
    method.absorb(results)
    _assert_close(dict(method.model.named_parameters()), dict(bp.model.named_parameters()), f"{name} parameters")


def test_torchgpipe_method_survives_a_deep_copy_after_a_step():
    """The harness deep-copies a placed method (training-memory probe, profiled run).

    On CPU torchgpipe's copy streams are the `CPUStream` sentinel, recognised by
    identity; a deep copy of it was taken for a CUDA stream and the copy's first
    forward raised "'CPUStreamType' object has no attribute 'device'", failing every
    2-device gpipe cell.  The copy must train, on its own parameters, like the original.
    """
    x, y = _batch()
    gpipe = _fresh("gpipe", chunks=2)
    gpipe.place(stage_devices([2, 2], [torch.device("cpu")] * 2), [2, 2])
    gpipe.train_step(x, y)  # fills torchgpipe's stream cache
    twin = copy.deepcopy(gpipe)
    assert twin.pipe._copy_streams is not gpipe.pipe._copy_streams
    assert not any(p is q for p, q in zip(twin.pipe.parameters(), gpipe.pipe.parameters()))
    assert twin.optimizer.param_groups[0]["params"][0] is next(twin.pipe.parameters())
    assert twin.train_step(x, y) == pytest.approx(gpipe.train_step(x, y), abs=TOL)
    _assert_close(dict(twin.model.named_parameters()), dict(gpipe.model.named_parameters()), "copy's parameters")
