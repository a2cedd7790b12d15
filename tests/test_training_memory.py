"""Counted training memory: exact on hand-sized layers, and per stage for decoupled methods."""
import torch
from torch import nn

from bench.cell.training_memory import SavedTensorBytes, static_bytes, training_memory_bytes
from data import get_spec
from methods import MethodConfig, create_method
from models.build import build_model


def test_saved_bytes_of_a_linear_layer_equal_its_input():
    layer = nn.Linear(10, 4)
    x = torch.randn(8, 10, requires_grad=False)
    with SavedTensorBytes(exclude=list(layer.parameters())) as saved:
        layer(x).sum().backward()
    assert saved.bytes == 8 * 10 * 4  # the input is saved for the weight gradient; the weight is excluded


def test_static_bytes_count_params_grads_and_adam_state():
    layer = nn.Linear(10, 4)
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(2, 10)).sum().backward()
    opt.step()
    n = 10 * 4 + 4
    # params + grads + exp_avg + exp_avg_sq, plus Adam's two scalar `step` tensors
    assert static_bytes(list(layer.parameters()), [opt]) == 4 * n * 4 + 2 * 4


def test_decoupled_stages_each_hold_less_than_bp_and_measuring_changes_nothing():
    spec = get_spec("cifar10@synthetic")
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    bp = create_method("bp", build_model("resnet32", spec, modules=4), MethodConfig())
    contsup = create_method("contsup", build_model("resnet32", spec, modules=4), MethodConfig(options={"context": "E"}))
    before = {k: v.clone() for k, v in contsup.model.state_dict().items()}
    (bp_total,) = training_memory_bytes(bp, (x, y))
    per_module = training_memory_bytes(contsup, (x, y))
    assert len(per_module) == 4 and max(per_module) < bp_total
    assert all(torch.equal(before[k], v) for k, v in contsup.model.state_dict().items())


def test_a_coupled_step_counted_on_the_cpu_holds_the_same_bytes():
    # what a gpipe_dist rank asks for (its model spans its GPU and the CPU); here both are the CPU,
    # so the count must be the same and the method's own state untouched
    spec = get_spec("cifar10@synthetic")
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    method = create_method("gpipe_dist", build_model("convnet", spec), MethodConfig(options={"chunks": 2}))
    method.train_step(x, y)  # optimizer state exists, as after training
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    assert training_memory_bytes(method, (x, y), on_cpu=True) == training_memory_bytes(method, (x, y))
    assert all(torch.equal(before[k], v) for k, v in method.model.state_dict().items())
