"""SCPL + GPipe: micro-batches change when a stage computes, not what it learns.

The local loss sees the whole batch (every micro-batch output), so with no batch
norm the update equals plain SCPL's; fed by the 2-device pipelined executor
micro-batch by micro-batch it must still give the same numbers.  Text models
too: their tuple payloads (LSTM states batch-second, None before the first LSTM)
are split and joined entry by entry.
"""
import pytest
import torch

from bench.execution import resolve_devices, run_pipelined, run_sequential, stage_devices
from data import load_dataset
from methods import MethodConfig, create_method
from models import create_model

TOL = 1e-6


def _batches(n=3, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def _fresh(name, **options):
    torch.manual_seed(7)
    net = create_model("convnet", num_classes=10, image_size=8)
    # SGD: Adam divides by sqrt(v) + eps, so it blows a ~1e-9 rounding difference in a
    # near-zero gradient up to a full lr-sized step, which would hide real agreement.
    return create_method(name, net, MethodConfig(projector="l", optimizer="sgd", lr=0.05, options=options))


def _params(method):
    return [p.detach().clone() for m in method.modules() for p in m.parameters()]


def _train(method, devices, balance, batches):
    devs = resolve_devices(devices, "cpu", threads_per_device=1)
    method.place(stage_devices(balance, devs.devices))
    if devices > 1:
        return run_pipelined(method.stage_steps(), balance, devs, batches, warmup_steps=1,
                             micro_batches=method.micro_batches)
    return run_sequential(method, batches, devs, warmup_steps=1)


@pytest.fixture(scope="module")
def plain_scpl():
    method = _fresh("scpl")
    record = _train(method, 1, [4], _batches())
    return _params(method), record.losses


def _assert_same(params, reference, losses, ref_losses):
    assert len(params) == len(reference)
    worst = max((a - b).abs().max().item() for a, b in zip(params, reference))
    assert worst <= TOL, f"parameters differ from plain SCPL's by {worst:.3g}"
    assert losses == pytest.approx(ref_losses, abs=1e-5)


@pytest.mark.parametrize("chunks", [2, 4])
def test_equals_plain_scpl_sequentially(plain_scpl, chunks):
    method = _fresh("scpl_gpipe", chunks=chunks)
    assert method.micro_batches == chunks and all(step.micro_batches == chunks for step in method.stage_steps())
    record = _train(method, 1, [4], _batches())
    _assert_same(_params(method), *plain_scpl[:1], record.losses, plain_scpl[1])


@pytest.mark.parametrize("chunks,balance", [(2, [2, 2]), (4, [1, 3])])
def test_equals_plain_scpl_on_the_two_device_pipeline(plain_scpl, chunks, balance):
    method = _fresh("scpl_gpipe", chunks=chunks)
    record = _train(method, 2, balance, _batches())
    _assert_same(_params(method), *plain_scpl[:1], record.losses, plain_scpl[1])
    # micro-batches really travel separately: stage intervals are per micro-batch
    assert len(record.stage_intervals) == 4 * chunks * len(_batches())


def _description(model: str, dataset: str):
    """What the grid hands `incompatibility`: the model described on the meta device."""
    from data import get_spec
    from models.build import build_model
    from models.description import describe_model

    spec = get_spec(dataset)
    staged = build_model(model, spec, "meta")
    dtype = torch.long if spec.modality == "text" else torch.float
    return describe_model(staged, torch.zeros((2, *spec.input_shape), dtype=dtype, device="meta"), model)


def test_incompatibility_names_the_reason():
    cls = type(_fresh("scpl_gpipe"))
    convnet, transformer = _description("convnet", "cifar10@synthetic"), _description("transformer", "imdb@synthetic")
    assert "multiple of chunks" in cls.incompatibility(model=convnet, batch_size=6, devices=2, options={"chunks": 4})
    assert cls.incompatibility(model=transformer, batch_size=8, devices=2, options={}) is None
    assert cls.incompatibility(model=convnet, batch_size=8, devices=1, options={"chunks": 4}) is None


# -- text models ---------------------------------------------------------------

# Tiny widths; dropout 0 because micro-batches draw other masks than one batch does.
TEXT_MODELS = {
    "transformer": dict(embed_dim=8, num_heads=2, ff_dim=8, dropout=0.0),
    "lstm": dict(embed_dim=8, hidden_size=6),
}


def _text_batches(n=2, batch=8):
    """IMDB-twin reviews (350 token ids, right-padded), 2 classes."""
    data = load_dataset("imdb@synthetic", "train", seed=0)
    return [data.get_batch(torch.arange(i * batch, (i + 1) * batch)) for i in range(n)]


def _fresh_text(name, model, **options):
    torch.manual_seed(7)
    net = create_model(model, num_classes=2, **TEXT_MODELS[model])
    return create_method(name, net, MethodConfig(projector="l", optimizer="sgd", lr=0.05, options=options))


@pytest.fixture(scope="module")
def plain_scpl_text():
    out = {}
    for model in TEXT_MODELS:
        method = _fresh_text("scpl", model)
        record = _train(method, 1, [4], _text_batches())
        out[model] = _params(method), record.losses
    return out


@pytest.mark.parametrize("model", list(TEXT_MODELS))
def test_text_equals_plain_scpl_sequentially(plain_scpl_text, model):
    """The sequential executor hands whole payloads to each stage, which splits and joins them."""
    method = _fresh_text("scpl_gpipe", model, chunks=4)
    record = _train(method, 1, [4], _text_batches())
    _assert_same(_params(method), plain_scpl_text[model][0], record.losses, plain_scpl_text[model][1])


@pytest.mark.parametrize("model,chunks,balance", [("lstm", 2, [2, 2]), ("transformer", 4, [1, 3])])
def test_text_equals_plain_scpl_on_the_two_device_pipeline(plain_scpl_text, model, chunks, balance):
    method = _fresh_text("scpl_gpipe", model, chunks=chunks)
    record = _train(method, 2, balance, _text_batches())
    _assert_same(_params(method), plain_scpl_text[model][0], record.losses, plain_scpl_text[model][1])
    assert len(record.stage_intervals) == 4 * chunks * len(_text_batches())
