"""Models match the published architectures exactly and behave as one `StagedModel` shape."""
import pickle

import pytest
import torch
from torch import nn

from models import StagedModel, UnknownModelError, count_parameters, create_model, list_models
from models.cifar_resnet import module_sizes
from models.partition import contiguous_balance, even_balance, validate_split
from models.registry import model_accepts

# From the registry, not a hand list: a new model file is checked by every contract test below.
TEXT = [name for name in list_models() if model_accepts(name, "vocab_size")]
VISION = [name for name in list_models() if name not in TEXT]
# One reference encoder block, d_model = d_ff = 300 (DASCPL model/transformer/encoder/): four
# attention Linear(300, 300), the feed-forward Linear(300, 300) x 2, three LayerNorms (a, b)
# (two sublayer norms and Encoder.norm); the reference's unused original layer is not counted.
BLOCK = 4 * (300 * 300 + 300) + 2 * (300 * 300 + 300) + 3 * 2 * 300  # 543,600
TEXT_HEAD = 300 * 300 + 300 + 300 * 4 + 4  # Linear(300, 300) -> Tanh -> Linear(300, 4)


def _meta(name, num_classes, **kwargs) -> StagedModel:
    """Parameter counts need shapes only; the meta device skips allocation and init."""
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, **kwargs)


def _sizes(model):
    return [count_parameters(s) for s in model.stages], count_parameters(model.head), count_parameters(model)


@pytest.mark.parametrize("classes,head,total", [
    (10, 5_147_510, 11_938_294), (100, 5_372_600, 12_163_384), (200, 5_622_700, 12_413_484),
])
def test_vgg8_parameter_counts(classes, head, total):
    assert _sizes(_meta("vgg8", classes)) == ([299_136, 1_771_008, 2_360_320, 2_360_320], head, total)


def test_resnet18_parameter_counts():
    model = _meta("resnet18", 10)
    stem = 1_856
    assert count_parameters(model.stages[0][:3]) == stem
    assert _sizes(model) == ([stem + 147_968, 591_104, 2_361_856, 9_442_304], 5_130, 12_550_218)


def test_convnet_parameter_count():
    assert count_parameters(_meta("convnet", 10)) == 6_318_430


def test_lstm_parameter_counts():
    stages, head, total = _sizes(_meta("lstm", 4, vocab_size=30_000))
    assert stages == [9_000_000, 1_444_800, 2_164_800, 2_164_800]
    assert head == TEXT_HEAD
    assert total == 14_865_904


def test_transformer_parameter_counts_have_no_dead_copies():
    stages, head, total = _sizes(_meta("transformer", 4, vocab_size=30_000))
    assert stages == [9_000_000, BLOCK, BLOCK, BLOCK]
    assert total == 9_000_000 + 3 * BLOCK + TEXT_HEAD


def test_cifar_resnet_module_boundaries_match_contsup():
    # ResNet-32 K=4 ends modules after (stage 1, block 2), (2, 1), (3, 0): 4 units each.
    assert module_sizes(32, 4) == [4, 4, 4, 4]
    assert module_sizes(32, 16) == [1] * 16
    assert module_sizes(110, 2) == [28, 27]
    assert sum(module_sizes(110, 16)) == 55
    for name, total in (("resnet32", 16), ("resnet110", 55)):
        for k in (2, 4, 8, 16):
            model = _meta(name, 10, modules=k)
            assert model.num_stages == k
            assert sum(len(s) for s in model.stages) == total + 1  # + the final pool
            assert model.feature_dims[-1] == 64
    with pytest.raises(ValueError, match=r"\[2, 4, 8, 16\]"):
        create_model("resnet32", num_classes=10, modules=3)


def _input(model: StagedModel, batch: int = 2, length: int = 12):
    g = torch.Generator().manual_seed(0)
    if model.modality == "vision":
        return torch.randn(batch, 3, 32, 32, generator=g)
    tokens = torch.randint(1, model.stages[0].embedding.num_embeddings, (batch, length), generator=g)
    tokens[0, length // 2:] = 0  # trailing padding
    return tokens


@pytest.mark.parametrize("name", VISION + TEXT)
def test_forward_equals_stage_loop_and_sequential(name):
    torch.manual_seed(0)
    kwargs = {"vocab_size": 100} if name in TEXT else {}
    model = create_model(name, num_classes=7, **kwargs).eval()  # eval: dropout off
    x = _input(model)
    with torch.no_grad():
        logits = model(x)
        payload = x
        for k, stage in enumerate(model.stages):
            payload = stage(payload)
            assert model.reduce(k, payload).shape == (2, model.feature_dims[k])
        manual = model.head(model.reducers[-1](payload))
        sequential = nn.Sequential(*model.stages)(x)
    assert logits.shape == (2, 7)
    assert torch.equal(logits, manual)
    assert torch.equal(model.head(model.reducers[-1](sequential)), logits)
    assert model.modality == ("text" if name in TEXT else "vision")


@pytest.mark.parametrize("name", VISION + TEXT)
def test_meta_device_forward(name):
    """The harness validates cells with a forward on the meta device (no memory, no time)."""
    model = _meta(name, 3)
    x = torch.zeros((2, 12), dtype=torch.long, device="meta") if name in TEXT else torch.zeros(2, 3, 32, 32, device="meta")
    with torch.no_grad():
        assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", VISION + TEXT)
def test_pickles_with_its_reducers(name):
    """Process-based executors ship the model to each rank by pickle, reducers included."""
    model = create_model(name, num_classes=3, **({"vocab_size": 50} if name in TEXT else {})).eval()
    clone = pickle.loads(pickle.dumps(model))
    x = _input(model)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_lstm_passes_final_state_between_stages():
    model = create_model("lstm", num_classes=2, vocab_size=50).eval()
    emb, mask, h, c = model.stages[0](_input(model))
    assert h is None and c is None and mask.dtype == torch.bool and emb.shape == (2, 12, 300)
    out, mask2, h1, c1 = model.stages[1]((emb, mask, h, c))
    assert out.shape == (2, 12, 600) and h1.shape == c1.shape == (2, 2, 300) and mask2 is mask
    # stage 3 starting from stage 2's state differs from starting at zeros
    with torch.no_grad():
        seeded = model.stages[2]((out, mask, h1, c1))[0]
        fresh = model.stages[2]((out, mask, None, None))[0]
    assert not torch.allclose(seeded, fresh)


def test_text_embedding_weights_initialise_and_train():
    weights = torch.randn(50, 300)
    model = create_model("lstm", num_classes=2, vocab_size=50, embedding_weights=weights)
    table = model.stages[0].embedding.weight
    assert torch.equal(table, weights) and table.requires_grad
    with pytest.raises(ValueError, match=r"\(50, 300\)"):
        create_model("transformer", num_classes=2, vocab_size=50, embedding_weights=torch.randn(49, 300))


@pytest.mark.parametrize("positional_encoding", [False, True])
def test_transformer_all_padding_row_is_finite(positional_encoding):
    model = create_model("transformer", num_classes=2, vocab_size=50, positional_encoding=positional_encoding)
    tokens = torch.zeros(2, 12, dtype=torch.long)
    tokens[1, :4] = 7
    for mode in (model.train, model.eval):
        mode()
        payload = tokens
        for k, stage in enumerate(model.stages):
            payload = stage(payload)
            assert torch.isfinite(model.reduce(k, payload)).all()
        assert torch.isfinite(model(tokens)).all()


@pytest.mark.parametrize("positional_encoding", [False, True])
def test_transformer_ignores_padding(positional_encoding):
    """A sentence's features do not depend on how much padding follows it."""
    torch.manual_seed(0)
    model = create_model("transformer", num_classes=2, vocab_size=50, positional_encoding=positional_encoding).eval()
    short = torch.zeros(1, 8, dtype=torch.long)
    short[0, :5] = torch.tensor([3, 9, 4, 7, 2])
    long = torch.cat([short, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, b = model.stages[0](short), model.stages[0](long)
        for k, stage in enumerate(model.stages[1:], start=1):
            a, b = stage(a), stage(b)
            torch.testing.assert_close(model.reduce(k, a), model.reduce(k, b))
        torch.testing.assert_close(model(short), model(long))


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownModelError, match="vgg8") as info:
        create_model("vgg9", num_classes=10)
    assert "vgg9" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert set(VISION + TEXT) <= set(list_models())


def test_unknown_keyword_is_an_error():
    with pytest.raises(TypeError):
        create_model("vgg8", num_classes=10, vocab_size=5)


@pytest.mark.parametrize("costs,devices,expected", [
    ([1, 1, 1, 5], 2, [3, 1]),
    ([4, 1, 1, 1], 2, [1, 3]),
    ([1, 1, 1, 1], 2, [2, 2]),
    ([1, 1, 1], 2, [1, 2]),  # tie: the earlier device gets fewer stages
    ([2, 2, 2, 2], 4, [1, 1, 1, 1]),
    ([3, 1, 4, 1, 5], 1, [5]),
    ([5, 1, 1, 1, 1], 3, [1, 1, 3]),
    ([1, 2, 3, 4, 5, 6], 3, [3, 2, 1]),
    ([0, 0, 0], 2, [1, 2]),  # all ties: the earlier device gets fewer stages
])
def test_contiguous_balance(costs, devices, expected):
    assert contiguous_balance(costs, devices) == expected


def test_contiguous_balance_is_optimal_by_brute_force():
    import itertools
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        costs = torch.rand(6, generator=g).tolist()
        for devices in range(1, 7):
            cuts = itertools.combinations(range(1, 6), devices - 1)
            best = min(max(sum(costs[a:b]) for a, b in zip((0,) + c, c + (6,))) for c in cuts)
            balance = contiguous_balance(costs, devices)
            bounds = [sum(balance[:i]) for i in range(devices + 1)]
            got = max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:]))
            assert len(balance) == devices and min(balance) >= 1
            assert got == pytest.approx(best, rel=1e-12)


def test_even_balance():
    assert even_balance(4, 2) == [2, 2]
    assert even_balance(10, 4) == [2, 2, 3, 3]
    assert even_balance(4, 1) == [4]


@pytest.mark.parametrize("stages,devices", [(4, 5), (4, 0), (4, -1), (4, 2.0), (4, True)])
def test_validate_split_lists_valid_device_counts(stages, devices):
    with pytest.raises(ValueError, match=r"choose devices in \[1, 2, 3, 4\]"):
        validate_split(stages, devices)


def test_validate_split_accepts_every_count_up_to_stages():
    for n in range(1, 5):
        validate_split(4, n)
    with pytest.raises(ValueError):
        contiguous_balance([1.0, float("nan")], 2)
