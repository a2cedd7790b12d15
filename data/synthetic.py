"""Synthetic twins: the real datasets' shapes and sizes, learnable, made on demand.

Why: a speed benchmark needs the tensor traffic of the real data, not its
bytes, and CI has no downloads. Items are generated per index from a hash of
(seed, pool, index) (`counter_rng`), so a twin is never materialised, any
batch comes out in a few vectorised operations, and the same item is the same
in every process. The seed changes the samples; the class structure
(prototypes, indicative words) depends only on the dataset name, so every
seed poses the same task, like a real dataset would.

* Vision: each class has a smooth prototype (a sum of a few low-frequency
  coloured 2-D cosines); an item is its class prototype, circularly shifted
  by up to side/8 pixels, plus white noise. The mix is scaled to roughly unit
  variance per pixel, i.e. it looks like normalised data.
* Text: each class has `INDICATIVE_WORDS` words of its own; a token is one of
  them with probability `INDICATIVE_RATE`, otherwise a common word drawn from
  a Zipf law shared by all classes. Lengths are uniform in [max_len/5,
  max_len]; the rest is `<pad>` = 0. `<unk>` = 1 never occurs. Batches are
  laid out as real ones are (`data/text_layout.py`: by default as wide as
  their longest item).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from .batched import BatchedDataset, BatchTransform
from .counter_rng import item_keys, normal, random_bits, stream_id
from .spec import DatasetSpec
from .text_layout import TextOptions

__all__ = ["SyntheticVision", "SyntheticText", "synthetic_vocab", "INDICATIVE_WORDS", "INDICATIVE_RATE"]

PROTOTYPE_WEIGHT = 0.35  # signal share of each pixel's variance: 0.35**2 = 12%
NOISE_WEIGHT = 0.94
COMPONENTS = 4  # cosines per prototype
MAX_FREQUENCY = 2  # cycles per image side: smooth, so small shifts keep the class
INDICATIVE_WORDS = 20
INDICATIVE_RATE = 0.2
ZIPF_OFFSET = 10.0  # flattens the head of the common-word law a little

_POOLS = {"train": 0, "val": 0, "test": 1}  # val is a hold-out of the train pool


def _structure_generator(base: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_id("structure:" + base))


@functools.lru_cache(maxsize=None)
def _prototypes(base: str, classes: int, side: int) -> torch.Tensor:
    """(classes, 3, side, side) zero-mean unit-variance smooth patterns, fixed per dataset."""
    g = _structure_generator(base)
    freq = torch.randint(-MAX_FREQUENCY, MAX_FREQUENCY + 1, (classes, COMPONENTS, 2), generator=g).float()
    freq[..., 0] = torch.where((freq == 0).all(-1), 1.0, freq[..., 0])  # no constant components
    phase = torch.rand(classes, COMPONENTS, generator=g) * 2 * math.pi
    colour = torch.randn(classes, COMPONENTS, 3, generator=g)
    grid = torch.arange(side, dtype=torch.float32) / side * 2 * math.pi
    # angle[c, k, y, x] = fy * Y + fx * X + phase
    angle = (freq[..., 1, None, None] * grid[:, None] + freq[..., 0, None, None] * grid[None, :]
             + phase[..., None, None])
    pattern = torch.einsum("ckd,ckyx->cdyx", colour, torch.cos(angle))
    flat = pattern.reshape(classes, -1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return flat.reshape(classes, 3, side, side).contiguous()


class SyntheticVision(BatchedDataset):
    """Images of a vision twin, generated per index (see the module docstring)."""

    def __init__(self, spec: DatasetSpec, split: str, positions: torch.Tensor,
                 label_offsets: Optional[torch.Tensor] = None,
                 transform: Optional[BatchTransform] = None, seed: int = 0) -> None:
        super().__init__(spec, split, positions, label_offsets, transform, seed)
        self.pool = _POOLS[split]
        _, self.side, _ = spec.input_shape
        self.prototypes = _prototypes(spec.base, spec.num_classes, self.side)

    def _words(self, positions: torch.Tensor) -> torch.Tensor:
        keys = item_keys(self.seed, stream_id("vision-item"), self.pool, positions)
        return torch.from_numpy((random_bits(keys, 3) >> 33).astype("int64"))  # 31-bit draws

    def _fetch_labels(self, positions: torch.Tensor) -> torch.Tensor:
        return self._words(positions)[:, 0] % self.spec.num_classes

    def _fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, side = positions.shape[0], self.side
        words = self._words(positions)
        y = words[:, 0] % self.spec.num_classes
        reach = max(1, side // 8)
        shift_y = words[:, 1] % (2 * reach + 1) - reach
        shift_x = words[:, 2] % (2 * reach + 1) - reach
        axis = torch.arange(side)
        rows = (axis[None, :] + shift_y[:, None]) % side
        cols = (axis[None, :] + shift_x[:, None]) % side
        flat = (rows[:, :, None] * side + cols[:, None, :]).reshape(b, 1, -1).expand(b, 3, side * side)
        signal = self.prototypes[y].reshape(b, 3, -1).gather(2, flat).reshape(b, 3, side, side)
        keys = item_keys(self.seed, stream_id("vision-noise"), self.pool, positions)
        noise = normal(keys, 3 * side * side).reshape(b, 3, side, side)
        return signal.mul_(PROTOTYPE_WEIGHT).add_(noise, alpha=NOISE_WEIGHT), y


def synthetic_vocab(spec: DatasetSpec) -> list[str]:
    """Readable names for the twin's token ids (index i is the word of id i)."""
    classes, size = spec.num_classes, spec.vocab_size or 0
    indicative = [f"class{c}_word{k}" for c in range(classes) for k in range(INDICATIVE_WORDS)]
    common = [f"word{r}" for r in range(size - 2 - len(indicative))]
    return ["<pad>", "<unk>"] + indicative + common


@functools.lru_cache(maxsize=None)
def _common_cdf(vocab_size: int, classes: int) -> torch.Tensor:
    count = vocab_size - 2 - classes * INDICATIVE_WORDS
    weights = 1.0 / (torch.arange(count, dtype=torch.float64) + ZIPF_OFFSET)
    cdf = weights.cumsum(0) / weights.sum()
    cdf[-1] = 1.0
    return cdf


class SyntheticText(BatchedDataset):
    """Token sequences of a text twin, generated per index (see the module docstring)."""

    def __init__(self, spec: DatasetSpec, split: str, positions: torch.Tensor,
                 label_offsets: Optional[torch.Tensor] = None,
                 transform: Optional[BatchTransform] = None, seed: int = 0,
                 layout: Optional[TextOptions] = None) -> None:
        super().__init__(spec, split, positions, label_offsets, transform, seed)
        self.layout = layout or TextOptions()
        self.pool = _POOLS[split]
        self.max_len = int(spec.max_len or spec.input_shape[0])
        self.first_common = 2 + spec.num_classes * INDICATIVE_WORDS
        self.cdf = _common_cdf(int(spec.vocab_size or 0), spec.num_classes)

    @property
    def vocab(self) -> list[str]:
        return synthetic_vocab(self.spec)

    def _header(self, positions: torch.Tensor) -> torch.Tensor:
        keys = item_keys(self.seed, stream_id("text-item"), self.pool, positions)
        return torch.from_numpy((random_bits(keys, 2) >> 33).astype("int64"))

    def _fetch_labels(self, positions: torch.Tensor) -> torch.Tensor:
        return self._header(positions)[:, 0] % self.spec.num_classes

    def _fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        header = self._header(positions)
        y = header[:, 0] % self.spec.num_classes
        shortest = max(1, self.max_len // 5)
        length = shortest + header[:, 1] % (self.max_len - shortest + 1)
        keys = item_keys(self.seed, stream_id("text-tokens"), self.pool, positions)
        bits = random_bits(keys, self.max_len)
        pick = torch.from_numpy((bits >> 32).astype("float64")) * 2.0**-32
        word = torch.from_numpy((bits & 0xFFFFFFFF).astype("float64")) * 2.0**-32
        indicative = 2 + y[:, None] * INDICATIVE_WORDS + (word * INDICATIVE_WORDS).long()
        common = self.first_common + torch.searchsorted(self.cdf, word)
        tokens = torch.where(pick < INDICATIVE_RATE, indicative, common)
        tokens = tokens.masked_fill(torch.arange(self.max_len)[None, :] >= length[:, None], 0)
        return self.layout.lay_out(tokens), y
