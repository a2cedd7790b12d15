"""What a built network is, in a few facts a method can check before any cell runs.

Why: some methods only fit some networks (ContSup's auxiliary heads and
context encoders are convolutional, so every module boundary must be a
(B, C, H, W) feature map).  The grid builds each model once on the `meta`
device (no memory, no compute) and hands this description to
`Method.incompatibility`, so a method x model mismatch is one line at load
time rather than a failed cell an hour later.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .meta_forward import shape_only_forwards
from .staged import Payload, StagedModel

__all__ = ["ModelDescription", "describe_model", "payload_kind"]

PayloadKind = Literal["feature_map", "sequence", "vector", "tuple", "other"]


@dataclass(frozen=True)
class ModelDescription:
    """name, modality, stage count, and the kind of payload each stage outputs."""

    name: str
    modality: str
    num_stages: int
    stage_outputs: tuple[PayloadKind, ...]
    convolutional: bool  # the first stage contains a Conv2d

    @property
    def feature_maps_between_stages(self) -> bool:
        """Every stage boundary carries a (B, C, H, W) map (what convolutional aux heads need)."""
        return all(kind == "feature_map" for kind in self.stage_outputs[:-1])


def payload_kind(payload: Payload) -> PayloadKind:
    """feature_map (B, C, H, W), sequence (B, T, D), vector (B, D), tuple (text payloads), other."""
    if isinstance(payload, tuple):
        return "tuple"
    if isinstance(payload, torch.Tensor):
        kinds: dict[int, PayloadKind] = {4: "feature_map", 3: "sequence", 2: "vector"}
        return kinds.get(payload.dim(), "other")
    return "other"


def describe_model(model: StagedModel, sample: torch.Tensor, name: str = "") -> ModelDescription:
    """Describe `model` by running `sample` through its stages (use the meta device: shapes only)."""
    outputs = []
    x: Payload = sample
    # batch norm's and an LSTM's meta forwards are slow (torch._dynamo's import; a decomposition
    # per time step): within shape_only_forwards they only shape their outputs
    with torch.no_grad(), shape_only_forwards(model):
        for stage in model.stages:
            x = stage(x)
            outputs.append(payload_kind(x))
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.stages[0].modules())
    return ModelDescription(name or getattr(model, "name", ""), model.modality, model.num_stages,
                            tuple(outputs), convolutional)
