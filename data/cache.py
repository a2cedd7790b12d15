"""A cache of decoded datasets under `<root>/.cache/`, keyed by the files' fingerprints.

Why: decoding 110k Tiny-ImageNet JPEGs or cleaning 560k DBpedia articles takes
minutes; each grid cell runs in its own process, so an in-memory cache would
not help. The key hashes every input file's (path, size, mtime) plus the
settings and `FORMAT_VERSION`, so a changed file or a changed pipeline never
reuses a stale entry. Set `SCPLBENCH_DATA_CACHE=0` to bypass it; an unwritable
root just skips writing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch

__all__ = ["CACHE_ENV", "FORMAT_VERSION", "fingerprint", "cached"]

CACHE_ENV = "SCPLBENCH_DATA_CACHE"
FORMAT_VERSION = 2  # bump when a reader or the text pipeline changes its output (2: text as the references clean and split it)

T = TypeVar("T")


def _entries(paths: Iterable[Path]) -> list[list]:
    rows = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            stat = f.stat()
            rows.append([str(f.resolve()), stat.st_size, stat.st_mtime_ns])
    return rows


def fingerprint(paths: Iterable[Path], settings: dict[str, Any]) -> str:
    """A short hash of the input files' (path, size, mtime) and the settings."""
    blob = json.dumps({"files": _entries(paths), "settings": settings, "v": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached(root: Path, name: str, key: str, cls: type[T], build: Callable[[], T]) -> T:
    """`build()`'s dataclass result, loaded from or saved to `<root>/.cache/<name>-<key>.pt`.

    `key` is `fingerprint(input files, settings)`.
    """
    if os.environ.get(CACHE_ENV, "1") == "0":
        return build()
    target = root / ".cache" / f"{name}-{key}.pt"
    if target.is_file():
        try:
            return cls(**torch.load(target, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - a damaged entry is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable cache entry {target}: {exc}")
    value = build()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        torch.save({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, partial)  # type: ignore[arg-type]  # T is a dataclass
        os.replace(partial, target)  # atomic: concurrent cells never read half a file
    except OSError as exc:
        warnings.warn(f"could not write dataset cache {target}: {exc}")
    return value
