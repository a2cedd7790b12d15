"""Learning-rate schedules: the cosine schedule's values at known epochs, one scheduler per optimizer."""
import math

import pytest
import torch

from data import get_spec
from methods import MethodConfig, create_method
from methods.schedules import cosine_lr, make_schedulers
from models.build import build_model

# no optimizer step in these tests: torch warns that the scheduler stepped first
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


def _lrs(schedule: str, epochs: int, lr: float = 1e-3, lr_min: float = 1e-5) -> list[float]:
    """The lr each epoch trains at, stepping once per epoch as a training run does."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = make_schedulers([optimizer], schedule, epochs, lr_min)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        for s in schedulers:
            s.step()
    return seen


def test_cosine_at_known_epochs_matches_the_papers_schedule():
    lrs = _lrs("cosine", 200)
    assert lrs[0] == pytest.approx(1e-3)  # epoch 1 trains at the full lr
    assert lrs[100] == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # epoch 101: half way (cos(pi/2) = 0)
    assert lrs[199] == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * 199 / 200)) / 2)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # never rises within T_max
    for epoch in (1, 50, 101, 150, 200):
        assert lrs[epoch - 1] == pytest.approx(cosine_lr(epoch, 200, 1e-3, 1e-5), rel=1e-9)


def _reference_lr(base_lr: float, end_lr: float, step: int, max_steps: int) -> float:
    """The references' hand-written cosine (SCPL main.py:19-23; DASCPL utils/utils.py:253-257, 271-275)."""
    q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
    return base_lr * q + end_lr * (1 - q)


@pytest.mark.parametrize("epochs,steps_per_epoch", [(200, 49), (7, 3)])
def test_cosine_rates_equal_the_references_per_epoch_rates(epochs, steps_per_epoch):
    """The references set the rate at each epoch's start from the steps done (SCPL main.py:296)."""
    lrs = _lrs("cosine", epochs)
    max_steps = epochs * steps_per_epoch
    for epoch in range(1, epochs + 1):
        done = (epoch - 1) * steps_per_epoch
        assert lrs[epoch - 1] == pytest.approx(_reference_lr(1e-3, 1e-5, done, max_steps), rel=1e-9)


def test_constant_keeps_the_lr():
    assert _lrs("constant", 5) == [1e-3] * 5


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        make_schedulers([], "step", 3)


def test_every_stage_optimizer_and_the_coupled_one_get_a_scheduler():
    spec = get_spec("cifar10@synthetic")
    scpl = create_method("scpl", build_model("convnet", spec), MethodConfig(projector="i"))
    bp = create_method("bp", build_model("convnet", spec), MethodConfig())
    assert len(scpl.optimizers()) == scpl.model.num_stages
    assert bp.optimizers() == [bp.optimizer]
    schedulers = make_schedulers(scpl.optimizers(), "cosine", 4, 0.0)
    for s in schedulers:
        s.step()
    assert [o.param_groups[0]["lr"] for o in scpl.optimizers()] == [pytest.approx(cosine_lr(2, 4, 1e-3))] * 4
