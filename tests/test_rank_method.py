"""Rank methods (methods/rank_method.py): the contract the rank executor runs them through, and their lr."""
import pytest
import torch

from bench.execution.choice import rank_method
from data import get_spec
from methods import Execution, Method, MethodConfig, create_method, list_methods, method_class
from methods.rank_method import RankMethod
from methods.schedules import cosine_lr, make_schedulers
from models.build import build_model

RANKS = [n for n in list_methods() if method_class(n).execution is Execution.RANKS]


def _model():
    return build_model("convnet", get_spec("cifar10@synthetic"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no step: lr only
@pytest.mark.parametrize("name", RANKS)
def test_rank_jobs_train_at_the_lr_the_cosine_scheduler_set(name):
    """The ranks build their optimizers at the parent optimizer's lr, which CosineAnnealingLR steps."""
    method = create_method(name, _model(), MethodConfig(lr=1e-3))
    schedulers = make_schedulers(method.optimizers(), "cosine", 4, 1e-5)
    for epoch in range(1, 5):
        _, args = method.rank_job([], [method.model.num_stages], 0)
        config = next(a for a in args if isinstance(a, MethodConfig))
        assert config.lr == pytest.approx(cosine_lr(epoch, 4, 1e-3, 1e-5))
        for scheduler in schedulers:
            scheduler.step()
    assert method.config.lr == 1e-3  # the method's own config is never rewritten


def test_a_ranks_method_without_the_hooks_is_refused_naming_them():
    class Loose(Method):
        execution = Execution.RANKS

        def place(self, stage_devices, balance=None):
            pass

        def rank_job(self, batches, balance, warmup_steps):
            raise AssertionError("never reached")

    with pytest.raises(TypeError, match=r"RankMethod \(it lacks absorb, optimizer_state\)"):
        rank_method(Loose(_model(), MethodConfig()))


def test_a_rank_method_must_define_its_rank_job():
    class NoJob(RankMethod):
        pass

    with pytest.raises(TypeError, match="rank_job"):
        NoJob(_model(), MethodConfig())


def test_a_rank_method_passes_through():
    method = create_method("ddp", _model(), MethodConfig())
    assert rank_method(method) is method and isinstance(method.optimizers()[0], torch.optim.Optimizer)
