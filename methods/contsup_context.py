"""ContSup's context supply: what module k receives besides the previous module's output.

Greedy local learning (mode R0) feeds module k only h_{k-1}, the detached
output of module k-1; what h_{k-1} has thrown away is lost to every later
module.  ContSup ("context supply", Tab-ct/ContSup, `ContSupNode`) adds
encoded, detached *context* to that input, so module k sees

    a_k = h_{k-1}.detach()
          + [E]  ImageEncoder_k(image.detach())
          + [Rn] sum_{r < n} InputEncoder_{k,r}(a_{k-1-r}.detach())

where a_j is module j's input (a_0 is the image).  Encoders map their input to
h_{k-1}'s channels and average-pool it to h_{k-1}'s H x W, so the sum is
well-formed.  Modes: R0 (nothing), E, R1, R1E, and generally Rn / RnE.

Who trains the encoders: module k's local loss, because a_k feeds module k;
their inputs are detached, so no gradient reaches an earlier module.  That is
exactly the reference's behaviour (it backpropagates module k's loss through
the sum into the node's encoders) and keeps modules pipelinable.  The encoders
also run at inference (the deployed network needs a_k), so they are
*effective* parameters, not affiliated ones.

Two reference details kept: with the image encoder on, the image is not also
fed to an input encoder ("skip x when encoder works": R1E's first boundary
sees only ImageEncoder(image)); and the image encoder's convs have biases.
One not kept: the reference *builds* that skipped input encoder anyway
(a dead conv in R1E); here it is never created.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContextMode", "ImageEncoder", "InputEncoder", "ContextSupply", "CONTEXT_MODES"]

CONTEXT_MODES = ("R0", "E", "R1", "R1E", "Rn", "RnE")  # documentation of the grammar below
_MODE = re.compile(r"^(?:R(?P<n>\d+))?(?P<e>E?)$")
IMAGE_ENCODER_WIDTH = 12  # the reference's hidden width (times `widen`, 1 here)


@dataclass(frozen=True)
class ContextMode:
    """`residual` earlier module inputs (Rn) and/or the image (E) as context."""

    residual: int
    image: bool

    @classmethod
    def parse(cls, text: str) -> "ContextMode":
        """"R0", "E", "R1", "R1E", "R2", "R4", ... (RnE too)."""
        match = _MODE.match(str(text))
        if not match or (match["n"] is None and not match["e"]):
            raise ValueError(
                f"context mode {text!r} unknown: write R0 (none), E (image), Rn (the last n module "
                f"inputs, e.g. R1) or RnE (both, e.g. R1E)"
            )
        return cls(int(match["n"] or 0), bool(match["e"]))

    @property
    def name(self) -> str:
        if self.residual == 0:
            return "E" if self.image else "R0"
        return f"R{self.residual}" + ("E" if self.image else "")


class ImageEncoder(nn.Module):
    """E: conv3x3 in->12 + BN + ReLU, conv3x3 12->C + BN + ReLU, pooled to the module's H x W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        width = IMAGE_ENCODER_WIDTH
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(),
        )

    def forward(self, image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(image), (int(size[0]), int(size[1])))


class InputEncoder(nn.Module):
    """R: conv1x1 + BN + ReLU of an earlier module's input, pooled to the module's H x W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), (int(size[0]), int(size[1])))


class ContextSupply(nn.Module):
    """The context added to module k's input (k >= 1).

    Args:
        index: k, the module whose input this builds.
        mode: which context.
        input_channels: channels of a_0 .. a_{k-1}, the inputs of modules 0 .. k-1 (a_0: the image).
        channels: channels of h_{k-1}, the tensor the context is added to.
    """

    def __init__(self, index: int, mode: ContextMode, input_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        if index < 1:
            raise ValueError("module 0 has no context: its input is the image")
        self.index = index
        self.mode = mode
        self.image_encoder: Optional[ImageEncoder] = ImageEncoder(input_channels[0], channels) if mode.image else None
        # slot r encodes a_{k-1-r}; None where that input does not exist or is the image the E path covers
        self.input_encoders = nn.ModuleList()
        self.slots: list[int] = []
        for r in range(mode.residual):
            j = index - 1 - r
            if j < 0 or (j == 0 and mode.image):
                continue
            self.slots.append(r)
            self.input_encoders.append(InputEncoder(input_channels[j], channels))

    def forward(self, h: torch.Tensor, image: Optional[torch.Tensor], recent: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        """a_k from h_{k-1}, the image and recent = (a_{k-1}, a_{k-2}, ...), all already detached."""
        size = h.shape[-2:]
        out = h
        if self.image_encoder is not None:
            out = out + self.image_encoder(image, size)
        for r, encoder in zip(self.slots, self.input_encoders):
            out = out + encoder(recent[r], size)
        return out
