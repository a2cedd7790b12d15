"""Batch augmentations on tensors: "basic" crop + flip, and the "strong" second view.

Why on batches of tensors rather than per-PIL-image transforms: synthetic
twins have no images, the harness pre-builds whole batches, and one vectorised
gather per batch costs far less than a Python loop over samples.

* "basic" = RandomCrop(side, padding = side / 8) + horizontal flip, as the
  reference (padding 4 at 32x32, 12 at STL-10's 96x96). Inputs are already
  normalised, so padding is 0 in normalised space: the dataset's mean colour,
  where the reference (crop before normalise) pads black. A negligible change.
* "strong" (two views, SCPL's contrastive batches): `[weak(x), strong(x)]`, both
  drawn independently from the same raw batch x, as the references'
  `TwoCropTransform(weak_transform, strong_transform)` (DASCPL
  `utils/vision.py:81,152-155`; SCPL `main.py:128`).  weak = the dataset's own
  training augmentation (`augment: basic` is the references' weak transform,
  crop + flip; `none` leaves view 1 raw); strong = crop + flip +
  ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8 + RandomGrayscale(0.2)
  (`utils/vision.py:31-40`).  The batch doubles and labels are duplicated, so
  the other view is a positive through its label; every method trains on the
  2N samples (the references concatenate both views for BP too).
  Jitter is applied in pixel space: the tensor is de-normalised with
  the given `mean`/`std`, jittered, clamped to [0, 1] (torchvision semantics)
  and re-normalised. Without `mean`/`std` it assumes pixel = 0.5 + 0.25 x and
  does not clamp (close to every constant in this package; never clips
  synthetic values). Differences from torchvision: a fixed order (brightness,
  contrast, saturation, hue, instead of a random order) and hue shifted by a
  rotation in YIQ colour space, a linear approximation of the HSV hue shift.
* Text has no augmentation in the references; the harness's strong text view
  replaces a fraction (`text_mask_rate`, default 0.1) of non-pad tokens with
  `<unk>` (token dropout). Pass 0 to make view 2 an exact copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "random_crop_flip", "BasicAugment", "color_jitter", "random_grayscale", "strong_view",
    "mask_tokens", "two_view_batch",
]

PAD, UNK = 0, 1
_LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ (NTSC); hue rotation turns the chroma plane (I, Q).
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _uniform(n: int, low: float, high: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_crop_flip(x: torch.Tensor, generator: Optional[torch.Generator] = None,
                     padding: Optional[int] = None) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch (B, C, H, W) and a random horizontal flip."""
    b, c, h, w = x.shape
    pad = max(1, h // 8) if padding is None else padding
    padded = F.pad(x, (pad, pad, pad, pad))
    width = w + 2 * pad
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(0)[None, :], cols[None, :]) + left[:, None]
    rows = torch.arange(h)[None, :] + top[:, None]
    flat = (rows[:, :, None] * width + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, flat.to(x.device)).reshape(b, c, h, w)


@dataclass(frozen=True)
class BasicAugment:
    """The "basic" training augmentation as a dataset batch transform."""

    padding: int

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, self.padding)


def _gray(pixels: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * weights).sum(1, keepdim=True)


def color_jitter(pixels: torch.Tensor, apply: torch.Tensor, generator: Optional[torch.Generator] = None,
                 strength: Sequence[float] = (0.4, 0.4, 0.4, 0.1), clamp: bool = True) -> torch.Tensor:
    """ColorJitter on pixel-space RGB (B, 3, H, W) for the samples where `apply` is True."""
    b = pixels.shape[0]
    brightness, contrast, saturation, hue = strength
    keep = ~apply.cpu()  # factors are drawn on the CPU generator, then moved to the pixels' device

    def factors(amount: float) -> torch.Tensor:
        f = _uniform(b, max(0.0, 1 - amount), 1 + amount, generator)
        return f.masked_fill(keep, 1.0).view(b, 1, 1, 1).to(pixels)

    def limit(t: torch.Tensor) -> torch.Tensor:
        return t.clamp(0.0, 1.0) if clamp else t

    out = limit(pixels * factors(brightness))
    f = factors(contrast)
    out = limit(f * out + (1 - f) * _gray(out).mean(dim=(2, 3), keepdim=True))
    f = factors(saturation)
    out = limit(f * out + (1 - f) * _gray(out))
    angle = (_uniform(b, -hue, hue, generator) * 2 * math.pi).masked_fill(keep, 0.0)
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(b, 3, 3)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(pixels)
    return limit(torch.einsum("bij,bjhw->bihw", matrix, out))


def random_grayscale(pixels: torch.Tensor, p: float = 0.2, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Replace each sample by its 3-channel luma image with probability `p`."""
    chosen = (torch.rand(pixels.shape[0], generator=generator) < p).view(-1, 1, 1, 1).to(pixels.device)
    return torch.where(chosen, _gray(pixels).expand_as(pixels), pixels)


def strong_view(x: torch.Tensor, generator: Optional[torch.Generator] = None,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """The strong view of a normalised batch: crop + flip, jitter (p 0.8), grayscale (p 0.2)."""
    exact = mean is not None and std is not None
    m = torch.tensor(mean if exact else (0.5, 0.5, 0.5), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std if exact else (0.25, 0.25, 0.25), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    pixels = random_crop_flip(x, generator) * s + m
    apply = torch.rand(x.shape[0], generator=generator) < 0.8
    pixels = color_jitter(pixels, apply, generator, clamp=exact)
    pixels = random_grayscale(pixels, 0.2, generator)
    return (pixels - m) / s


def mask_tokens(tokens: torch.Tensor, rate: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Replace each non-pad token with `<unk>` with probability `rate` (token dropout)."""
    if rate <= 0:
        return tokens.clone()
    hit = (torch.rand(tokens.shape, generator=generator) < rate).to(tokens.device) & (tokens != PAD)
    return tokens.masked_fill(hit, UNK)


def two_view_batch(x: torch.Tensor, y: torch.Tensor, modality: str, *,
                   mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                   generator: Optional[torch.Generator] = None,
                   text_mask_rate: float = 0.1,
                   weak: Optional[Callable[[torch.Tensor, Any], torch.Tensor]] = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The "strong" two-view batch of the *raw* batch x: [weak(x); strong(x)] and [y; y] (2N samples).

    Both views are drawn from x itself, view 1 first, so view 2 is never a crop
    of view 1 (`weak`: view 1's augmentation, e.g. the dataset's `BasicAugment`;
    None keeps view 1 = x).  `mean`/`std` (e.g. `spec.mean`, `spec.std`) make
    the colour jitter exact; `generator` defaults to torch's global generator,
    so `torch.manual_seed` makes the views reproducible.
    """
    first = weak(x, generator) if weak is not None else x
    if modality == "vision":
        second = strong_view(x, generator, mean, std)
    elif modality == "text":
        second = mask_tokens(x, text_mask_rate, generator)
    else:
        raise ValueError(f"unknown modality {modality!r}; choose 'vision' or 'text'")
    return torch.cat([first, second]), torch.cat([y, y])
