"""ContSup: greedy local learning with context supply (Tab-ct/ContSup, on CIFAR-style ResNets).

The network (ResNet-32 / -110, `models/cifar_resnet.py`, K = 2, 4, 8, 16
modules via the model's `modules` keyword) is trained module by module: module
k < K-1 by its auxiliary head's local loss, the last module by the network's
own classifier (cross-entropy, gradient into the module, as in the reference).
Module k's input is h_{k-1}.detach() plus encoded, detached context (see
`contsup_context.py` for the modes R0, E, R1, R1E, Rn).  No gradient crosses
modules, so the stage steps run unchanged on the N-device pipeline.

Stage payload: module 0 gets the image; module k >= 1 gets the tuple
(h_{k-1}, image or None, a_{k-1}, ..., a_{k-n}) - the previous output, the
image when mode E needs it, and the last n module inputs when mode Rn does.

Options (`method_options` in a grid):
  context      R0 | E | R1 | R1E | Rn | RnE (default "E", the reference default)
  local_loss   "contrast" (aux head -> 128-d, normalise, SupCon, tau 0.07; the
               reference default) | "cross_entropy" (aux head -> C logits)
  temperature  SupCon temperature (default 0.07; the grid's SCPL `temperature`
               setting is not used)
  feature_dim  width of the aux head's hidden FC and of the contrast output (128)

Parameters: effective = the network plus the context encoders (inference runs
them); affiliated = the auxiliary heads.

Memory per module (the reference claims savings but measures none): every row has
`train_mem_bytes`, counted per module step by `bench/cell/training_memory.py` (saved
activations + parameters + gradients + optimizer state) on any device, beside
BP's whole-network number; `peak_mem_per_device` is the allocator's view (per
module only with one module per CUDA device; one process peak RSS on CPU).
"""
from __future__ import annotations

import copy
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models import StagedModel, payload_to
from models.description import ModelDescription
from models.staged import Payload

from .base import DecoupledMethod, MethodConfig, MethodOptions, StageStep, make_optimizer
from .contsup_context import ContextMode, ContextSupply
from .losses import supcon_loss
from .registry import register_method

__all__ = ["ContSup", "AuxHead", "ContextualModule", "contsup_supcon_loss", "LOCAL_LOSS_MODES"]

LOCAL_LOSS_MODES = ("contrast", "cross_entropy")
DEFAULT_TEMPERATURE = 0.07
DEFAULT_FEATURE_DIM = 128


def contsup_supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """SupCon as the ContSup reference computes it (Khosla et al.'s code, one view).

    Each anchor's positive log-probabilities are averaged over its |P(i)|
    positives (|P(i)| = 0 counts as 1, so such an anchor contributes 0) and the
    mean is over *all* anchors.  That is the textbook variant (mean over anchors
    with a positive) times the share of anchors that have one.  The reference's
    factor temperature / base_temperature is 0.07 / 0.07 = 1 and is left out.
    """
    same = labels.view(-1, 1) == labels.view(1, -1)
    with_positive = (same.sum(dim=1) > 1).to(features.dtype).mean()
    return supcon_loss(features, labels, temperature, "textbook") * with_positive


def _aux_conv(channels: int) -> tuple[int, int]:
    """(width, stride) of the 1c2f head's conv: 16 -> 32 and 32 -> 64 at stride 2, 64 -> 64 at stride 1.

    The reference builds heads for 16, 32 and 64 channels only; other widths
    (a VGG's 256/512) follow the same rule: double and halve the map below 64
    channels, keep both from 64 up.
    """
    return (2 * channels, 2) if channels < 64 else (channels, 1)


class AuxHead(nn.Module):
    """Auxiliary net "1c2f": conv3x3 -> BN -> ReLU -> GAP -> FC(->feature_dim) -> ReLU -> FC(->out)."""

    def __init__(self, channels: int, out_features: int, feature_dim: int = DEFAULT_FEATURE_DIM) -> None:
        super().__init__()
        width, stride = _aux_conv(channels)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(width, feature_dim), nn.ReLU(),
            nn.Linear(feature_dim, out_features),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(h)


class AuxObjective(nn.Module):
    """Local loss of module k < K-1 on its output h_k (before any context is added)."""

    def __init__(self, head: AuxHead, mode: str, temperature: float) -> None:
        super().__init__()
        self.head = head
        self.mode = mode
        self.temperature = temperature

    def forward(self, out: Payload, y: torch.Tensor) -> torch.Tensor:
        z = self.head(out[0])
        if self.mode == "contrast":
            return contsup_supcon_loss(F.normalize(z, dim=1), y, self.temperature)
        return F.cross_entropy(z, y)


class ClassifierObjective(nn.Module):
    """The last module's loss: the network's own classifier, gradient into the module (reference)."""

    def __init__(self, reducer, head: nn.Module) -> None:
        super().__init__()
        self.reducer = reducer
        self.head = head

    def forward(self, out: Payload, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.reducer(out[0])), y)


class ContextualModule(nn.Module):
    """Module k with its context supply: payload in, payload out (see the module docstring)."""

    def __init__(self, index: int, stage: nn.Module, supply: Optional[ContextSupply], mode: ContextMode) -> None:
        super().__init__()
        self.index = index
        self.stage = stage
        self.supply = supply
        self.mode = mode

    def forward(self, payload: Payload) -> tuple:
        n = self.mode.residual
        if self.index == 0:
            image = payload
            a = image
            # the image is a_0; with the image encoder on, the reference leaves it out of the R slots
            recent: tuple = (None if self.mode.image else image,)
        else:
            h, image, *rest = payload
            assert self.supply is not None, "every module after the first has a context supply"
            a = self.supply(h, image, rest)
            recent = (a, *rest)
        recent = (recent + (None,) * n)[:n]
        return (self.stage(a), image if self.mode.image else None, *recent)


def _module_channels(model: StagedModel) -> tuple[int, list[int]]:
    """(image channels, output channels of every module but the last), from a shape-only forward.

    Raises with an explanation when a module boundary is not a (B, C, H, W) map,
    since the aux head and the context encoders are convolutional.
    """
    first_conv = next((m for m in model.stages[0].modules() if isinstance(m, nn.Conv2d)), None)
    if model.modality != "vision" or first_conv is None:
        raise ValueError("contsup needs a convolutional vision model (e.g. resnet32 / resnet110)")
    in_channels = first_conv.in_channels
    probe = copy.deepcopy(model.stages).to("meta")  # shapes only: no memory, no compute
    x = torch.zeros(2, in_channels, 32, 32, device="meta")
    channels = []
    with torch.no_grad():
        for k, stage in enumerate(probe[:-1]):
            x = stage(x)
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise ValueError(
                    f"contsup: module {k}'s output is not a (B, C, H, W) feature map; its aux head and "
                    "context encoders are convolutional: use resnet32 / resnet110 (model_kwargs: {modules: K})"
                )
            channels.append(x.shape[1])
    return in_channels, channels


class ContSupOptions(MethodOptions):
    context: str = Field("E", description="R0 | E | R<n> | R<n>E (ContextMode grammar)")
    local_loss: Literal["contrast", "cross_entropy"] = "contrast"
    temperature: float = Field(DEFAULT_TEMPERATURE, gt=0)
    feature_dim: int = Field(DEFAULT_FEATURE_DIM, ge=1)


@register_method("contsup")
class ContSup(DecoupledMethod):
    display_name = "ContSup"
    schedule = "decoupled"
    paper_order = 50
    report_order = 90
    colour = "tab:cyan"
    Options = ContSupOptions
    options: ContSupOptions

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        opts = self.options
        self.mode = ContextMode.parse(opts.context)
        self.local_loss = opts.local_loss
        temperature = opts.temperature
        feature_dim = opts.feature_dim
        num = model.num_stages
        if self.mode.residual > num - 1:
            raise ValueError(
                f"contsup: context {self.mode.name} reaches {self.mode.residual} modules back, but "
                f"{num} modules have only {num - 1} boundaries; use R1..R{max(num - 1, 1)}"
            )
        image_channels, channels = _module_channels(model)
        input_channels = [image_channels] + channels  # a_0 .. a_{K-1}
        out = feature_dim if self.local_loss == "contrast" else model.num_classes
        heads = [AuxHead(c, out, feature_dim) for c in channels]
        supplies = [ContextSupply(k, self.mode, input_channels[:k], channels[k - 1]) for k in range(1, num)]
        self.aux_heads = nn.ModuleList(heads)
        self.supplies = nn.ModuleList(supplies)
        last = num - 1
        self.steps = []
        for k, stage in enumerate(model.stages):
            module = ContextualModule(k, stage, supplies[k - 1] if k else None, self.mode)
            objective = (
                ClassifierObjective(model.reducers[k], model.head) if k == last
                else AuxObjective(heads[k], self.local_loss, temperature)
            )
            self.steps.append(StageStep(k, module, objective, lambda p: make_optimizer(p, config)))

    @classmethod
    def incompatibility(cls, *, model: ModelDescription, batch_size: int, devices: int,
                        options: dict) -> str | None:
        if model.modality != "vision" or not model.convolutional or not model.feature_maps_between_stages:
            return (f"contsup trains convolutional modules with conv aux heads, so every module boundary must be "
                    f"a (B, C, H, W) feature map; {model.name} ({model.modality}) outputs {list(model.stage_outputs)}: "
                    "use resnet32 / resnet110")
        opts = cls.Options.model_validate(options)
        try:
            mode = ContextMode.parse(opts.context)
        except ValueError as exc:
            return str(exc)
        if mode.residual > model.num_stages - 1:
            return (f"context {mode.name} reaches {mode.residual} modules back, but {model.num_stages} modules have "
                    f"only {model.num_stages - 1} boundaries; use R1..R{max(model.num_stages - 1, 1)}")
        if opts.local_loss == "contrast" and batch_size < 2:
            return f"local_loss contrast needs >= 2 samples per batch, got batch_size {batch_size}"
        return None

    def modules(self) -> list[nn.Module]:
        return [self.model, self.supplies, self.aux_heads]

    def affiliated_modules(self) -> list[nn.Module]:
        return [self.aux_heads]

    # The deployed network: every module with its context supply, then the classifier.
    def predict_stage(self, k: int, x: Payload) -> Payload:
        step = self.steps[k]
        return step.encoder(payload_to(x, step.device))

    def predict_head(self, x: Payload) -> torch.Tensor:
        return self.model.head(self.model.reducers[-1](x[0]))

    def parameter_counts(self) -> tuple[int, int]:
        """(network + context encoders, aux heads): the encoders run at inference too."""
        effective, affiliated = super().parameter_counts()
        return effective + sum(p.numel() for p in self.supplies.parameters()), affiliated
