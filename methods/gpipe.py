"""GPipe with the torchgpipe library (Huang et al. 2019; Kim et al. 2020).

BP's network as an `nn.Sequential` (stages + head), partitioned over the
devices by the balance (stages per device; the head goes with the last one)
and run on `chunks` micro-batches with re-materialisation (`checkpoint`).
Known facts (docs/LIBRARIES.md): torchgpipe maps every CPU
"device" to one worker thread, so on CPU its partitions run one after another;
it is here for CUDA and as the reference implementation; `gpipe_dist` is the
backend with real concurrency on CPU.

Text models: the network is `as_pipeline`, whose layers pass payloads in
`to_batch_first` form (token states, padding mask, LSTM states turned batch-first,
an empty (B, 0) tensor for "no state yet"), so torchgpipe splits every entry
along dim 0 like an image batch.  The mask needs no gradient, which torchgpipe's
checkpointing does not allow for; `allow_outputs_without_grad` fixes that.

Copies: the harness deep-copies a placed method (the training-memory probe, the
profiled run), and torchgpipe's cache of copy streams cannot be copied: on CPU
each "stream" is the `CPUStream` sentinel, recognised by identity, and a copy of
it is taken for a CUDA stream (`'CPUStreamType' object has no attribute
'device'` at the first forward).  A copy starts with an empty cache instead
(`__deepcopy__`), and torchgpipe fills it on its first forward.

Options: chunks (default 4), checkpoint ("except_last" | "always" | "never"),
deferred_batch_norm (default False).
"""
from __future__ import annotations

import copy
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.profiler import record_function

from .base import Method, MethodConfig, MethodOptions, make_optimizer
from .registry import register_method
from .sequential_net import as_pipeline

__all__ = ["GPipeTorchgpipe", "allow_outputs_without_grad"]

def _checkpoint_backward(ctx, *grad_output: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
    """torchgpipe 0.0.7's `Checkpoint.backward`, handing autograd only the outputs that need a gradient.

    Upstream passes every recomputed output to `autograd.backward`, which refuses
    one that needs no gradient (a text payload's bool padding mask): the same bug
    and fix as torch.utils.checkpoint's (pytorch/pytorch#45934).  With all
    outputs differentiable (vision) it is the upstream call exactly.
    """
    output, input_leaf = ctx.recomputed.pop()
    tensors = output if isinstance(output, tuple) else (output,)
    pairs = [(t, g) for t, g in zip(tensors, grad_output) if t.requires_grad]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    return (None,) * 5 + tuple(x.grad for x in input_leaf)


def allow_outputs_without_grad() -> None:
    """Install `_checkpoint_backward` in torchgpipe (idempotent; autograd looks `backward` up per call)."""
    from torchgpipe.checkpoint import Checkpoint

    Checkpoint.backward = staticmethod(_checkpoint_backward)  # type: ignore[method-assign]  # the patch itself


class GPipeOptions(MethodOptions):
    chunks: int = Field(4, ge=1, description="micro-batches per batch")
    checkpoint: Literal["always", "except_last", "never"] = "except_last"
    deferred_batch_norm: bool = False


@register_method("gpipe")
class GPipeTorchgpipe(Method):
    display_name = "GPipe"
    schedule = "gpipe"
    one_thread_on_cpu = True  # torchgpipe runs every CPU "device" on one thread (docs/LIBRARIES.md)
    paper_order = 70
    report_order = 20
    colour = "tab:green"
    bp_gradient = True
    Options = GPipeOptions
    options: GPipeOptions

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        self.pipe: Any = None  # a torchgpipe.GPipe once placed
        self.optimizer: Any = None

    @classmethod
    def incompatibility(cls, *, model, batch_size, devices, options):
        chunks = cls.Options.model_validate(options).chunks
        if batch_size % chunks:
            return f"batch_size {batch_size} must be a multiple of chunks {chunks} (equal micro-batches)"
        return None

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        from torchgpipe import GPipe

        allow_outputs_without_grad()
        if balance is None:
            balance = [len(stage_devices)]
        # one partition per device: the first stage of each group names the device
        starts = [sum(balance[:d]) for d in range(len(balance))]
        devices = [stage_devices[s] for s in starts]
        balance = list(balance)
        balance[-1] += 1  # the head layer
        self.pipe = GPipe(
            as_pipeline(self.model), balance=balance, devices=devices, chunks=self.options.chunks,
            checkpoint=self.options.checkpoint, deferred_batch_norm=self.options.deferred_batch_norm,
        )
        self.optimizer = make_optimizer(self.pipe.parameters(), self.config)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The one optimizer, built by `place` with the pipe (none before)."""
        return [self.optimizer] if self.optimizer is not None else []

    def __deepcopy__(self, memo: dict) -> "GPipeTorchgpipe":
        """A copy with its own, empty, stream cache (see the module docstring); all else copied as usual."""
        if self.pipe is not None:
            memo[id(self.pipe._copy_streams)] = []  # torchgpipe refills the copy's cache on its first forward
        twin = object.__new__(type(self))
        memo[id(self)] = twin
        for name, value in self.__dict__.items():
            setattr(twin, name, copy.deepcopy(value, memo))
        return twin

    def train_step(self, x, y) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("gpipe/forward"):
            out = self.pipe(x.to(self.pipe.devices[0]))
        loss = F.cross_entropy(out, y.to(out.device))
        with record_function("gpipe/backward"):
            loss.backward()
        with record_function("gpipe/step"):
            self.optimizer.step()
        return float(loss.detach())
