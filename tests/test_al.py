"""Associated Learning: the inference composition, local-only gradients, the bridge
target option, and the pipelined == sequential invariant."""
import pytest
import torch
import torch.nn.functional as F

from bench.execution import resolve_devices, run_pipelined, run_sequential, stage_devices
from methods import MethodConfig, create_method
from models import create_model


def _batches(n=3, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 4, (batch,), generator=g)) for _ in range(n)]


def _fresh(**options):
    torch.manual_seed(5)
    net = create_model("convnet", num_classes=10, image_size=8)
    return create_method("al", net, MethodConfig(options={"hidden": 16, **options}))


def _params(method):
    return [p.detach().clone() for m in method.modules() for p in m.parameters()]


def test_predict_is_encoders_then_last_bridge_then_decoders_in_reverse():
    al = _fresh()
    x, _ = _batches(1)[0]
    s = x
    for stage in al.model.stages:  # f_1 .. f_K
        s = stage(s)
    t = al.blocks[-1].bridge(s.flatten(1))  # b_K on the reduced last features
    for block in reversed(al.blocks):  # h_K .. h_1
        t = block.label_decoder(t)
    out = al.predict(x)
    assert out.shape == (x.shape[0], 10)  # back in the label space
    assert torch.equal(out, t)


def test_a_later_stage_loss_leaves_earlier_stages_untouched():
    al = _fresh()
    steps = al.stage_steps()
    x, y = _batches(1)[0]
    out0 = steps[0].encode(x, y)  # NOT detached: s and t still depend on stage 0's f and g
    assert out0[0].requires_grad and out0[1].requires_grad
    for p in steps[0].parameters():
        p.grad = None
    steps[1](out0, y)
    assert all(p.grad is None for p in steps[0].parameters())
    assert all(p.grad is not None for p in al.model.stages[1].parameters())


def test_each_stage_trains_f_g_b_h_from_its_own_two_losses():
    """Bridge MSE trains f_k and b_k; autoencoder MSE trains g_k and h_k; targets as specified."""
    al = _fresh()
    step = al.stage_steps()[0]
    x, y = _batches(1)[0]
    s, t, t_in = step.encode(x, y)
    assert torch.equal(t_in, F.one_hot(y, 10).float())  # t_0 = one-hot(y)
    block = al.blocks[0]
    expected = F.mse_loss(block.bridge(s.flatten(1)), block.label_encoder(t_in).detach()) + F.mse_loss(
        block.label_decoder(block.label_encoder(t_in)), t_in
    )
    assert step.objective((s, t, t_in), y).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("detach,g_gets_bridge_gradient", [(None, False), (True, False), (False, True)])
def test_bridge_target_detach_option(detach, g_gets_bridge_gradient):
    """Default: the bridge target g_k(t) is detached, so g_k learns from the autoencoder only."""
    options = {} if detach is None else {"detach_bridge_target": detach}
    al = _fresh(**options)
    step, block = al.stage_steps()[0], al.blocks[0]
    x, y = _batches(1)[0]
    s, t, t_in = step.encode(x, y)
    bridge_only = F.mse_loss(block.bridge(s.flatten(1)), t.detach() if step.objective.detach_target else t)
    grads = torch.autograd.grad(bridge_only, list(block.label_encoder.parameters()), allow_unused=True)
    assert all((g is not None) == g_gets_bridge_gradient for g in grads)


def test_rejects_unknown_option():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        _fresh(bridge="huge")


def test_pipelined_is_bit_identical_to_sequential():
    batches = _batches()
    reference = _fresh()
    devs1 = resolve_devices(1, "cpu", threads_per_device=1)
    reference.place(stage_devices([4], devs1.devices))
    ref_record = run_sequential(reference, batches, devs1, warmup_steps=1)
    piped = _fresh()
    devs2 = resolve_devices(2, "cpu", threads_per_device=1)
    piped.place(stage_devices([2, 2], devs2.devices))
    record = run_pipelined(piped.stage_steps(), [2, 2], devs2, batches, warmup_steps=1)
    for a, b in zip(_params(reference), _params(piped)):
        assert torch.equal(a, b)
    assert record.losses == ref_record.losses
    assert any(a.abs().sum() > 0 for a in _params(reference))


def test_parameter_counts_split_effective_and_affiliated():
    al = _fresh()
    effective, affiliated = al.parameter_counts()
    count = lambda m: sum(p.numel() for p in m.parameters())
    blocks = al.blocks
    assert effective == count(al.model.stages) + count(blocks[-1].bridge) + sum(count(b.label_decoder) for b in blocks)
    assert affiliated == sum(count(b.label_encoder) for b in blocks) + sum(count(b.bridge) for b in blocks[:-1])
