"""Two-view batches as the references build them: both views from the raw image (data/augment.py)."""
import torch

from data import load_dataset
from data.augment import random_crop_flip, strong_view, two_view_batch
from data.epochs import _AUGMENT_STREAM, EpochStream, epoch_seed


def test_both_views_come_from_the_raw_batch():
    """[weak(x), strong(x)] (DASCPL utils/vision.py:81,155; SCPL main.py:128), not strong(weak(x))."""
    idx = torch.arange(8)
    raw, y = load_dataset("cifar10@synthetic", "train", seed=0).get_batch(idx)
    augmented = load_dataset("cifar10@synthetic", "train", seed=0, augment="basic")
    spec = augmented.spec
    x2, y2 = augmented.get_batch(idx, generator=torch.Generator().manual_seed(5), views=2)
    replay = torch.Generator().manual_seed(5)  # the same draws, in the same order: view 1, then view 2
    view1 = random_crop_flip(raw, replay, padding=4)
    view2 = strong_view(raw, replay, spec.mean, spec.std)
    assert torch.equal(x2[:8], view1) and torch.equal(x2[8:], view2) and torch.equal(y2, torch.cat([y, y]))
    cropped_twice = strong_view(view1, torch.Generator().manual_seed(5), spec.mean, spec.std)
    assert not torch.allclose(x2[8:], cropped_twice)


def test_view_two_is_not_a_crop_of_view_one():
    """With an identity 'strong' transform, view 2 is the raw batch itself while view 1 is cropped."""
    x = torch.randn(6, 3, 16, 16)
    y = torch.arange(6)
    weak = lambda batch, g: random_crop_flip(batch, g, padding=2)  # noqa: E731
    both, _ = two_view_batch(x, y, "vision", generator=torch.Generator().manual_seed(0), weak=weak)
    assert not torch.equal(both[:6], x)
    plain, _ = two_view_batch(x, y, "vision", generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain[:6], x)  # no weak transform: view 1 is the raw batch
    # view 2 never depends on view 1: the same raw batch gives the same view 2 whatever view 1 drew
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    random_crop_flip(x, g1, padding=2)
    expected = strong_view(x, g1)
    with_weak, _ = two_view_batch(x, y, "vision", generator=g2, weak=weak)
    assert torch.equal(with_weak[6:], expected)


def test_training_stream_two_views_are_raw_based_and_seeded():
    """The epoch loader asks the dataset for both views (one generator per batch), so workers do not matter."""
    train = load_dataset("cifar10@synthetic", "train", val_fraction=0.0, augment="basic", max_train_items=16)
    plain = load_dataset("cifar10@synthetic", "train", val_fraction=0.0, max_train_items=16)
    (x, y), = list(EpochStream(train, 16, 0, 2, 1, 1).epoch(1))
    (raw, _), = list(EpochStream(plain, 16, 0, 1, 1, 1).epoch(1))  # same order, no augmentation
    assert x.shape == (32, 3, 32, 32) and torch.equal(y[:16], y[16:])
    assert not torch.equal(x[:16], raw) and not torch.equal(x[16:], raw)
    spec = train.spec
    # replay the batch's generator: view 2 is strong(raw), drawn after view 1's crop and flip
    g = torch.Generator().manual_seed(epoch_seed(0, 1, _AUGMENT_STREAM) + 0)
    assert torch.equal(x[:16], random_crop_flip(raw, g, padding=4))
    assert torch.equal(x[16:], strong_view(raw, g, spec.mean, spec.std))
