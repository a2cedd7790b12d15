"""GPipe (torchgpipe and torch.distributed.pipelining) and DDP compute BP's update.

Without batch norm, micro-batching and data parallelism change *where* the
arithmetic happens, not what it is: after one step on the same batch every
gradient and every parameter must equal BP's on one device (to float rounding).
The ConvNet has no batch norm, which is why it is the model here; the text
models (Transformer without dropout, BiLSTM) have none either, and their tuple
payloads (states, padding mask, LSTM states, "no state yet") must split into
micro-batches and cross devices and processes with the same result.
"""
import copy
import functools

import pytest
import torch
from rank_jobs import rank_loop_job

from bench.execution import resolve_devices, stage_devices
from bench.execution.ranks import run_ranks
from data import load_dataset
from data.text_layout import TextOptions
from methods import MethodConfig, create_method, method_class
from models import create_model
from models.staged import cat_payloads, from_batch_first, split_payload, to_batch_first

TOL = 1e-6


def _batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _fresh(name, **options):
    """Same initial weights for every method (seeded), a small 8x8 ConvNet without batch norm."""
    torch.manual_seed(1)
    net = create_model("convnet", num_classes=10, image_size=8)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    return create_method(name, net, MethodConfig(optimizer="sgd", lr=0.1, options=options))


@pytest.fixture(scope="module")
def bp_after_one_step():
    x, y = _batch()
    bp = _fresh("bp")
    bp.place([torch.device("cpu")] * 4)
    loss = bp.train_step(x, y)
    grads = {n: p.grad.clone() for n, p in bp.model.named_parameters()}
    params = {n: p.detach().clone() for n, p in bp.model.named_parameters()}
    return loss, grads, params


def _assert_close(named, reference, what):
    assert set(named) == set(reference), f"{what}: parameter names differ"
    worst = max((named[n] - reference[n]).abs().max().item() for n in reference)
    assert worst <= TOL, f"{what} differs from BP's by {worst:.3g}"


@pytest.mark.parametrize("chunks", [2, 4])
@pytest.mark.parametrize("balance", [[2, 2], [1, 3]])
def test_torchgpipe_equals_bp(bp_after_one_step, chunks, balance):
    bp_loss, bp_grads, bp_params = bp_after_one_step
    x, y = _batch()
    gpipe = _fresh("gpipe", chunks=chunks)
    gpipe.place(stage_devices(balance, [torch.device("cpu")] * 2), balance)
    assert len(gpipe.pipe.partitions) == 2 and gpipe.pipe.chunks == chunks
    loss = gpipe.train_step(x, y)
    assert loss == pytest.approx(bp_loss, abs=TOL)
    _assert_close({n: p.grad for n, p in gpipe.model.named_parameters()}, bp_grads, "torchgpipe gradient")
    _assert_close(dict(gpipe.model.named_parameters()), bp_params, "torchgpipe parameters")


def _run_rank_method(build, devices, balance, segments):
    """Every rank builds the method (`build`), trains `segments` through one rank loop: records, params, grads."""
    results = run_ranks(rank_loop_job, resolve_devices(devices, "cpu", threads_per_device=1),
                        (build, balance, segments), timeout_s=120)
    params = {n: t for r in results for n, t in r["params"].items()}
    grads = {n: t for r in results for n, t in r["grads"].items()}
    return results[0]["records"], params, grads


@pytest.mark.slow
def test_distributed_pipelining_equals_bp(bp_after_one_step):
    """One process per stage group (gloo), 4 micro-batches, uneven split: BP's numbers."""
    bp_loss, bp_grads, bp_params = bp_after_one_step
    records, params, grads = _run_rank_method(functools.partial(_fresh, "gpipe_dist", chunks=4), 2, [1, 3],
                                              [[_batch()]])
    _assert_close(grads, bp_grads, "gpipe_dist gradient")
    _assert_close(params, bp_params, "gpipe_dist parameters")
    assert records[0].losses[0] == pytest.approx(bp_loss, abs=TOL)


@pytest.mark.slow
def test_ddp_on_two_processes_equals_bp_on_one(bp_after_one_step):
    """Each rank reads its half of the global batch; averaged gradients give BP's whole-batch update.

    Also guards the replicas: if the ranks shared one set of weights (tensors
    passed as shared memory) each rank would apply the step to the same storage
    and the update would be doubled.
    """
    bp_loss, bp_grads, bp_params = bp_after_one_step
    records, params, grads = _run_rank_method(functools.partial(_fresh, "ddp"), 2, [2, 2], [[_batch()]])
    _assert_close(grads, bp_grads, "ddp gradient")
    _assert_close(params, bp_params, "ddp parameters")
    assert records[0].losses[0] == pytest.approx(bp_loss, abs=TOL)


@pytest.mark.parametrize("name,options,balance", [("ddp", {}, [2, 2]), ("gpipe_dist", {"chunks": 2}, [2, 2])])
@pytest.mark.slow
def test_untimed_steps_then_timed_steps_in_the_same_ranks_continue_bp(name, options, balance):
    """Two segments (the untimed steps, then the timed ones) through the same ranks: BP's three updates.

    SGD with momentum: if the ranks' optimizers did not live on between the
    segments, the third update would differ from BP's.
    """
    batches = [_batch(seed) for seed in range(3)]
    bp = _fresh("bp")
    for x, y in batches:
        bp.train_step(x, y)
    _, params, _ = _run_rank_method(functools.partial(_fresh, name, **options), 2, balance,
                                    [batches[:2], batches[2:]])
    _assert_close(params, dict(bp.model.named_parameters()), f"{name} parameters")


# -- text models ---------------------------------------------------------------

# Tiny widths, the reference's layout otherwise (embedding + 3 blocks, 4 stages).
# Dropout 0: micro-batches draw other dropout masks than one whole batch does.
TEXT_MODELS = {
    "transformer": dict(embed_dim=8, num_heads=2, ff_dim=8, dropout=0.0),
    "lstm": dict(embed_dim=8, hidden_size=6),
}


@pytest.fixture(scope="module")
def imdb_batch():
    """8 IMDB-twin reviews, 350 token ids right-padded (lengths 79 to 344), 2 classes."""
    x, y = load_dataset("imdb@synthetic", "train", seed=0, text=TextOptions(padding="max_len")).get_batch(torch.arange(8))
    assert (x == 0).any(dim=1).all(), "every review should carry padding"
    return x, y


def _fresh_text(name, model, **options):
    torch.manual_seed(1)
    net = create_model(model, num_classes=2, **TEXT_MODELS[model])
    return create_method(name, net, MethodConfig(optimizer="sgd", lr=0.1, options=options))


@pytest.fixture(scope="module")
def bp_text_after_one_step(imdb_batch):
    out = {}
    for model in TEXT_MODELS:
        bp = _fresh_text("bp", model)
        bp.place([torch.device("cpu")] * 4)
        loss = bp.train_step(*imdb_batch)
        grads = {n: p.grad.clone() for n, p in bp.model.named_parameters()}
        params = {n: p.detach().clone() for n, p in bp.model.named_parameters()}
        out[model] = loss, grads, params
    return out


def test_text_payload_splits_on_each_entrys_batch_dimension(imdb_batch):
    """LSTM payloads hold (2, B, H) states and None before the first LSTM; both must survive."""
    net = _fresh_text("bp", "lstm").model
    first = net.stages[0](imdb_batch[0])
    second = net.stages[1](first)
    assert first[2] is None and second[2].shape[:2] == (2, 8)
    for payload in (first, second):
        flat = to_batch_first(payload)
        assert all(isinstance(t, torch.Tensor) and t.shape[0] == 8 for t in flat)
        back = from_batch_first(tuple(t.chunk(4)[1] for t in flat))  # what a pipeline hands on
        part = split_payload(payload, 4)[1]
        assert len(back) == len(part) == len(payload)
        for a, b in zip(back, part):
            assert (a is None and b is None) or torch.equal(a, b)
        for a, b in zip(cat_payloads(split_payload(payload, 4)), payload):
            assert (a is None and b is None) or torch.equal(a, b)


def _description(model: str, dataset: str = "imdb@synthetic"):
    """What the grid hands `incompatibility`: the full-size model described on the meta device."""
    from data import get_spec
    from models.build import build_model
    from models.description import describe_model

    spec = get_spec(dataset)
    staged = build_model(model, spec, "meta")
    return describe_model(staged, torch.zeros((2, *spec.input_shape), dtype=torch.long, device="meta"), model)


@pytest.mark.parametrize("model", list(TEXT_MODELS))
@pytest.mark.parametrize("name", ["gpipe", "gpipe_dist", "scpl_gpipe"])
@pytest.mark.slow
def test_text_models_are_accepted(name, model):
    cls, description = method_class(name), _description(model)
    assert cls.incompatibility(model=description, batch_size=8, devices=2, options={"chunks": 4}) is None
    assert "multiple of chunks" in cls.incompatibility(model=description, batch_size=6, devices=2, options={})


@pytest.mark.parametrize("checkpoint", ["always", "except_last", "never"])
@pytest.mark.parametrize("model", list(TEXT_MODELS))
def test_torchgpipe_on_text_equals_bp(bp_text_after_one_step, imdb_batch, model, checkpoint):
    """Three partitions: the boundaries after the embedding (LSTM: no state yet) and after a block."""
    bp_loss, bp_grads, bp_params = bp_text_after_one_step[model]
    gpipe = _fresh_text("gpipe", model, chunks=4, checkpoint=checkpoint)
    balance = [1, 1, 2]
    gpipe.place(stage_devices(balance, [torch.device("cpu")] * 3), balance)
    assert len(gpipe.pipe.partitions) == 3
    loss = gpipe.train_step(*imdb_batch)
    assert loss == pytest.approx(bp_loss, abs=TOL)
    _assert_close({n: p.grad for n, p in gpipe.model.named_parameters()}, bp_grads, f"torchgpipe {model} gradient")
    _assert_close(dict(gpipe.model.named_parameters()), bp_params, f"torchgpipe {model} parameters")


@pytest.mark.parametrize("model,balance,schedule", [("lstm", [1, 1, 2], "gpipe"), ("transformer", [2, 2], "1f1b")])
@pytest.mark.slow
def test_distributed_pipelining_on_text_equals_bp(bp_text_after_one_step, imdb_batch, model, balance, schedule):
    """Tuple payloads between processes: shapes inferred, mask and empty entries without gradients."""
    bp_loss, bp_grads, bp_params = bp_text_after_one_step[model]
    build = functools.partial(_fresh_text, "gpipe_dist", model, chunks=4, schedule=schedule)
    records, params, grads = _run_rank_method(build, len(balance), balance, [[imdb_batch]])
    _assert_close(grads, bp_grads, f"gpipe_dist {model} gradient")
    _assert_close(params, bp_params, f"gpipe_dist {model} parameters")
    assert records[0].losses[0] == pytest.approx(bp_loss, abs=TOL)


def test_torchgpipe_method_survives_a_deep_copy_after_a_step():
    """The harness deep-copies a placed method (training-memory probe, profiled run).

    On CPU torchgpipe's copy streams are the `CPUStream` sentinel, recognised by
    identity; a deep copy of it was taken for a CUDA stream and the copy's first
    forward raised "'CPUStreamType' object has no attribute 'device'", failing every
    2-device gpipe cell.  The copy must train, on its own parameters, like the original.
    """
    x, y = _batch()
    gpipe = _fresh("gpipe", chunks=2)
    gpipe.place(stage_devices([2, 2], [torch.device("cpu")] * 2), [2, 2])
    gpipe.train_step(x, y)  # fills torchgpipe's stream cache
    twin = copy.deepcopy(gpipe)
    assert twin.pipe._copy_streams is not gpipe.pipe._copy_streams
    assert not any(p is q for p, q in zip(twin.pipe.parameters(), gpipe.pipe.parameters()))
    assert twin.optimizer.param_groups[0]["params"][0] is next(twin.pipe.parameters())
    assert twin.train_step(x, y) == pytest.approx(gpipe.train_step(x, y), abs=TOL)
    _assert_close(dict(twin.model.named_parameters()), dict(gpipe.model.named_parameters()), "copy's parameters")
