"""The Transformer's stage is the reference's encoder block (models/encoder_block.py)."""
import math

import torch

from models import count_parameters, create_model
from models.encoder_block import EncoderBlockStage, ReferenceLayerNorm


def test_block_ends_with_its_own_layer_norm():
    """DASCPL's Encoder applies `self.norm` after its layers (encoder.py:18,24)."""
    torch.manual_seed(0)
    block = EncoderBlockStage(16, 2, 24, dropout=0.0).eval()
    names = [name for name, _ in block.named_parameters()]
    assert {"norm.weight", "norm.bias"} <= set(names)
    assert count_parameters(block) == 4 * (16 * 16 + 16) + (16 * 24 + 24) + (24 * 16 + 16) + 3 * 2 * 16
    x, mask = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        block.norm.weight.fill_(2.0)
        block.norm.bias.fill_(1.0)
        out, _ = block((x, mask))
    # after the final norm every position has mean = bias and unbiased std = weight (up to eps)
    torch.testing.assert_close(out.mean(-1), torch.ones(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(-1), torch.full((3, 5), 2.0), atol=1e-4, rtol=0)


def test_reference_layer_norm_formula():
    """a * (x - mean) / (std + eps) + b with the unbiased std (layer_norm.py:15-17), not nn.LayerNorm."""
    x = torch.randn(4, 7, 10)
    norm = ReferenceLayerNorm(10)
    expected = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected)
    assert not torch.allclose(norm(x), torch.nn.functional.layer_norm(x, (10,)), atol=1e-4)


def test_matrices_start_xavier_uniform():
    """Every matrix xavier-uniform (encoder.py:48-51), each attention projection on its own."""
    torch.manual_seed(0)
    d, d_ff = 64, 96
    block = EncoderBlockStage(d, 4, d_ff, dropout=0.1)
    matrices = list(block.attention.in_proj_weight.split(d)) + [block.attention.out_proj.weight]
    matrices += [block.feed_forward[0].weight, block.feed_forward[3].weight]
    for w in matrices:
        fan_out, fan_in = w.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound
        # uniform on [-bound, bound] has std bound / sqrt(3): PyTorch's default (kaiming, 1/sqrt(fan_in)) is not
        assert abs(float(w.detach().std()) - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    # biases keep nn.Linear's init: not zero as nn.MultiheadAttention leaves them
    assert block.attention.in_proj_bias.abs().max() > 0 and block.attention.out_proj.bias.abs().max() > 0


def test_transformer_stages_are_reference_blocks():
    model = create_model("transformer", num_classes=2, vocab_size=50, blocks=2)
    assert all(isinstance(stage, EncoderBlockStage) for stage in model.stages[1:])
