"""Synthetic twins, splits, label noise and augmentation (no files, no downloads)."""
import dataclasses
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from data import UnknownDatasetError, get_spec, list_datasets, load_dataset, two_view_batch
from data.augment import BasicAugment, random_crop_flip
from data.counter_rng import item_keys, normal, uniform
from data.splits import label_noise_offsets, split_positions
from data.text_layout import TextOptions

REAL = ["cifar10", "cifar100", "tinyimagenet", "svhn", "stl10", "agnews", "imdb", "dbpedia14", "sst2"]
# name: (classes, input_shape, train, test)
EXPECTED = {
    "cifar10": (10, (3, 32, 32), 50_000, 10_000),
    "cifar100": (100, (3, 32, 32), 50_000, 10_000),
    "tinyimagenet": (200, (3, 32, 32), 100_000, 10_000),
    "svhn": (10, (3, 32, 32), 73_257, 26_032),
    "stl10": (10, (3, 96, 96), 5_000, 8_000),
    "agnews": (4, (60,), 120_000, 7_600),
    "imdb": (2, (350,), 40_000, 10_000),  # one file of 50,000, split 80/20 as the reference
    "dbpedia14": (14, (400,), 560_000, 70_000),
    "sst2": (2, (15,), 67_349, 872),
}


def test_registry_lists_every_real_dataset_and_its_twin():
    assert sorted(list_datasets()) == sorted(REAL + [n + "@synthetic" for n in REAL])


@pytest.mark.parametrize("name", REAL)
def test_twin_spec_equals_real_spec_but_kind(name):
    real, twin = get_spec(name), get_spec(name + "@synthetic")
    assert (real.kind, twin.kind) == ("real", "synthetic")
    assert dataclasses.replace(twin, name=name, kind="real") == real
    assert twin.base == name
    classes, shape, train, test = EXPECTED[name]
    assert (twin.num_classes, twin.input_shape, twin.train_size, twin.test_size) == (classes, shape, train, test)
    if twin.modality == "text":
        assert twin.vocab_size == 30_000 and twin.max_len == shape[0]
    else:
        assert twin.vocab_size is None and twin.max_len is None and len(twin.mean) == 3


def test_unknown_name_names_it_and_the_choices():
    with pytest.raises(UnknownDatasetError, match="mnist") as info:
        get_spec("mnist")
    assert "cifar10@synthetic" in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownDatasetError):
        load_dataset("cifar10@synth")


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "validation"}, "split"), ({"augment": "strong"}, "augment"),
    ({"val_fraction": 1.0}, "val_fraction"), ({"noise_rate": 1.5}, "noise_rate"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("cifar10@synthetic", **kwargs)


@pytest.mark.parametrize("name", REAL)
def test_twin_items_have_the_real_shapes(name):
    spec = get_spec(name + "@synthetic")
    full_width = TextOptions(padding="max_len")  # text batches as wide as max_len (by default: their longest item)
    train = load_dataset(spec.name, "train", text=full_width)
    val = load_dataset(spec.name, "val", text=full_width)
    test = load_dataset(spec.name, "test", text=full_width)
    assert len(train) + len(val) == spec.train_size and len(test) == spec.test_size
    assert len(val) == round(0.1 * spec.train_size)
    x, y = train.get_batch(torch.tensor([0, 1, len(train) - 1]))
    assert x.shape == (3, *spec.input_shape) and y.shape == (3,) and y.dtype == torch.long
    assert int(y.min()) >= 0 and int(y.max()) < spec.num_classes
    if spec.modality == "vision":
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
    else:
        assert x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) < spec.vocab_size
    item_x, item_y = test[len(test) - 1]
    assert item_x.shape == spec.input_shape and isinstance(item_y, int)


def test_vision_twin_looks_normalised():
    x, _ = load_dataset("cifar10@synthetic", "train").get_batch(torch.arange(256))
    assert abs(float(x.mean())) < 0.1 and 0.8 < float(x.std()) < 1.2


def test_items_are_deterministic_by_seed_split_and_index():
    a = load_dataset("cifar10@synthetic", "test", seed=3)
    b = load_dataset("cifar10@synthetic", "test", seed=3)
    c = load_dataset("cifar10@synthetic", "test", seed=4)
    idx = torch.tensor([7, 2, 9000])
    xa, ya = a.get_batch(idx)
    xb, yb = b.get_batch(idx.flip(0))
    assert torch.equal(xa, xb.flip(0)) and torch.equal(ya, yb.flip(0))  # independent of batch order
    single_x, single_y = a[2]
    assert torch.equal(single_x, xa[1]) and single_y == int(ya[1])
    assert not torch.equal(xa, c.get_batch(idx)[0])
    # a train item and a test item with the same position differ (different pools)
    assert not torch.equal(load_dataset("cifar10@synthetic", "train", val_fraction=0.0).get_batch([0])[0],
                           a.get_batch([0])[0])


def test_text_twin_is_deterministic_and_right_padded():
    ds = load_dataset("imdb@synthetic", "train", seed=1, text=TextOptions(padding="max_len"))
    x, y = ds.get_batch(torch.arange(64))
    x2, y2 = load_dataset("imdb@synthetic", "train", seed=1, text=TextOptions(padding="max_len")).get_batch(torch.arange(64))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    lengths = (x != 0).sum(1)
    assert int(lengths.min()) >= 350 // 5 and int(lengths.max()) <= 350
    positions = torch.arange(350)[None, :]
    assert torch.equal(x != 0, positions < lengths[:, None])  # padding only at the end
    assert not (x == 1).any()  # <unk> never generated
    assert len(ds.vocab) == 30_000 and ds.vocab[:2] == ["<pad>", "<unk>"]


def test_val_split_is_a_seeded_disjoint_holdout():
    train = split_positions("train", 1000, 10, 0.1, seed=5)
    val = split_positions("val", 1000, 10, 0.1, seed=5)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    assert torch.equal(val, split_positions("val", 1000, 10, 0.1, seed=5))
    assert not torch.equal(val, split_positions("val", 1000, 10, 0.1, seed=6))
    assert torch.equal(split_positions("test", 1000, 10, 0.1, seed=5), torch.arange(10))
    assert len(split_positions("val", 1000, 10, 0.0, seed=5)) == 0
    # datasets: train and val items come from disjoint positions of the same pool
    ds_train = load_dataset("cifar10@synthetic", "train", seed=2)
    ds_val = load_dataset("cifar10@synthetic", "val", seed=2)
    assert set(ds_train.positions.tolist()).isdisjoint(ds_val.positions.tolist())


def test_label_noise_flips_exactly_the_fraction_on_train_only():
    offsets = label_noise_offsets(1000, 0.2, 10, seed=0)
    assert int((offsets != 0).sum()) == 200 and int(offsets.max()) <= 9
    assert torch.equal(offsets, label_noise_offsets(1000, 0.2, 10, seed=0))
    clean = load_dataset("sst2@synthetic", "train", seed=0).labels()
    noisy_ds = load_dataset("sst2@synthetic", "train", seed=0, noise_rate=0.25)
    noisy = noisy_ds.labels()
    assert abs(float((clean != noisy).float().mean()) - 0.25) < 1e-4
    x, y = noisy_ds.get_batch(torch.arange(100))
    assert torch.equal(y, noisy[:100])
    for split in ("val", "test"):  # evaluation labels stay true
        assert torch.equal(load_dataset("sst2@synthetic", split, noise_rate=0.25).labels(),
                           load_dataset("sst2@synthetic", split).labels())


def test_basic_augmentation_crops_and_flips_but_keeps_shapes():
    plain = load_dataset("cifar10@synthetic", "train", seed=0)
    augmented = load_dataset("cifar10@synthetic", "train", seed=0, augment="basic")
    x0, y0 = plain.get_batch(torch.arange(16))
    x1, y1 = augmented.get_batch(torch.arange(16))
    assert x1.shape == x0.shape and torch.equal(y0, y1) and not torch.equal(x0, x1)
    assert torch.equal(x1, load_dataset("cifar10@synthetic", "train", seed=0, augment="basic")
                       .get_batch(torch.arange(16))[0])  # seeded
    assert load_dataset("cifar10@synthetic", "test", augment="basic").transform is None
    assert load_dataset("imdb@synthetic", "train", augment="basic").transform is None
    assert load_dataset("stl10@synthetic", "train", augment="basic").transform == BasicAugment(12)


def test_random_crop_flip_is_a_shifted_possibly_mirrored_window():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, t:t + 8, left:left + 8] for t in range(5) for left in range(5)]
        assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(-1)) for w in windows)


def test_two_view_batch_vision_doubles_batch_and_labels():
    x, y = load_dataset("cifar10@synthetic", "train").get_batch(torch.arange(8))
    spec = get_spec("cifar10@synthetic")
    for kwargs in ({}, {"mean": spec.mean, "std": spec.std}):
        x2, y2 = two_view_batch(x, y, "vision", generator=torch.Generator().manual_seed(0), **kwargs)
        assert x2.shape == (16, 3, 32, 32) and torch.equal(y2, torch.cat([y, y]))
        assert torch.equal(x2[:8], x) and not torch.equal(x2[8:], x) and torch.isfinite(x2).all()
        again, _ = two_view_batch(x, y, "vision", generator=torch.Generator().manual_seed(0), **kwargs)
        assert torch.equal(again, x2)


def test_two_view_batch_text_masks_only_real_tokens():
    x, y = load_dataset("sst2@synthetic", "train", text=TextOptions(padding="max_len")).get_batch(torch.arange(32))
    x2, y2 = two_view_batch(x, y, "text", generator=torch.Generator().manual_seed(0), text_mask_rate=0.5)
    assert x2.shape == (64, 15) and torch.equal(y2, torch.cat([y, y])) and torch.equal(x2[:32], x)
    view = x2[32:]
    changed = view != x
    assert changed.any() and torch.all(view[changed] == 1) and torch.equal(view == 0, x == 0)
    with pytest.raises(ValueError, match="modality"):
        two_view_batch(x, y, "audio")


def test_counter_rng_is_stateless_and_well_spread():
    keys = item_keys(0, 1, 0, torch.arange(64))
    u = uniform(keys, 1000)
    z = normal(keys, 1000)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert torch.equal(normal(item_keys(0, 1, 0, torch.tensor([5])), 1000)[0], z[5])


def test_dataloader_batch_of_128_is_fast():
    loader = DataLoader(load_dataset("cifar10@synthetic", "train"), batch_size=128, shuffle=True)
    batches = iter(loader)
    next(batches)  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x, y = next(batches)
        times.append(time.perf_counter() - start)
    assert x.shape == (128, 3, 32, 32) and y.shape == (128,)
    assert sorted(times)[2] < 0.2, times  # typically ~10 ms; generous for a loaded CI machine


def _fit(ds, model, steps, batch, lr, test):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = ds.get_batch(torch.randint(0, len(ds), (batch,), generator=order))
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = test.get_batch(torch.arange(500))
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_cifar10_twin_is_learnable_by_logistic_regression():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    accuracy = _fit(load_dataset("cifar10@synthetic", "train"), model, 200, 32, 1e-3,
                    load_dataset("cifar10@synthetic", "test"))
    assert accuracy > 0.5  # chance is 0.1


class _BagOfWords(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(30_000, 16, mode="mean", padding_idx=0)
        self.out = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x))


def test_imdb_twin_is_learnable_by_a_bag_of_words():
    torch.manual_seed(0)
    accuracy = _fit(load_dataset("imdb@synthetic", "train"), _BagOfWords(), 150, 32, 1e-2,
                    load_dataset("imdb@synthetic", "test"))
    assert accuracy > 0.8  # chance is 0.5
