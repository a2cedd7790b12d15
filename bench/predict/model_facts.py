"""Per-stage sizes of a network, from the model built on the `meta` device (no memory, no compute).

What the simulator needs beyond times: the bytes a stage hands to the next
(activations forward, the same size of gradient back), the bytes of each
stage's parameters (DDP's all-reduce), and each stage's share of the forward
multiply-adds (the rule that splits a coupled method's measured step over its
stages when no trace says how).  Every size is linear in the batch, so they are
counted per sample, once per network: in memory for the process, and in
`<results>/predict_model_facts.json` across runs -- a meta-device forward of a
text model through an LSTM is decomposed step by step and takes seconds.

Multiply-adds are counted by forward hooks on the layers that do them
(convolutions, linear layers, LSTMs, attention), not by torch's FlopCounterMode,
whose first use imports torch._dynamo (seconds).
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from models.meta_forward import shape_only_forwards

__all__ = ["ModelFacts", "model_facts", "CACHE_NAME"]

_SAMPLE = 2  # samples in the meta-device forward
CACHE_NAME = "predict_model_facts.json"


@dataclass(frozen=True)
class ModelFacts:
    activation_bytes: tuple[float, ...]  # per sample: stage k's output payload
    parameter_bytes: tuple[float, ...]  # per stage; the head counted with the last stage
    flop_share: tuple[float, ...]  # each stage's share of the forward multiply-adds (parameters where none counted)


def _payload_bytes(payload) -> float:
    tensors = payload if isinstance(payload, (tuple, list)) else (payload,)
    return float(sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)))


def _bytes(module: nn.Module) -> float:
    return float(sum(p.numel() * p.element_size() for p in module.parameters()))


def _first(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


def _macs(module: nn.Module, inputs: tuple, out) -> float:
    """Forward multiply-adds of one layer call (0 for layers that do none worth counting)."""
    y = _first(out)
    if isinstance(module, nn.modules.conv._ConvNd):
        return y.numel() * module.weight[0].numel()
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    if isinstance(module, nn.RNNBase):
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        directions = 2 if module.bidirectional else 1
        steps = y.numel() / (module.hidden_size * directions)  # batch x time
        size = module.input_size + module.hidden_size
        return steps * directions * gates * module.hidden_size * size * module.num_layers
    if isinstance(module, nn.MultiheadAttention):
        x = inputs[0]
        tokens, width = x.numel() / x.shape[-1], x.shape[-1]
        length = x.shape[0] if not module.batch_first else x.shape[1]
        return tokens * (3 * width * width + 2 * length * width)  # projections in, scores and mix
    return 0.0


def _count(model: str, dataset: str, kwargs_json: str) -> ModelFacts:
    from data import get_spec
    from models.build import build_model

    spec = get_spec(dataset)
    staged = build_model(model, spec, "meta", **json.loads(kwargs_json))
    dtype = torch.long if spec.modality == "text" else torch.float
    x = torch.zeros((_SAMPLE, *spec.input_shape), dtype=dtype, device="meta")
    activations, macs = [], []
    counted = [0.0]

    def hook(module, inputs, out):
        counted[0] += float(_macs(module, inputs, out))

    handles = [m.register_forward_hook(hook) for m in staged.modules()]
    try:
        # batch norm's and an LSTM's meta forwards only shape their outputs (seconds saved);
        # _macs counts from shapes
        with torch.no_grad(), shape_only_forwards(staged):
            for stage in staged.stages:
                counted[0] = 0.0
                x = stage(x)
                macs.append(counted[0])
                activations.append(_payload_bytes(x) / _SAMPLE)
    finally:
        for h in handles:
            h.remove()
    params = [_bytes(stage) for stage in staged.stages]
    params[-1] += _bytes(staged.head)
    weights = macs if sum(macs) > 0 else [p or 1.0 for p in params]
    total = sum(weights) or 1.0
    return ModelFacts(tuple(activations), tuple(params), tuple(w / total for w in weights))


@functools.lru_cache(maxsize=None)
def _in_memory(model: str, dataset: str, kwargs_json: str) -> ModelFacts:
    return _count(model, dataset, kwargs_json)


def model_facts(model: str, dataset: str, kwargs_json: str = "{}", cache_dir: Optional[Path] = None) -> ModelFacts:
    """Sizes of `model` built for `dataset`; `cache_dir`: read and keep them in its CACHE_NAME."""
    if cache_dir is None:
        return _in_memory(model, dataset, kwargs_json)
    path = Path(cache_dir) / CACHE_NAME
    key = f"{model}|{dataset}|{kwargs_json}"
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    if key in stored:
        return ModelFacts(**{k: tuple(v) for k, v in stored[key].items()})
    facts = _in_memory(model, dataset, kwargs_json)
    stored[key] = asdict(facts)
    try:
        path.write_text(json.dumps(stored, indent=1))
    except OSError:
        pass  # a read-only folder: the facts are simply counted again next time
    return facts
