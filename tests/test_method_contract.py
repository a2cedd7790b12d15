"""The contract every registered method keeps, checked for each name in `list_methods()`.

Parametrized over the registry, not a hand list: a new file in `methods/` is
trained, evaluated, counted and (if decoupled) checked for stage isolation
here without anyone editing this test.
"""
import copy

import pytest
import torch
from rank_jobs import context, one_rank_group, train_segments

from bench.execution.choice import Executor, choose_executor, run_training
from bench.execution.devices import resolve_devices
from bench.execution.placement import stage_devices
from bench.grid.settings import CellSettings
from data import get_spec, load_dataset
from methods import MethodConfig, create_method, list_methods, method_class
from methods.base import Execution, MethodOptions
from models import count_parameters
from models.build import build_model

DATASET = "cifar10@synthetic"
BATCH = 8


def _batches(count: int = 3) -> list:
    data = load_dataset(DATASET, split="train", seed=0)
    return [data.get_batch(torch.arange(i * BATCH, (i + 1) * BATCH)) for i in range(count)]


def _method(name: str, devices: int = 1):
    torch.manual_seed(0)
    model = build_model("convnet", get_spec(DATASET))
    method = create_method(name, model, MethodConfig(lr=1e-3))
    device_set = resolve_devices(devices, "cpu", 1)
    balance = [model.num_stages // devices] * devices
    method.place(stage_devices(balance, device_set.devices), balance)
    return method, device_set, balance


def _train(method, devices, balance, batches):
    """In this process: the method's executor, or for a rank method one rank of its own (world 1)."""
    if method.execution is not Execution.RANKS:
        return run_training(method, batches, devices, balance, warmup_steps=1)
    with one_rank_group():
        return train_segments(method, context(method, 0, 1, torch.device("cpu"), balance), [batches],
                              warmup_steps=1)[1][0]


def _named(method) -> list:
    return [(f"{i}.{n}", p) for i, m in enumerate(method.modules()) for n, p in m.named_parameters()]


def _params(method) -> dict:
    return {k: p.detach().clone() for k, p in _named(method)}


def test_registry_holds_every_method_file():
    assert {"bp", "scpl", "dascpl", "al", "early_exit", "contsup", "gpipe", "gpipe_dist", "ddp",
            "scpl_gpipe"} <= set(list_methods())


@pytest.mark.parametrize("name", list_methods())
def test_declares_its_options_and_execution(name):
    cls = method_class(name)
    assert isinstance(cls.execution, Execution)
    assert issubclass(cls.Options, MethodOptions)
    cls.Options.model_validate({})  # every option has a default
    with pytest.raises(ValueError):
        cls.Options.model_validate({"no_such_option": 1})
    assert cls.min_batch_size >= 1
    # the grid's settings schema must accept what the method accepts, per method
    CellSettings(method_options={name: {}})


def test_declares_how_the_report_shows_it():
    """Each method's name, orders and colour are its own: no two methods share one (a subclass re-declares them)."""
    classes = [method_class(n) for n in list_methods()]
    assert all(cls.display_name and cls.colour for cls in classes)
    for attribute in ("display_name", "paper_order", "report_order", "colour"):
        values = [getattr(cls, attribute) for cls in classes]
        assert len(set(values)) == len(values), f"two methods share a {attribute}: {values}"
    assert method_class("bp").bp_gradient and not method_class("scpl").bp_gradient


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.slow
def test_trains_evaluates_and_counts(name):
    method, devices, balance = _method(name)
    before = _params(method)
    record = _train(method, devices, balance, _batches())
    assert len(record.completion_times) == 3 and all(loss == loss for loss in record.losses)  # no NaN
    after = _params(method)
    assert any(not torch.equal(before[k], after[k]) for k in before), "training changed no parameter"
    x, y = _batches(1)[0]
    logits = method.predict(x)
    assert logits.shape == (BATCH, 10) and torch.isfinite(logits).all()
    effective, affiliated = method.parameter_counts()
    distinct = {id(p): p.numel() for m in method.modules() for p in m.parameters()}
    assert effective >= count_parameters(method.model.stages)
    assert effective + affiliated <= sum(distinct.values())  # nothing counted twice
    if method.execution is not Execution.DECOUPLED:
        assert affiliated == 0
    # every trained parameter belongs to one of its optimizers (which schedulers step and checkpoints save)
    optimized = {id(p) for o in method.optimizers() for g in o.param_groups for p in g["params"]}
    trained = [k for k, p in _named(method) if not torch.equal(before[k], p.detach())]
    assert trained and all(id(dict(_named(method))[k]) in optimized for k in trained)
    # its extra state goes into a method built the same way and comes back unchanged
    twin, _, _ = _method(name)
    twin.load_extra_state(method.extra_state())
    assert twin.extra_state() == method.extra_state()


DECOUPLED = [n for n in list_methods() if method_class(n).execution is Execution.DECOUPLED]


@pytest.mark.parametrize("name", DECOUPLED)
def test_no_gradient_reaches_an_earlier_stage(name):
    """Stage k's step, fed an input that requires grad, leaves the input and every other stage untouched."""
    method, _, _ = _method(name)
    steps = method.stage_steps()
    x, y = _batches(1)[0]
    for k in range(1, len(steps)):
        with torch.no_grad():  # stage k's input
            probe = x
            for step in steps[:k]:
                probe = step.encode(probe, y)
        entries = probe if isinstance(probe, tuple) else (probe,)
        fed_entries = [t.detach().requires_grad_(True) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                       for t in entries]
        leaves = [t for t in fed_entries if isinstance(t, torch.Tensor) and t.requires_grad]
        fed = tuple(fed_entries) if isinstance(probe, tuple) else fed_entries[0]
        for other in method.modules():
            other.zero_grad(set_to_none=True)
        steps[k](fed, y)
        assert all(leaf.grad is None for leaf in leaves), f"stage {k}'s gradient reached its input"
        own = {id(p) for p in steps[k].parameters()}
        leaked = [n for m in method.modules() for n, p in m.named_parameters() if id(p) not in own and p.grad is not None]
        assert not leaked, f"stage {k}'s step put gradients on {leaked[:3]}"


@pytest.mark.parametrize("name", DECOUPLED)
def test_pipelined_on_two_devices_equals_sequential(name):
    """Where and when stages run never changes a number (bit for bit on CPU)."""
    sequential, one, balance1 = _method(name, 1)
    pipelined, two, balance2 = _method(name, 2)
    assert choose_executor(pipelined, 2) is Executor.THREADS
    run_training(sequential, _batches(), one, balance1, warmup_steps=1)
    run_training(pipelined, _batches(), two, balance2, warmup_steps=1)
    a, b = _params(sequential), _params(pipelined)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_options_schema_refuses_wrong_types_before_building():
    with pytest.raises(ValueError, match="chunks"):
        create_method("gpipe", copy.deepcopy(build_model("convnet", get_spec(DATASET))),
                      MethodConfig(options={"chunks": "4"}))


RANKS = [n for n in list_methods() if method_class(n).execution is Execution.RANKS]


@pytest.mark.parametrize("name", RANKS)
@pytest.mark.slow
def test_rank_methods_keep_their_optimizer_state_across_epochs(name):
    """A rank's trainer lives for the whole cell: Adam's moments and step go on from one epoch to the next."""
    method, _, balance = _method(name)
    with one_rank_group():
        train_segments(method, context(method, 0, 1, torch.device("cpu"), balance), [_batches(), _batches()])
    (optimizer,) = method.optimizers()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in method.model.parameters()}
    assert all(int(optimizer.state[p]["step"]) == 6 for p in params)  # one Adam step per batch of both epochs
