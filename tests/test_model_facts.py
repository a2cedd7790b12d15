"""bench.predict's model sizes from the meta device: the same as the real model's, and cheap to get."""
import json
import subprocess
import sys

import pytest
import torch

from bench import REPO_ROOT
from bench.predict.model_facts import _count
from data import get_spec
from models.build import build_model


@pytest.mark.parametrize("model,dataset,kwargs", [
    ("vgg8", "cifar10@synthetic", {}),  # batch norm
    ("resnet18", "cifar10@synthetic", {}),
    ("lstm", "imdb@synthetic", {"vocab_size": 50, "embed_dim": 8, "hidden_size": 6}),  # recurrent, 350 tokens
])
def test_meta_sizes_equal_the_real_forwards(model, dataset, kwargs):
    facts = _count(model, dataset, json.dumps(kwargs))
    spec = get_spec(dataset)
    torch.manual_seed(0)
    staged = build_model(model, spec, **kwargs).eval()
    x = (torch.randint(1, 50, (2, *spec.input_shape)) if spec.modality == "text"
         else torch.randn(2, *spec.input_shape))
    real = []
    with torch.no_grad():
        for stage in staged.stages:
            x = stage(x)
            tensors = x if isinstance(x, (tuple, list)) else (x,)
            real.append(sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)) / 2)
    assert list(facts.activation_bytes) == real
    params = [sum(p.numel() * 4 for p in stage.parameters()) for stage in staged.stages]
    params[-1] += sum(p.numel() * 4 for p in staged.head.parameters())
    assert list(facts.parameter_bytes) == params
    assert sum(facts.flop_share) == pytest.approx(1.0) and min(facts.flop_share) >= 0  # an embedding: none


@pytest.mark.slow
def test_describing_a_batch_norm_model_does_not_import_the_compiler():
    # batch norm's meta forward runs a decomposition that imports torch._dynamo: a second of
    # the first prediction of every results folder (bench/benchmark/predict_speed.py)
    code = ("import sys; from bench.predict.model_facts import _count; _count('vgg8', 'cifar10@synthetic', '{}'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
