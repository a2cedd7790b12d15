"""Readers of the official vision releases into uint8 tensors (N, 3, H, W) and int64 labels.

Why our own readers instead of torchvision's dataset classes: torchvision
checks the MD5 of every archive member, so it rejects the tiny files the tests
write, and it would offer to download. These readers parse the same official
formats and raise `DatasetFileError` naming the path and the URL.
Normalisation and augmentation happen later, per batch (`in_memory`).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .sources import bad_file, register_reader

__all__ = ["VisionArrays", "TINY_IMAGENET_SIDE"]

TINY_IMAGENET_SIDE = 32  # the reference resizes Tiny-ImageNet's 64x64 images to 32x32
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


@dataclass
class VisionArrays:
    """A vision dataset's official train and test splits, decoded, not normalised."""

    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor


def _labels(values: Any, count: int, classes: int, name: str, path: Path) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1))
    if labels.numel() != count:
        raise bad_file(name, path, f"{labels.numel()} labels for {count} images")
    if count and (labels.min() < 0 or labels.max() >= classes):
        raise bad_file(name, path, f"labels outside 0..{classes - 1} (found {labels.min()}..{labels.max()})")
    return labels


# --- CIFAR: python pickles of dicts {b'data': uint8 (N, 3072), b'labels' | b'fine_labels': [N]} ---

def _read_cifar_batch(path: Path, label_key: str, classes: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the official files are Python 2 pickles
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise bad_file(name, path, f"not a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise bad_file(name, path, f"expected a dict, found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise bad_file(name, path, f"expected keys b'data' and b'{label_key}', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise bad_file(name, path, f"b'data' must be uint8 (N, 3072), found {data.dtype} {data.shape}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, _labels(batch[label_key], images.shape[0], classes, name, path)


def _read_cifar(paths: list[Path], train_count: int, label_key: str, classes: int, name: str) -> VisionArrays:
    parts = [_read_cifar_batch(p, label_key, classes, name) for p in paths]
    train, test = parts[:train_count], parts[train_count:]
    return VisionArrays(torch.cat([p[0] for p in train]), torch.cat([p[1] for p in train]),
                        torch.cat([p[0] for p in test]), torch.cat([p[1] for p in test]))


_CIFAR10 = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + ("cifar-10-batches-py/test_batch",)


@register_reader("cifar10", _CIFAR10, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 "the CIFAR-10 python version, unpacked into the data root")
def read_cifar10(root: Path) -> VisionArrays:
    return _read_cifar([root / f for f in _CIFAR10], 5, "labels", 10, "cifar10")


_CIFAR100 = ("cifar-100-python/train", "cifar-100-python/test")


@register_reader("cifar100", _CIFAR100, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "the CIFAR-100 python version, unpacked into the data root (fine labels are used)")
def read_cifar100(root: Path) -> VisionArrays:
    return _read_cifar([root / f for f in _CIFAR100], 1, "fine_labels", 100, "cifar100")


# --- Tiny-ImageNet: JPEG folders; val labels from val/val_annotations.txt ---

def _decode(path: Path, side: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            # Some Tiny-ImageNet images are grayscale; bilinear + PIL's antialiasing = torchvision Resize.
            return np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken image
        raise bad_file("tinyimagenet", path, f"cannot decode image ({exc})") from None


def _images(paths: list[Path], side: int) -> torch.Tensor:
    array = np.empty((len(paths), side, side, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        array[i] = _decode(path, side)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())


def _tiny_val(val: Path, classes: dict[str, int]) -> tuple[list[Path], list[int]]:
    annotations = val / "val_annotations.txt"
    if annotations.is_file():  # the official layout: val/images/*.JPEG + an annotations file
        paths, labels = [], []
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in classes:
                raise bad_file("tinyimagenet", annotations,
                               f"line {number}: expected '<file>\\t<wnid>\\t...' with a wnid of train/, got {line!r}")
            path = val / "images" / fields[0]
            if not path.is_file():
                raise bad_file("tinyimagenet", path, f"listed in {annotations.name} but missing")
            paths.append(path)
            labels.append(classes[fields[1]])
        return paths, labels
    paths, labels = [], []  # the ImageFolder layout val/<wnid>/... that some scripts produce
    for wnid, label in classes.items():
        found = _image_files(val / wnid) if (val / wnid).is_dir() else []
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise bad_file("tinyimagenet", annotations, "missing, and val/ has no <wnid>/ image folders either")
    return paths, labels


@register_reader("tinyimagenet", ("tiny-imagenet-200/train/", "tiny-imagenet-200/val/"),
                 "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                 "tiny-imagenet-200.zip unpacked into the data root: train/<wnid>/images/*.JPEG, "
                 "val/images/*.JPEG + val/val_annotations.txt", cache=True)
def read_tinyimagenet(root: Path) -> VisionArrays:
    base = root / "tiny-imagenet-200"
    wnids = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())  # ImageFolder's class order
    if not wnids:
        raise bad_file("tinyimagenet", base / "train", "no class folders <wnid>/")
    classes = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid, label in classes.items():
        found = _image_files(base / "train" / wnid)
        train_paths += found
        train_labels += [label] * len(found)
    test_paths, test_labels = _tiny_val(base / "val", classes)
    side = TINY_IMAGENET_SIDE
    return VisionArrays(_images(train_paths, side), torch.tensor(train_labels, dtype=torch.long),
                        _images(test_paths, side), torch.tensor(test_labels, dtype=torch.long))


# --- SVHN: MATLAB files with X (32, 32, 3, N) uint8 and y (N, 1) in 1..10 (10 means digit 0) ---

def _read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ModuleNotFoundError("reading SVHN .mat files needs scipy: pip install scipy==1.17.1") from None
    try:
        mat = loadmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for a damaged file
        raise bad_file("svhn", path, f"not a MATLAB v5 file ({exc})") from None
    if "X" not in mat or "y" not in mat:
        raise bad_file("svhn", path, f"expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}")
    x = np.asarray(mat["X"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise bad_file("svhn", path, f"X must be (32, 32, 3, N), found {x.shape}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    y = np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise bad_file("svhn", path, f"y must hold 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    return images, _labels(y % 10, images.shape[0], 10, "svhn", path)  # 10 -> 0, as torchvision


@register_reader("svhn", ("train_32x32.mat", "test_32x32.mat"), "http://ufldl.stanford.edu/housenumbers/",
                 "the cropped-digits files train_32x32.mat and test_32x32.mat (format 2) in the data root")
def read_svhn(root: Path) -> VisionArrays:
    return VisionArrays(*_read_svhn_mat(root / "train_32x32.mat"), *_read_svhn_mat(root / "test_32x32.mat"))


# --- STL-10: raw uint8, each image 3 x 96 x 96 stored channel-major, column-major within a channel ---

def _read_stl(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    raw = np.fromfile(images, dtype=np.uint8)
    size = 3 * 96 * 96
    if raw.size % size:
        raise bad_file("stl10", images, f"{raw.size} bytes is not a multiple of 3*96*96")
    x = torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())
    y = np.fromfile(labels, dtype=np.uint8).astype(np.int64) - 1  # files hold 1..10
    return x, _labels(y, x.shape[0], 10, "stl10", labels)


_STL = tuple(f"stl10_binary/{n}" for n in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"))


@register_reader("stl10", _STL, "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
                 "stl10_binary.tar.gz unpacked into the data root (the unlabelled split is not used)")
def read_stl10(root: Path) -> VisionArrays:
    return VisionArrays(*_read_stl(root / _STL[0], root / _STL[1]), *_read_stl(root / _STL[2], root / _STL[3]))
