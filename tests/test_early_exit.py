"""Early Exit: each stage trains on the cross-entropy of its own classifier, nothing crosses stages."""
import copy

import pytest
import torch
import torch.nn.functional as F

from methods import MethodConfig, create_method
from models import create_model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 4, (6,), generator=g)


def _fresh():
    torch.manual_seed(4)
    return create_method("early_exit", create_model("convnet", num_classes=4, image_size=8), MethodConfig())


def test_stage_gradient_is_that_of_its_own_exit_cross_entropy():
    method = _fresh()
    alone = copy.deepcopy(method)
    x, y = _batch()
    # by hand: stage k's input is stage k-1's output (no grad), the loss is CE of exit k
    expected, losses = [], []
    h = x
    for k, (stage, classifier) in enumerate(zip(alone.model.stages, alone.exit_classifiers())):
        h = h.detach()
        out = stage(h)
        loss = F.cross_entropy(classifier(out.flatten(1)), y)
        losses.append(float(loss.detach()))
        expected.append(torch.autograd.grad(loss, list(stage.parameters()) + list(classifier.parameters())))
        h = out
    total = method.train_step(x, y)
    assert total == pytest.approx(sum(losses), rel=1e-6)  # the summed exit cross-entropies, by hand
    for k, (stage, classifier) in enumerate(zip(method.model.stages, method.exit_classifiers())):
        got = [p.grad for p in list(stage.parameters()) + list(classifier.parameters())]
        for a, b in zip(got, expected[k]):
            assert torch.allclose(a, b, atol=1e-7), f"stage {k}"


def test_no_gradient_reaches_an_earlier_stage():
    method = _fresh()
    steps = method.stage_steps()
    x, y = _batch()
    out = steps[0].encoder(x)  # still attached to stage 1's parameters
    assert out.requires_grad
    steps[1](out, y)
    assert all(p.grad is None for p in method.model.stages[0].parameters())
    assert all(p.grad is not None for p in method.model.stages[1].parameters())


def test_one_exit_per_stage_the_last_is_the_deployed_head():
    method = _fresh()
    classifiers = method.exit_classifiers()
    assert len(classifiers) == method.model.num_stages and classifiers[-1] is method.model.head
    x, _ = _batch()
    assert torch.equal(method.predict(x), method.model(x))  # reference inference: the final head
    effective, affiliated = method.parameter_counts()
    assert affiliated == sum(p.numel() for c in classifiers[:-1] for p in c.parameters())


def test_loss_decreases_when_training_on_one_batch():
    method = _fresh()
    x, y = _batch()
    losses = [method.train_step(x, y) for _ in range(8)]
    assert losses[-1] < losses[0]
