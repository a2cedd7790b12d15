"""Counter-based random numbers: the value at (key, position) without any state.

Why: a synthetic item must be the same whichever batch, worker or order asks
for it, and a batch must be generated in a few vectorised array operations.
A stateful generator gives neither cheaply; hashing (key, counter) with the
SplitMix64 finaliser (Steele et al., "Fast splittable pseudorandom number
generators", OOPSLA 2014) gives both. NumPy's uint64 arithmetic wraps
modulo 2**64, which is exactly what the hash needs (torch's int64 lacks a
logical right shift).
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import torch

__all__ = ["stream_id", "item_keys", "random_bits", "uniform", "normal"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64 with good avalanche."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def stream_id(name: str) -> int:
    """A stable integer for a named purpose ("labels", "noise", ...), same in every process."""
    return zlib.crc32(name.encode("utf-8"))


def item_keys(seed: int, stream: int, split: int, indices: torch.Tensor) -> np.ndarray:
    """One uint64 key per item, a hash of (seed, stream, split, index)."""
    head = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(_mix(_mix(head) + np.uint64(stream)) + np.uint64(split))
        idx = indices.detach().cpu().numpy().astype(np.uint64, copy=False)
        return _mix(base + idx * _GOLDEN)


def random_bits(keys: np.ndarray, count: int) -> np.ndarray:
    """`count` independent uint64 words per key: shape (len(keys), count)."""
    with np.errstate(over="ignore"):
        counters = (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        return _mix(keys[:, None] ^ counters)


def uniform(keys: np.ndarray, count: int) -> torch.Tensor:
    """Float64 uniforms in [0, 1), shape (len(keys), count), from the top 53 bits."""
    bits = random_bits(keys, count) >> np.uint64(11)
    return torch.from_numpy(bits.astype(np.float64) * (1.0 / 2**53))


def normal(keys: np.ndarray, count: int) -> torch.Tensor:
    """Float32 standard normals (Box-Muller on two 24-bit halves of one word)."""
    bits = random_bits(keys, count)
    high = torch.from_numpy((bits >> np.uint64(40)).astype(np.float32))
    low = torch.from_numpy((bits & np.uint64(0xFFFFFF)).astype(np.float32))
    u1 = (high + 0.5) * 2.0**-24  # in (0, 1): the log stays finite
    radius = torch.sqrt(torch.log(u1).mul_(-2.0))
    return radius.mul_(torch.cos(low.mul_(2 * math.pi * 2.0**-24)))
