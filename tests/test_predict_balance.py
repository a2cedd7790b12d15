"""`balance: predicted`: the split the simulator finds fastest for the method's own schedule."""
from __future__ import annotations

import torch

from bench.execution.placement import choose_balance
from bench.grid.settings import CellSettings
from bench.predict.balance import predicted_balance
from methods import create_method
from models.build import build_model


def _method(name: str):
    from data import get_spec

    return create_method(name, build_model("convnet", get_spec("cifar10@synthetic"), "cpu"))


def test_the_grid_accepts_balance_predicted():
    assert CellSettings(balance="predicted").balance == "predicted"


def test_decoupled_stages_put_the_expensive_stage_alone():
    # SCPL's steady state is the slowest device: stage 0 alone beats every other split
    assert predicted_balance(_method("scpl"), 2, [4.0, 1.0, 1.0, 1.0], batch=64) == [1, 3]
    assert predicted_balance(_method("scpl"), 2, [1.0, 1.0, 1.0, 1.0], batch=64) == [2, 2]


def test_choose_balance_resolves_predicted_from_measured_stage_costs():
    method = _method("scpl")
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    balance, costs = choose_balance(method, 2, batches, "predicted")
    assert sum(balance) == 4 and len(balance) == 2 and len(costs) == 4
