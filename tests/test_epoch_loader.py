"""The streaming epoch loader: reshuffled per epoch by seed, augmented per epoch, independent of workers."""
import torch

from data import load_dataset
from data.epochs import EpochStream, batches_per_epoch, epoch_order


def _labels(stream: EpochStream, epoch: int) -> list[int]:
    return torch.cat([y for _, y in stream.epoch(epoch)]).tolist()


def test_order_differs_by_epoch_and_repeats_by_seed():
    assert not torch.equal(epoch_order(100, 0, 1), epoch_order(100, 0, 2))
    assert torch.equal(epoch_order(100, 0, 1), epoch_order(100, 0, 1))
    assert not torch.equal(epoch_order(100, 0, 1), epoch_order(100, 1, 1))
    train = load_dataset("cifar10@synthetic", "train", val_fraction=0.0, max_train_items=40)
    first = [_labels(s, e) for s in [EpochStream(train, 8, 3, 1, 1, 2)] for e in (1, 2)]
    again = [_labels(s, e) for s in [EpochStream(train, 8, 3, 1, 1, 2)] for e in (1, 2)]
    assert first == again and first[0] != first[1]
    assert sorted(first[0]) == sorted(train.labels().tolist())  # a whole pass, each item once


def test_augmentation_is_drawn_per_epoch_and_does_not_depend_on_workers_or_start():
    train = load_dataset("cifar10@synthetic", "train", val_fraction=0.0, augment="basic", max_train_items=24)
    in_process = [[x for x, _ in s.epoch(e)] for s in [EpochStream(train, 8, 0, 2, 1, 2)] for e in (1, 2)]
    workers = EpochStream(train, 8, 0, 2, 1, 2, workers=2)
    with_workers = [[x for x, _ in workers.epoch(e)] for e in (1, 2)]
    resumed = [x for x, _ in EpochStream(train, 8, 0, 2, 2, 2).epoch(2)]  # a run resumed at epoch 2
    for a, b in zip(in_process, with_workers):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(in_process[1], resumed))
    assert in_process[0][0].shape == (16, 3, 32, 32)  # two views


def test_epoch_batches_drop_only_a_one_item_tail():
    assert batches_per_epoch(17, 8) == 2 and batches_per_epoch(18, 8) == 3 and batches_per_epoch(16, 8) == 2


def test_reading_data_leaves_the_global_generator_alone():
    """Model init and dropout draw from torch's global generator; loading (with or without workers) must not,
    or a cell's network would depend on `data_workers` (data/loader.py `private_generator`)."""
    from data.prepared import prepare_batches

    train = load_dataset("cifar10@synthetic", "train", val_fraction=0.0, max_train_items=16)
    state = torch.get_rng_state()
    prepare_batches(train, 8, 2, 0, 1, "vision", workers=1)
    for workers in (0, 1):
        stream = EpochStream(train, 8, 0, 1, 1, 1, workers=workers)
        list(stream.epoch(1))
        stream.close()
    assert torch.equal(torch.get_rng_state(), state)
