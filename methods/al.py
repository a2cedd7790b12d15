"""Associated Learning (Wu et al., ICLR 2022); on N devices it is Pipeline AL.

Per stage k: the encoder f_k (the model's stage), g_k encoding the label path
(t_0 = one-hot(y)), the bridge b_k and the decoder h_k.  Two local losses:
bridge MSE(b_k(reduce(f_k(s))), g_k(t_{k-1})) with the target detached by
default (one older version does not detach: option `detach_bridge_target`),
and autoencoder MSE(h_k(g_k(t_{k-1})), t_{k-1}).  Inference: f_1..f_K, then
b_K, then h_K..h_1 back to the label space; argmax.  The model's head is unused.

The stage payload is (s, t, t_in): the feature path, the label path, and the
stage's label-path input (needed by the autoencoder loss).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models import StagedModel, count_parameters, payload_to

from .base import DecoupledMethod, MethodConfig, MethodOptions, StageStep, make_optimizer
from .registry import register_method

__all__ = ["AL", "ALStageStep"]

# label-path width per model (reference: 500 for VGG/ResNet, 300 for the vanilla CNN, 128 for NLP)
DEFAULT_HIDDEN = {"vgg8": 500, "resnet18": 500, "convnet": 300}
TEXT_HIDDEN = 128


class ALBlock(nn.Module):
    """g (label encoder), b (bridge) and h (label decoder) of one stage."""

    def __init__(self, feature_dim: int, label_in: int, hidden: int, modality: str, bridge_factor: int):
        super().__init__()
        if modality == "text":
            act: type[nn.Module] = nn.Tanh
            self.bridge = nn.Sequential(nn.Linear(feature_dim, hidden), act())
        else:
            act = nn.Sigmoid
            self.bridge = nn.Sequential(
                nn.Linear(feature_dim, bridge_factor * hidden), act(),
                nn.Linear(bridge_factor * hidden, hidden), act(),
            )
        self.label_encoder = nn.Sequential(nn.Linear(label_in, hidden), act())
        self.label_decoder = nn.Sequential(nn.Linear(hidden, label_in), act())


class ALObjective(nn.Module):
    def __init__(self, reducer, block: ALBlock, detach_target: bool):
        super().__init__()
        self.reducer = reducer
        self.block = block
        self.detach_target = detach_target

    def forward(self, out, y: torch.Tensor) -> torch.Tensor:
        s, t, t_in = out
        target = t.detach() if self.detach_target else t
        bridge = F.mse_loss(self.block.bridge(self.reducer(s)), target)
        autoencoder = F.mse_loss(self.block.label_decoder(t), t_in)
        return bridge + autoencoder


class ALStageStep(StageStep):
    """A stage step whose forward also advances the label path."""

    def __init__(self, index, encoder, objective, make_opt, block: ALBlock, num_classes: int):
        super().__init__(index, encoder, objective, make_opt)
        self.block = block
        self.num_classes = num_classes

    def encode(self, x, y):
        if self.index == 0:
            s, t_in = x, F.one_hot(y, self.num_classes).float()
        else:
            s, t_in = x[0], x[1]
        return self.encoder(s), self.block.label_encoder(t_in), t_in


class ALOptions(MethodOptions):
    hidden: Optional[int] = Field(None, ge=1, description="None = the reference width for the model")
    detach_bridge_target: bool = True
    bridge_factor: int = Field(5, ge=1)


@register_method("al")
class AL(DecoupledMethod):
    display_name = "AL"
    schedule = "decoupled"
    paper_order = 20
    report_order = 70
    colour = "tab:gray"
    Options = ALOptions
    options: ALOptions

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        super().__init__(model, config)
        opts = self.options
        default_hidden = TEXT_HIDDEN if model.modality == "text" else 500
        hidden = int(opts.hidden or DEFAULT_HIDDEN.get(getattr(model, "name", ""), default_hidden))
        factor = opts.bridge_factor
        label_dims = [model.num_classes] + [hidden] * (model.num_stages - 1)
        # a typed list for the code, the ModuleList for parameters, devices and state dicts
        self.block_list = [ALBlock(dim, label_in, hidden, model.modality, factor)
                           for dim, label_in in zip(model.feature_dims, label_dims)]
        self.blocks = nn.ModuleList(self.block_list)
        detach = opts.detach_bridge_target
        self.steps = [
            ALStageStep(
                k, stage, ALObjective(model.reducers[k], self.block_list[k], detach),
                lambda p: make_optimizer(p, config), self.block_list[k], model.num_classes,
            )
            for k, stage in enumerate(model.stages)
        ]



    def modules(self) -> list[nn.Module]:
        return [self.model, self.blocks]

    # Inference: f_1..f_K (the stages, `Method.predict_stage`), bridge b_K, then decoders h_K..h_1
    # down to the label space; h_k lives with stage k, so on ranks the way back visits every rank.
    return_path = True

    def predict_head(self, x) -> torch.Tensor:
        """Bridge b_K on the last stage's reduced output: the label-path code the decoders start from."""
        return self.block_list[-1].bridge(self.model.reducers[-1](x))

    def predict_return(self, k: int, t: torch.Tensor) -> torch.Tensor:
        """Decoder h_k; h_1's output is the prediction in the label space."""
        block = self.block_list[k]
        return block.label_decoder(payload_to(t, next(block.parameters()).device))

    def parameter_counts(self) -> tuple[int, int]:
        """Effective: f's + b_K + every h; affiliated: every g and b_1..b_{K-1}. The unused head counts nowhere."""
        stages = count_parameters(self.model.stages)
        decoders = sum(count_parameters(b.label_decoder) for b in self.block_list)
        effective = stages + count_parameters(self.block_list[-1].bridge) + decoders
        affiliated = sum(count_parameters(b.label_encoder) for b in self.block_list) + sum(
            count_parameters(b.bridge) for b in self.block_list[:-1]
        )
        return effective, affiliated
