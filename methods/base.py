"""The one adapter every training method implements, and the stage step it is made of.

Why this split: the *math* of a method (which loss trains which parameters) lives
here and in the method files; *where and when* it runs (one device, N threads, N
processes) lives in `bench/execution`.  A decoupled method is a list of
`StageStep`s: each is a pure function of (its stage, its optimizer, an input
payload, the labels) -> (detached output payload, loss), so an executor may run
stage k on batch t+1 while stage k+1 runs batch t without changing any number.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional, Sequence

import torch
from torch import nn
from torch.profiler import record_function

from models import StagedModel, count_parameters, detach_payload, payload_to
from models.staged import Payload

__all__ = ["MethodConfig", "StageStep", "Method", "DecoupledMethod", "make_optimizer"]


@dataclass
class MethodConfig:
    """Hyper-parameters a method may read; unknown methods ignore what they don't use."""

    lr: float = 1e-3
    optimizer: str = "adam"
    temperature: float = 0.1
    projector: Optional[str] = None  # "i" | "l" | "m"; None = the modality's reference default
    supcon_variant: str = "reference"
    local_loss: str = "supcon"  # SCPL-style stages: "supcon" | "suncet" | "ntxent"
    options: dict = field(default_factory=dict)  # method-specific, checked by the method


def make_optimizer(params: Sequence[nn.Parameter], config: MethodConfig) -> torch.optim.Optimizer:
    """Adam (the references' choice) or SGD with momentum, over the given parameters.

    Why `fused=True`: the same update as the default per-tensor loop, in one
    kernel.  Decoupled methods carry large affiliated modules (SCPL's VGG8
    projectors are 58M parameters), and on a CPU the unfused Adam update alone
    costs ~14x more than the fused one; every method gets the same optimizer
    implementation, so comparisons stay fair.
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, fused=fused or None)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, fused=fused or None)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose 'adam' or 'sgd'")


class StageStep(nn.Module):
    """One stage's local training step: forward, local loss, backward, update.

    `objective(output_payload, labels) -> loss` holds whatever the local loss needs
    (projector, exit classifier, the head on the last stage).  The four phases are
    labelled `stage{k}/forward|loss|backward|step` so profiler traces show them.
    """

    def __init__(
        self,
        index: int,
        encoder: nn.Module,
        objective: nn.Module,
        make_opt: Callable[[Sequence[nn.Parameter]], torch.optim.Optimizer],
    ) -> None:
        super().__init__()
        self.index = index
        self.encoder = encoder
        self.objective = objective
        self.optimizer = make_opt(list(self.parameters()))
        self.device = torch.device("cpu")
        # schedule(i) -> "train" | "forward" | "skip" for the i-th batch this stage sees
        # (DASCPL's dynamic layer accumulation); None = always train.
        self.schedule: Optional[Callable[[int], str]] = None
        self.calls = 0

    def place(self, device: torch.device) -> None:
        self.to(device)
        self.device = torch.device(device)

    def encode(self, x: Payload, y: torch.Tensor) -> Payload:
        """The stage's forward; methods whose stages also carry labels (AL) override it."""
        return self.encoder(x)

    def forward(self, x: Payload, y: torch.Tensor) -> tuple[Payload, torch.Tensor]:
        k = self.index
        # Detach again here so no executor can forget it: a decoupled stage's
        # gradient must never reach an earlier stage.
        x = detach_payload(payload_to(x, self.device))
        y = y.to(self.device)
        mode = self.schedule(self.calls) if self.schedule else "train"
        self.calls += 1
        if mode != "train":
            zero = torch.zeros((), device=self.device)
            if mode == "skip":  # forward shortcut: no later stage uses this output
                return x, zero
            with torch.no_grad(), record_function(f"stage{k}/forward"):
                return detach_payload(self.encode(x, y)), zero
        self.optimizer.zero_grad(set_to_none=True)
        with record_function(f"stage{k}/forward"):
            out = self.encode(x, y)
        with record_function(f"stage{k}/loss"):
            loss = self.objective(out, y)
        with record_function(f"stage{k}/backward"):
            loss.backward()
        with record_function(f"stage{k}/step"):
            self.optimizer.step()
        return detach_payload(out), loss.detach()

    chunks = 1  # micro-batches per batch the executor should feed (SCPL + GPipe uses more)

    def accept(self, x: Payload, y: torch.Tensor, chunk: int, chunks: int) -> tuple[Payload, Optional[torch.Tensor]]:
        """Executor entry point for micro-batch `chunk` of `chunks`; whole batches here."""
        if chunks != 1:
            raise ValueError(f"{type(self).__name__} trains on whole batches, not {chunks} micro-batches")
        return self(x, y)


class Method(ABC):
    """Uniform adapter: the runner knows nothing about any particular method.

    Subclasses set `name`, `decoupled` and `min_batch_size`, build their modules
    from a `StagedModel` in `__init__`, and implement `train_step` (coupled
    methods) or `stage_steps` (decoupled ones; `train_step` then runs them in order).
    """

    name: ClassVar[str] = ""
    decoupled: ClassVar[bool] = False
    min_batch_size: ClassVar[int] = 1
    OPTIONS: ClassVar[tuple[str, ...]] = ()  # keys this method accepts in `config.options`
    execution: ClassVar[str] = "staged"  # "staged": bench executors; "processes": one process per device

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        self.model = model
        self.config = config

    @classmethod
    def incompatibility(cls, *, modality: str, batch_size: int, devices: int, options: dict) -> str | None:
        """Why this method cannot run such a cell (checked before any cell runs), or None."""
        return None

    # -- training -------------------------------------------------------------
    def stage_steps(self) -> list[StageStep]:
        """Decoupled methods: the per-stage steps, in stage order."""
        raise NotImplementedError(f"{self.name} is not decoupled")

    def train_step(self, x: Payload, y: torch.Tensor) -> float:
        """One optimisation step on one batch; returns the (summed) loss."""
        total = 0.0
        for step in self.stage_steps():
            x, loss = step(x, y)
            total += float(loss)
        return total

    @abstractmethod
    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        """Put stage k (and what trains with it) on `stage_devices[k]`."""

    # -- evaluation -----------------------------------------------------------
    def train(self, mode: bool = True) -> None:
        for module in self.modules():
            module.train(mode)

    def modules(self) -> list[nn.Module]:
        """Every module holding parameters of this method (for train/eval and counts)."""
        return [self.model] + self.affiliated_modules()

    def affiliated_modules(self) -> list[nn.Module]:
        """Modules that exist only for training (projectors, predictors, AL's g/b/h)."""
        return []

    @torch.no_grad()
    def predict(self, x: Payload) -> torch.Tensor:
        """Logits of the deployed network: stages then head (placed as in training)."""
        model = self.model
        for stage in model.stages:
            device = next(stage.parameters()).device
            x = stage(payload_to(x, device))
        return model.head(model.reducers[-1](x))

    # -- accounting -----------------------------------------------------------
    def parameter_counts(self) -> tuple[int, int]:
        """(effective, affiliated): used at inference vs only during training."""
        effective = count_parameters(self.model)
        affiliated = sum(count_parameters(m) for m in self.affiliated_modules())
        return effective, affiliated


class DecoupledMethod(Method):
    """A method made of independent stage steps (SCPL, DASCPL, Early Exit, AL).

    Subclasses fill `self.steps` (one `StageStep` per stage) in `__init__`.
    """

    decoupled = True
    steps: list[StageStep]

    def stage_steps(self) -> list[StageStep]:
        return self.steps

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        for step, device in zip(self.steps, stage_devices):
            step.place(device)
