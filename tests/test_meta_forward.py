"""Shape-only meta forwards (models/meta_forward.py) return exactly the shapes of the real forwards."""
import pytest
import torch
from torch import nn

from models.meta_forward import rnn_output_shapes, shape_only_forwards


def _shapes(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return tuple(_shapes(v) for v in value)


@pytest.mark.parametrize("make,x_shape,with_state", [
    (lambda: nn.LSTM(5, 7, batch_first=True, bidirectional=True), (3, 11, 5), False),
    (lambda: nn.LSTM(5, 7, num_layers=2, proj_size=4), (11, 3, 5), False),
    (lambda: nn.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=4, batch_first=True), (3, 11, 5), True),
    (lambda: nn.LSTM(5, 7), (11, 5), False),  # unbatched
    (lambda: nn.GRU(5, 7, num_layers=3, bidirectional=True), (11, 3, 5), True),
    (lambda: nn.RNN(5, 7, batch_first=True), (3, 11, 5), False),
])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_recurrent_shapes_equal_the_real_forwards(make, x_shape, with_state):
    torch.manual_seed(0)
    rnn = make()
    x = torch.randn(x_shape)
    state = None
    if with_state:
        _, state = rnn(x)
    real = rnn(x, state)
    shaped = rnn_output_shapes(rnn, x, state)
    assert _shapes(shaped) == _shapes(real)


def test_only_meta_modules_are_swapped_and_only_inside_the_block():
    real = nn.Sequential(nn.BatchNorm1d(4), nn.LSTM(4, 3))
    meta = nn.Sequential(nn.BatchNorm1d(4), nn.LSTM(4, 3)).to("meta")
    with shape_only_forwards(real), shape_only_forwards(meta):
        assert "forward" not in vars(real[0]) and "forward" not in vars(real[1])
        assert "forward" in vars(meta[0]) and "forward" in vars(meta[1])
        x = torch.zeros(6, 4, device="meta")
        assert meta[0](x) is x  # batch norm keeps the shape: the input itself
        assert _shapes(meta[1](x)) == ((6, 3), ((1, 3), (1, 3)))
    assert "forward" not in vars(meta[0]) and "forward" not in vars(meta[1])
