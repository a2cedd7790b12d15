"""DASCPL: per-stage predictors on detached features, SupCon + CE stage loss,
and dynamic layer accumulation (forward and reverse, in steps and in epochs)."""
import copy
import math

import pytest
import torch

from methods import MethodConfig, create_method
from methods.dascpl import accumulation_schedules
from models import create_model


def _batches(n=1, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def _fresh(projector="i", **options):
    torch.manual_seed(3)
    net = create_model("convnet", num_classes=10, image_size=8)
    return create_method("dascpl", net, MethodConfig(projector=projector, options={"predictor": "l", **options}))


def _closed_form_supcon_reference(z, labels, tau):
    """SCPL reference SupCon, one anchor at a time (positives / (|P(i)| + 1), mean over all anchors)."""
    z = torch.nn.functional.normalize(z, dim=1).tolist()
    n = len(z)
    dot = lambda a, b: sum(p * q for p, q in zip(a, b))
    total = 0.0
    for i in range(n):
        denom = sum(math.exp(dot(z[i], z[k]) / tau) for k in range(n) if k != i)
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        total += -sum(dot(z[i], z[j]) / tau - math.log(denom) for j in pos) / (len(pos) + 1)
    return total / n


def _closed_form_cross_entropy(logits, labels):
    rows = logits.tolist()
    return sum(math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(rows, labels)) / len(rows)


@pytest.mark.parametrize("k", [0, 3])
def test_stage_loss_is_supcon_plus_predictor_cross_entropy(k):
    """The last stage adds the head's CE beside its own predictor's (DASCPL model/vision_multi.py:395)."""
    method = _fresh()
    x, y = _batches()[0]
    with torch.no_grad():
        for stage in method.model.stages[:k]:
            x = stage(x)
    step = method.stage_steps()[k]
    out = step.encoder(x).double()
    step.objective.double()
    features = out.flatten(1)
    predictor = method.predictors[k]
    expected = _closed_form_supcon_reference(features, y.tolist(), 0.1) + _closed_form_cross_entropy(
        predictor(features), y.tolist()
    )
    if k == method.model.num_stages - 1:
        expected += _closed_form_cross_entropy(method.model.head(features), y.tolist())
    assert step.objective(out, y).item() == pytest.approx(expected, rel=1e-9)


def test_predictor_trains_on_detached_features():
    """The stage's gradient is that of SupCon alone; the predictor gets the CE gradient."""
    method = _fresh()
    x, y = _batches()[0]
    step = method.stage_steps()[0]
    out = step.encoder(x)
    loss = step.objective(out, y)
    encoder_params = list(step.encoder.parameters())
    predictor_params = list(method.predictors[0].parameters())
    full = torch.autograd.grad(loss, encoder_params + predictor_params, retain_graph=True)
    from methods.losses import supcon_loss

    supcon_only = torch.autograd.grad(supcon_loss(out.flatten(1), y), encoder_params)
    for a, b in zip(full[: len(encoder_params)], supcon_only):
        assert torch.allclose(a, b, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in full[len(encoder_params):])


def test_every_stage_has_a_predictor_and_the_last_also_the_head():
    """As the reference (model/vision_multi.py:303-307, 464-470): K predictors and the head, K + 1 exits."""
    method = _fresh()
    stages = method.model.num_stages
    classifiers = method.exit_classifiers()
    assert len(classifiers) == stages + 1 and len(method.predictors) == stages
    assert classifiers[-1] is method.model.head and method.model.head not in list(method.predictors)
    assert method.exit_stages() == list(range(stages)) + [stages - 1]
    for classifier, dim in zip(classifiers[:-1], method.model.feature_dims):
        assert classifier.in_features == dim and classifier.out_features == 10
    # the last predictor is affiliated (training only); the deployed network is SCPL's: stages then head
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert method.parameter_counts() == (count(method.model), count(method.projectors) + count(method.predictors))
    assert count(method.predictors[-1]) == method.model.feature_dims[-1] * 10 + 10  # Linear(d, 10): the last predictor
    # the last stage's step trains its predictor and the head, on detached features
    last = method.stage_steps()[-1]
    trained = {id(p) for p in last.parameters()}
    assert {id(p) for p in method.predictors[-1].parameters()} <= trained
    assert {id(p) for p in method.model.head.parameters()} <= trained


def test_last_predictor_and_head_learn_from_detached_features():
    method = _fresh()
    x, y = _batches()[0]
    with torch.no_grad():
        for stage in method.model.stages[:-1]:
            x = stage(x)
    step = method.stage_steps()[-1]
    out = step.encoder(x)
    loss = step.objective(out, y)
    encoder_params = list(step.encoder.parameters())
    from methods.losses import supcon_loss

    full = torch.autograd.grad(loss, encoder_params, retain_graph=True)
    supcon_only = torch.autograd.grad(supcon_loss(out.flatten(1), y), encoder_params)
    for a, b in zip(full, supcon_only):
        assert torch.allclose(a, b, atol=1e-7)
    head_and_predictor = list(method.predictors[-1].parameters()) + list(method.model.head.parameters())
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(loss, head_and_predictor))


# --- dynamic layer accumulation ------------------------------------------------------------

def _snapshot(method):
    return [[p.detach().clone() for p in stage.parameters()] for stage in method.model.stages]


def _changed(before, after):
    return [any(not torch.equal(a, b) for a, b in zip(s0, s1)) for s0, s1 in zip(before, after)]


def _train_and_track(method, steps):
    """Which stages changed on each of `steps` batches."""
    changes = []
    for x, y in _batches(steps, seed=1):
        before = _snapshot(method)
        method.train_step(x, y)
        changes.append(_changed(before, _snapshot(method)))
    return changes


def test_forward_accumulation_starts_each_stage_after_its_trigger():
    method = _fresh(trigger_steps=[1, 2, 3])
    changes = _train_and_track(method, 4)
    assert changes == [
        [True, False, False, False],  # batch 0: stage 1 only; later stages skipped (forward shortcut)
        [True, True, False, False],   # trigger 1 reached: stage 2 starts
        [True, True, True, False],
        [True, True, True, True],
    ]


def test_reverse_accumulation_freezes_stages_from_the_last_but_one_down():
    """METHODS.md: reverse stops stage 3 at trigger 1, stage 2 at trigger 2, stage 1 at trigger 3."""
    method = _fresh(trigger_steps=[1, 2, 3], accumulation="reverse")
    changes = _train_and_track(method, 4)
    assert changes == [
        [True, True, True, True],
        [True, True, False, True],
        [True, False, False, True],
        [False, False, False, True],  # the last stage never stops
    ]


def test_trigger_epochs_are_counted_in_steps_per_epoch():
    method = _fresh(trigger_epochs=[1, 2, 2], steps_per_epoch=2)
    changes = _train_and_track(method, 5)
    assert [c[1] for c in changes] == [False, False, True, True, True]  # stage 2 after 1 epoch = 2 steps
    assert [c[2] for c in changes] == [False, False, False, False, True]  # stage 3 after 2 epochs
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _fresh(trigger_epochs=[1, 2, 3])


def test_accumulation_rejects_bad_triggers():
    with pytest.raises(ValueError, match="3 triggers"):
        accumulation_schedules(4, [1, 2], "forward")
    with pytest.raises(ValueError, match="non-decreasing"):
        accumulation_schedules(4, [3, 1, 2], "forward")
    with pytest.raises(ValueError, match="'forward' or 'reverse'"):
        accumulation_schedules(4, [1, 2, 3], "sideways")


@pytest.mark.parametrize("name", ["scpl", "dascpl"])
def test_the_head_never_trains_the_last_stage(name):
    """METHODS.md: the head learns from detached last features; the backbone only from SupCon."""
    torch.manual_seed(3)
    net = create_model("convnet", num_classes=10, image_size=8)
    method = create_method(name, net, MethodConfig(projector="i"))
    x, y = _batches()[0]
    with torch.no_grad():
        for stage in net.stages[:-1]:
            x = stage(x)
    step = method.stage_steps()[-1]
    out = step.encoder(x)
    encoder_params = list(step.encoder.parameters())
    full = torch.autograd.grad(step.objective(out, y), encoder_params + list(net.head.parameters()), retain_graph=True)
    from methods.losses import supcon_loss

    for a, b in zip(full, torch.autograd.grad(supcon_loss(out.flatten(1), y), encoder_params)):
        assert torch.allclose(a, b, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in full[len(encoder_params):])  # the head does learn


def test_the_accumulation_clock_is_extra_state_a_resumed_method_goes_on_from():
    """A method restored with the counters trains exactly as the one that kept running."""
    batches = _batches(4)
    running = _fresh(trigger_steps=[1, 2, 3])
    for x, y in batches[:2]:
        running.train_step(x, y)
    state = running.extra_state()
    assert state == {"stages": {k: {"calls": 2} for k in range(4)}}
    resumed = _fresh(trigger_steps=[1, 2, 3])
    for mine, theirs in zip(resumed.modules(), running.modules()):
        mine.load_state_dict(theirs.state_dict())
    for mine, theirs in zip(resumed.optimizers(), running.optimizers()):
        mine.load_state_dict(copy.deepcopy(theirs.state_dict()))  # else both would step the same moments
    resumed.load_extra_state(state)
    for x, y in batches[2:]:
        assert resumed.train_step(x, y) == running.train_step(x, y)
    assert resumed.extra_state() == running.extra_state()


def test_the_cell_supplies_steps_per_epoch_only_for_trigger_epochs():
    from methods import method_class

    dascpl = method_class("dascpl")
    assert dascpl.harness_options({"trigger_epochs": [1, 2, 2]}, steps_per_epoch=7) == {
        "trigger_epochs": [1, 2, 2], "steps_per_epoch": 7}
    assert dascpl.harness_options({"trigger_steps": [1, 2, 3]}, steps_per_epoch=7) == {"trigger_steps": [1, 2, 3]}
    assert method_class("scpl").harness_options({}, steps_per_epoch=7) == {}
