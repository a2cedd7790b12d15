"""Rank methods (methods/rank_method.py): the contract their ranks run them through, and their lr."""
import pytest
import torch
from rank_jobs import context, one_rank_group

from bench.execution.choice import rank_method
from bench.execution.rank_loops import make_rank_loop
from data import get_spec
from methods import Execution, Method, MethodConfig, create_method, list_methods, method_class
from methods.rank_method import RankMethod
from methods.schedules import cosine_lr, current_lr, make_schedulers
from models.build import build_model

RANKS = [n for n in list_methods() if method_class(n).execution is Execution.RANKS]


def _model():
    return build_model("convnet", get_spec("cifar10@synthetic"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no step: lr only
@pytest.mark.parametrize("name", RANKS)
def test_a_ranks_trainer_trains_each_epoch_at_the_lr_the_cosine_scheduler_set(name):
    """The rank's own optimizer, kept for the whole cell, is what CosineAnnealingLR steps once per epoch."""
    method = create_method(name, _model(), MethodConfig(lr=1e-3))
    with one_rank_group():
        loop = make_rank_loop(method, context(method, 0, 1, torch.device("cpu"), [method.model.num_stages]), 2)
        assert method.optimizers() == loop.optimizers() and method.optimizers()[0] is not method.optimizer
        schedulers = make_schedulers(method.optimizers(), "cosine", 4, 1e-5)
        for epoch in range(1, 5):
            assert current_lr(loop.optimizers(), 0.0) == pytest.approx(cosine_lr(epoch, 4, 1e-3, 1e-5))
            for scheduler in schedulers:
                scheduler.step()
    assert method.config.lr == 1e-3  # the method's own config is never rewritten


def test_a_ranks_method_without_the_hooks_is_refused_naming_them():
    class Loose(Method):
        execution = Execution.RANKS

        def place(self, stage_devices, balance=None):
            pass

        def optimizers(self):
            return []

    with pytest.raises(TypeError, match=r"RankMethod \(it lacks make_rank_trainer\)"):
        rank_method(Loose(_model(), MethodConfig()))


def test_a_rank_method_must_define_its_rank_trainer():
    class NoTrainer(RankMethod):
        pass

    with pytest.raises(TypeError, match="make_rank_trainer"):
        NoTrainer(_model(), MethodConfig())


def test_a_rank_method_passes_through():
    method = create_method("ddp", _model(), MethodConfig())
    assert rank_method(method) is method and isinstance(method.optimizers()[0], torch.optim.Optimizer)
