"""Shape-only forwards on the `meta` device: describing a network without torch's decompositions.

Why: the grid's feasibility checks (models/description.py) and bench.predict's sizes
(bench/predict/model_facts.py) run a network built on the meta device, for shapes only.
Most layers cost nothing there, but two are slow: batch norm's meta forward goes through
a decomposition whose first use imports torch._dynamo (about a second), and a recurrent
layer's is decomposed time step by time step (4.4 s for the paper's LSTM over 350
tokens, on every load of a grid naming it).  Both layers' output shapes follow from their
configuration, so inside `shape_only_forwards` those modules return empty tensors of
exactly the shapes their real forward returns (tests/test_meta_forward.py checks them
against real forwards on the CPU).  Modules off the meta device are left alone.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

__all__ = ["shape_only_forwards", "rnn_output_shapes"]


def _same_shape(x: torch.Tensor) -> torch.Tensor:
    return x


def rnn_output_shapes(rnn: nn.RNNBase, x: torch.Tensor, hx: Optional[object] = None):
    """What `rnn(x, hx)` returns, as empty tensors of the right shapes on `x`'s device."""
    if not isinstance(x, torch.Tensor):  # a PackedSequence: its real forward
        return type(rnn).forward(rnn, x, hx)
    directions = 2 if rnn.bidirectional else 1
    out_size = rnn.proj_size or rnn.hidden_size
    layers = directions * rnn.num_layers
    output: tuple[int, ...]
    h: tuple[int, ...]
    c: tuple[int, ...]
    if x.dim() == 2:  # unbatched (T, input)
        output = (x.shape[0], directions * out_size)
        h, c = (layers, out_size), (layers, rnn.hidden_size)
    else:
        batch, steps = (x.shape[0], x.shape[1]) if rnn.batch_first else (x.shape[1], x.shape[0])
        output = (batch, steps, directions * out_size) if rnn.batch_first else (steps, batch, directions * out_size)
        h, c = (layers, batch, out_size), (layers, batch, rnn.hidden_size)

    def empty(shape: tuple) -> torch.Tensor:
        return torch.empty(shape, dtype=x.dtype, device=x.device)

    if rnn.mode == "LSTM":
        return empty(output), (empty(h), empty(c))
    return empty(output), empty(h)


def _on_meta(module: nn.Module) -> bool:
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return any(t.device.type == "meta" for t in tensors)


@contextmanager
def shape_only_forwards(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, `model`'s meta-device batch norms and recurrent layers only shape their outputs."""
    swapped = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and _on_meta(module):
            module.forward = _same_shape  # type: ignore[method-assign, assignment]
        elif isinstance(module, nn.RNNBase) and _on_meta(module):
            module.forward = functools.partial(rnn_output_shapes, module)  # type: ignore[method-assign]
        else:
            continue
        swapped.append(module)
    try:
        yield model
    finally:
        for module in swapped:
            del module.forward  # the class's forward again
