"""ContSup: modules stay decoupled, each context mode feeds the right tensor, losses and sizes match the reference."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_executors import _batches, _params

from bench.execution import resolve_devices, run_pipelined, run_sequential, stage_devices
from methods import MethodConfig, create_method, method_class
from methods.contsup import AuxHead, contsup_supcon_loss
from methods.contsup_context import ContextMode
from models import count_parameters, create_model, detach_payload
from models.cifar_resnet import MODULE_BOUNDARIES

_CHANNELS = {0: 16, 1: 16, 2: 32, 3: 64}  # CIFAR ResNet stage -> channels (stage 0 is the stem)
_SIDE = {0: 32, 1: 32, 2: 16, 3: 8}


def _contsup(context="R1E", modules=4, local_loss="contrast", depth=32, classes=10, seed=0):
    torch.manual_seed(seed)
    model = create_model(f"resnet{depth}", num_classes=classes, modules=modules)
    return create_method("contsup", model, MethodConfig(options={"context": context, "local_loss": local_loss}))


def _capture_inputs(method):
    """Record the tensor each network module (not its context encoders) actually receives."""
    seen = {}
    for k, stage in enumerate(method.model.stages):
        stage.register_forward_pre_hook(lambda mod, args, k=k: seen.__setitem__(k, args[0].detach().clone()))
    return seen


# -- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,out,expected", [
    # conv3x3 C->2C (no bias) + BN(2C) + FC(2C->128) + FC(128->out); 64 channels keep 64 (reference)
    (16, 10, 16 * 32 * 9 + 64 + (32 * 128 + 128) + (128 * 10 + 10)),
    (16, 128, 16 * 32 * 9 + 64 + (32 * 128 + 128) + (128 * 128 + 128)),
    (32, 10, 32 * 64 * 9 + 128 + (64 * 128 + 128) + (128 * 10 + 10)),
    (64, 10, 64 * 64 * 9 + 128 + (64 * 128 + 128) + (128 * 10 + 10)),
])
def test_aux_head_1c2f_parameter_count(channels, out, expected):
    assert count_parameters(AuxHead(channels, out)) == expected
    assert expected in (10_186, 25_408, 28_170, 46_602)  # the same numbers, written out


@pytest.mark.parametrize("depth", [32, 110])
@pytest.mark.parametrize("modules", [2, 4, 8, 16])
def test_modules_end_at_the_reference_boundaries(depth, modules):
    with torch.device("meta"):
        model = create_model(f"resnet{depth}", num_classes=10, modules=modules)
    x = torch.zeros(2, 3, 32, 32, device="meta")
    shapes = []
    for stage in model.stages[:-1]:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    boundaries = MODULE_BOUNDARIES[depth][modules]
    assert len(model.stages) == modules
    assert shapes == [(_CHANNELS[s], _SIDE[s], _SIDE[s]) for s, _ in boundaries]
    # the units (stem + 3n blocks) are all used, in order
    n = (depth - 2) // 6
    assert sum(len(stage) for stage in model.stages) == 3 * n + 1 + 1  # + the final average pool


def test_aux_heads_sit_on_every_boundary_and_counts_split_effective_from_affiliated():
    method = _contsup("E", modules=4, local_loss="cross_entropy")
    widths = [head.body[0].in_channels for head in method.aux_heads]
    assert widths == [_CHANNELS[s] for s, _ in MODULE_BOUNDARIES[32][4]]
    effective, affiliated = method.parameter_counts()
    assert affiliated == sum(count_parameters(h) for h in method.aux_heads)
    # the image encoders run at inference, so they are effective: conv3x3 3->12 (+bias) + BN + conv3x3 12->C (+bias) + BN
    encoders = sum(3 * 12 * 9 + 12 + 24 + 12 * c * 9 + c + 2 * c for c in widths)
    assert effective == count_parameters(method.model) + encoders


# -- context modes -------------------------------------------------------------------------------

def test_context_mode_grammar():
    assert [ContextMode.parse(m) for m in ("R0", "E", "R1", "R1E", "R4")] == [
        ContextMode(0, False), ContextMode(0, True), ContextMode(1, False), ContextMode(1, True), ContextMode(4, False)]
    with pytest.raises(ValueError, match="R1E"):
        ContextMode.parse("X1")


def _run_modules(method, x):
    """Each module's forward (no update) on its predecessor's detached payload; returns the payloads."""
    payloads, p = [], x
    with torch.no_grad():
        for step in method.stage_steps():
            p = step.encoder(p)
            payloads.append(p)
            p = detach_payload(p)
    return payloads


def test_r0_feeds_only_the_previous_output():
    method = _contsup("R0")
    x = torch.randn(4, 3, 32, 32)
    seen = _capture_inputs(method)
    outs = _run_modules(method, x)
    assert all(count_parameters(s) == 0 for s in method.supplies)
    assert torch.equal(seen[0], x)
    for k in range(1, 4):
        assert outs[k - 1][1:] == (None,)  # no image, no earlier inputs travel
        assert torch.equal(seen[k], outs[k - 1][0])


def test_e_adds_the_encoded_image_at_every_boundary():
    method = _contsup("E")
    x = torch.randn(4, 3, 32, 32)
    seen = _capture_inputs(method)
    outs = _run_modules(method, x)
    with torch.no_grad():
        for k in range(1, 4):
            h = outs[k - 1][0]
            assert torch.equal(outs[k - 1][1], x)  # the raw image travels with the payload
            expected = h + method.supplies[k - 1].image_encoder(x, h.shape[-2:])
            assert torch.allclose(seen[k], expected, atol=1e-6)
            assert not torch.allclose(seen[k], h)


def test_r1_adds_the_encoded_input_of_the_previous_module():
    method = _contsup("R1")
    x = torch.randn(4, 3, 32, 32)
    seen = _capture_inputs(method)
    outs = _run_modules(method, x)
    with torch.no_grad():
        for k in range(1, 4):
            h, image, previous_input = outs[k - 1]
            assert image is None
            assert torch.equal(previous_input, seen[k - 1])  # a_{k-1}: module k-1's input, image for k = 1
            encoder = method.supplies[k - 1].input_encoders[0]
            assert torch.allclose(seen[k], h + encoder(seen[k - 1], h.shape[-2:]), atol=1e-6)


def test_r1e_skips_the_image_in_the_residual_path_and_r2_reaches_two_back():
    r1e = _contsup("R1E")
    # boundary 0: the image encoder covers the image, so no input encoder (reference: context[0] = None)
    assert [len(s.input_encoders) for s in r1e.supplies] == [0, 1, 1]
    assert all(s.image_encoder is not None for s in r1e.supplies)
    outs = _run_modules(r1e, torch.randn(4, 3, 32, 32))
    assert outs[0][2] is None and outs[1][2] is not None
    r2 = _contsup("R2")
    assert [s.slots for s in r2.supplies] == [[0], [0, 1], [0, 1]]
    seen = _capture_inputs(r2)
    x = torch.randn(4, 3, 32, 32)
    outs = _run_modules(r2, x)
    assert torch.equal(outs[1][2], seen[1]) and torch.equal(outs[1][3], x)  # module 2 gets a_1 and a_0
    with pytest.raises(ValueError, match="boundaries"):
        _contsup("R2", modules=2)


# -- decoupling ----------------------------------------------------------------------------------

def test_no_gradient_crosses_modules_not_even_through_the_context():
    method = _contsup("R1E")
    steps = method.stage_steps()
    x = torch.randn(6, 3, 32, 32, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    # attached payloads: module 1's output still hangs on modules 0 and 1 and on supply 0's encoders
    p1 = steps[1].encoder(steps[0].encoder(x))
    earlier = list(method.model.stages[:2].parameters()) + list(method.supplies[0].parameters()) \
        + list(method.aux_heads[:2].parameters())
    assert p1[0].requires_grad and p1[2].requires_grad
    steps[2](p1, y)
    assert x.grad is None
    assert all(p.grad is None for p in earlier)
    # module 2 and its own context encoders did learn from its loss
    assert all(p.grad is not None for p in method.model.stages[2].parameters())
    assert all(p.grad is not None for p in method.supplies[1].parameters())


def test_pipelined_equals_sequential():
    batches = _batches(n=4, batch=6)

    def train(devices, balance):
        method = _contsup("R1E", modules=4, seed=7)
        devs = resolve_devices(devices, "cpu", threads_per_device=1)
        method.place(stage_devices(balance, devs.devices))
        if devices > 1:
            return method, run_pipelined(method.stage_steps(), balance, devs, batches, warmup_steps=1)
        return method, run_sequential(method, batches, devs, warmup_steps=1)

    reference, ref_record = train(1, [4])
    piped, record = train(2, [1, 3])
    for a, b in zip(_params(reference), _params(piped)):
        assert torch.equal(a, b)
    assert record.losses == ref_record.losses


# -- losses --------------------------------------------------------------------------------------

def test_contrast_loss_equals_supcon_by_hand():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(5, 8), dim=1)
    y = torch.tensor([0, 0, 1, 1, 2])  # the last anchor has no positive: contributes 0, still counted
    tau = 0.07
    total = 0.0
    for i in range(5):
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(5) if a != i)
        positives = [p for p in range(5) if p != i and y[p] == y[i]]
        if positives:
            total += -sum(float(z[i] @ z[p]) / tau - math.log(denom) for p in positives) / len(positives)
    expected = total / 5
    assert float(contsup_supcon_loss(z, y, tau)) == pytest.approx(expected, rel=1e-5)

    method = _contsup("R0", modules=2)
    objective = method.stage_steps()[0].objective
    h = torch.randn(5, 32, 16, 16)  # resnet32 K=2 boundary (2, 1)
    with torch.no_grad():
        projected = F.normalize(method.aux_heads[0](h), dim=1)
        assert float(objective((h,), y)) == pytest.approx(float(contsup_supcon_loss(projected, y, tau)), rel=1e-6)
    assert method.aux_heads[0].body[-1].out_features == 128


def test_cross_entropy_loss_equals_hand_computation():
    method = _contsup("R0", modules=2, local_loss="cross_entropy")
    objective = method.stage_steps()[0].objective
    h, y = torch.randn(3, 32, 16, 16), torch.tensor([2, 0, 9])
    with torch.no_grad():
        logits = method.aux_heads[0](h)
        assert logits.shape == (3, 10)
        by_hand = -sum(float(logits[i, y[i]]) - math.log(sum(math.exp(float(v)) for v in logits[i]))
                       for i in range(3)) / 3
        assert float(objective((h,), y)) == pytest.approx(by_hand, rel=1e-5)


# -- validation and training ---------------------------------------------------------------------

def _description(model: str, dataset: str = "cifar10@synthetic", **kwargs):
    """The description a grid hands the method, from the grid's own cache of meta-device builds.

    Cached per model, dataset and kwargs: the LSTM's meta forward over IMDB's 350
    tokens costs seconds, and the grid test below (and test_bad_input's) asks again.
    """
    from bench.grid.feasibility import _model_facts

    description, error = _model_facts(model, dataset, json.dumps(kwargs, sort_keys=True))
    assert description is not None, error
    return description


def test_incompatible_cells_are_rejected_up_front():
    cls = method_class("contsup")
    ok = dict(model=_description("resnet32", modules=4), batch_size=8, devices=2, options={"context": "R1E"})
    assert cls.incompatibility(**ok) is None
    assert "feature map" in cls.incompatibility(**{**ok, "model": _description("transformer", "imdb@synthetic")})
    assert "feature map" in cls.incompatibility(**{**ok, "model": _description("lstm", "imdb@synthetic")})
    assert cls.incompatibility(**{**ok, "model": _description("vgg8")}) is None  # conv maps between all stages
    assert "2 samples" in cls.incompatibility(**{**ok, "batch_size": 1})
    assert cls.incompatibility(**{**ok, "batch_size": 1, "options": {"local_loss": "cross_entropy"}}) is None
    assert "context mode" in cls.incompatibility(**{**ok, "options": {"context": "F"}})
    assert "reaches 5 modules back" in cls.incompatibility(**{**ok, "options": {"context": "R5"}})


def test_grid_refuses_contsup_on_a_model_it_cannot_wrap(tmp_path):
    from bench.grid import GridError, load_grid

    path = tmp_path / "g.yaml"
    path.write_text("axes: {method: [contsup], model: [lstm], dataset: [imdb@synthetic], batch_size: [8], "
                    "devices: [1]}\n")
    with pytest.raises(GridError, match="contsup: contsup trains convolutional modules"):
        load_grid(str(path))


def test_short_training_on_synthetic_cifar_lowers_the_loss():
    from data import load_dataset

    data = load_dataset("cifar10@synthetic", split="train")
    batches = [data.get_batch(torch.arange(i * 16, (i + 1) * 16)) for i in range(4)]
    torch.manual_seed(0)
    model = create_model("resnet32", num_classes=10, modules=4)
    method = create_method("contsup", model, MethodConfig(lr=3e-3, options={"context": "R1E", "local_loss": "cross_entropy"}))
    epochs = [[method.train_step(x, y) for x, y in batches] for _ in range(4)]
    first, last = sum(epochs[0]) / 4, sum(epochs[-1]) / 4
    assert last < 0.8 * first, (first, last)


def test_shipped_grid_varies_the_context_through_include_settings(tmp_path):
    from bench.grid import GridError, load_grid

    grid = load_grid("contsup.yaml")
    modes = sorted((c.devices, c.settings.method_options["context"]) for c in grid.cells)
    assert modes == [(1, "E"), (1, "R0"), (2, "E"), (2, "R1E")]
    assert all(c.settings.model_kwargs == {"modules": 4} for c in grid.cells)  # the grid's other settings kept
    bad = tmp_path / "bad.yaml"
    bad.write_text(grid.path.read_text().replace("context: R0,", "context: R0, oops: 1,"))
    with pytest.raises(GridError, match="oops"):
        load_grid(str(bad))
