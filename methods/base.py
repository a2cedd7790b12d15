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
from enum import Enum
from typing import Callable, ClassVar, Iterable, Optional, Sequence

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn
from torch.profiler import record_function

from models import StagedModel, count_parameters, detach_payload, payload_to
from models.description import ModelDescription
from models.staged import Payload

__all__ = ["Execution", "MethodConfig", "MethodOptions", "StageStep", "Method", "DecoupledMethod", "make_optimizer"]


class Execution(str, Enum):
    """How a method's training may be scheduled: the one attribute every executor choice reads.

    COUPLED: one `train_step` per batch; the chain rule orders every stage, so on
        N devices it is naive model parallelism, run sequentially (BP, torchgpipe
        whose own engine pipelines inside the step).
    DECOUPLED: independent `StageStep`s (local losses); stage k may work on batch
        t+1 while stage k+1 works on batch t, so N devices run pipelined.
    RANKS: the method trains in the rank processes of its cell's job (DDP,
        torch.distributed.pipelining), each rank through its `rank_trainer`.
    """

    COUPLED = "coupled"
    DECOUPLED = "decoupled"
    RANKS = "ranks"


class MethodOptions(BaseModel):
    """A method's `method_options`, typed: subclasses declare fields with types, ranges, choices.

    Strict and closed, like the grid's settings: the grid refuses a wrong option
    before any cell runs, naming `settings.method_options.<method>.<key>`.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


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


def make_optimizer(params: Iterable[nn.Parameter], config: MethodConfig) -> torch.optim.Optimizer:
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

    def extra_state(self) -> dict:
        """This stage's training state beyond parameters, buffers and optimizer ({} here; see DASCPL's)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} has no extra state to load, got {sorted(state)}")

    def accept(self, x: Payload, y: torch.Tensor, chunk: int, chunks: int) -> tuple[Payload, Optional[torch.Tensor]]:
        """Executor entry point: micro-batch `chunk` of `chunks` of one batch (see `Method.micro_batches`).

        A stage that returns None as the loss has not finished its batch yet
        (it updates once the last micro-batch has arrived).  Whole batches here.
        """
        if chunks != 1:
            raise ValueError(f"{type(self).__name__} trains on whole batches, not {chunks} micro-batches")
        return self(x, y)


class Method(ABC):
    """Uniform adapter: the runner knows nothing about any particular method.

    Subclasses set `execution`, `min_batch_size` and `Options`, build their modules
    from a `StagedModel` in `__init__`, and implement `train_step` (coupled
    methods) or `stage_steps` (decoupled ones; `train_step` then runs them in order).
    Everything else the harness needs is declared here too, so the runner, the
    checkpoints and the report never spell a method's name: how the report names,
    orders and colours it (`display_name`, `paper_order`, `report_order`, `colour`,
    `bp_gradient`), its optimizers (`optimizers`), state beyond its parameters
    (`extra_state`), and options only the harness can fill (`harness_options`).
    Methods with `execution` RANKS implement `methods.rank_method.RankMethod`.
    """

    name: ClassVar[str] = ""
    execution: ClassVar[Execution] = Execution.COUPLED
    min_batch_size: ClassVar[int] = 1
    Options: ClassVar[type[MethodOptions]] = MethodOptions  # the `method_options` it accepts

    # What the report knows about the method, declared here so no report module spells a method's name.
    display_name: ClassVar[str] = ""  # how tables and figures name it ("SCPL + GPipe"); "" = its registered name
    paper_order: ClassVar[int] = 100  # its row in the accuracy tables, as the paper orders them (lower first)
    report_order: ClassVar[int] = 100  # its row in the speed and time-to-accuracy tables (lower first)
    # True: trains with BP's gradient, only scheduled differently (BP, GPipe, DDP), so its accuracy is
    # never bolded as the best local method's
    bp_gradient: ClassVar[bool] = False
    colour: ClassVar[str | None] = None  # matplotlib colour in every figure; None = one from a fallback palette
    # Micro-batches per batch an executor feeds each stage step (SCPL + GPipe: its `chunks`);
    # 1 = whole batches.  An instance attribute when it depends on the options.
    micro_batches: int = 1
    # The schedule `bench.predict` simulates on N devices (bench/predict/schedules.py: "naive", "gpipe",
    # "1f1b", "decoupled", "decoupled_microbatch", "data_parallel"); "" = by `execution`
    schedule: ClassVar[str] = ""
    one_thread_on_cpu: ClassVar[bool] = False  # True: on CPU "devices" every stage runs in one thread (torchgpipe)
    # True: every batch must have the same shape (torch.distributed.pipelining fixes its buffers at the first
    # step), so text batches are padded to max_len rather than to their longest text (data/text_layout.py)
    fixed_input_shape: ClassVar[bool] = False

    def __init__(self, model: StagedModel, config: MethodConfig) -> None:
        self.model = model
        self.config = config
        # typed and checked here too, for methods built outside a grid (tests, notebooks)
        try:
            self.options = self.Options.model_validate(config.options)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            accepted = ", ".join(self.option_names()) or "no options"
            raise ValueError(f"{self.name}: method_options: {problems} ({self.name} accepts {accepted})") from None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Keys this method accepts in `config.options`."""
        return tuple(cls.Options.model_fields)

    @classmethod
    def incompatibility(cls, *, model: ModelDescription, batch_size: int, devices: int,
                        options: dict) -> str | None:
        """Why this method cannot run such a cell (checked before any cell runs), or None.

        `model` describes the built network (modality, stage count, what each
        stage outputs), so a method x model mismatch is refused up front.
        """
        return None

    @classmethod
    def schedule_for(cls, options: dict) -> str:
        """The schedule this method runs with these `method_options` (what bench.predict simulates)."""
        if cls.schedule:
            return cls.schedule
        return "decoupled" if cls.execution is Execution.DECOUPLED else "naive"

    @classmethod
    def harness_options(cls, options: dict, *, steps_per_epoch: int) -> dict:
        """`options` completed with what only the harness knows (DASCPL: the batches per epoch).

        Called by the cell before building the method; the default adds nothing.
        """
        return options

    @property
    def decoupled(self) -> bool:
        """Whether training is made of independent stage steps (`execution` is DECOUPLED)."""
        return self.execution is Execution.DECOUPLED

    # -- state a training run carries between epochs ---------------------------
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer, in stage order: what lr schedulers step and checkpoints save.

        A decoupled method's are its stage steps'; a coupled method declares its own
        (empty while a lazily built one does not exist yet).
        """
        if self.decoupled:
            return [step.optimizer for step in self.stage_steps()]
        raise NotImplementedError(f"{type(self).__name__} is coupled: it must declare optimizers()")

    def extra_state(self) -> dict:
        """Training state that is neither a parameter, a buffer nor an optimizer's, for a checkpoint.

        By default each stage step's (`StageStep.extra_state`, e.g. DASCPL's
        accumulation clock), keyed by stage index; {} when there is none.
        """
        steps = self.stage_steps() if self.decoupled else []
        stages = {step.index: state for step in steps if (state := step.extra_state())}
        return {"stages": stages} if stages else {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned, into a method built the same way."""
        steps = {step.index: step for step in (self.stage_steps() if self.decoupled else [])}
        for index, stage_state in state.get("stages", {}).items():
            steps[index].load_extra_state(stage_state)

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

    # The deployed predictor in pieces, so that one definition serves both the in-process
    # evaluation (`predict`) and the ranked one (bench/cell/rank_evaluation.py), where stage k
    # runs on the rank that owns it: `predict_stage` per stage, `predict_head` after the last
    # stage, then (methods with `return_path`, AL) `predict_return` from the last stage back to
    # the first.  Each hook moves its input onto the device of the modules it runs.
    return_path: ClassVar[bool] = False  # True: the prediction goes back down through every stage (AL's decoders)

    def predict_stage(self, k: int, x: Payload) -> Payload:
        """Stage k of the deployed network on `x` (stage k-1's output, or the input for k = 0)."""
        stage = self.model.stages[k]
        return stage(payload_to(x, next(stage.parameters()).device))

    def predict_head(self, x: Payload) -> torch.Tensor:
        """After the last stage: the head's logits (with `return_path`: where the way back starts)."""
        return self.model.head(self.model.reducers[-1](x))

    def predict_return(self, k: int, t: torch.Tensor) -> torch.Tensor:
        """With `return_path`: stage k's part of the way back (k = K-1 .. 0); k = 0's output is the logits."""
        raise NotImplementedError(f"{type(self).__name__} has no return path (return_path is False)")

    @torch.no_grad()
    def predict(self, x: Payload) -> torch.Tensor:
        """Logits of the deployed network: stages then head (placed as in training), then any return path."""
        stages = range(self.model.num_stages)
        for k in stages:
            x = self.predict_stage(k, x)
        out = self.predict_head(x)
        if self.return_path:
            for k in reversed(stages):
                out = self.predict_return(k, out)
        return out

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

    execution = Execution.DECOUPLED
    steps: list[StageStep]

    def stage_steps(self) -> list[StageStep]:
        return self.steps

    def place(self, stage_devices: Sequence[torch.device], balance: Sequence[int] | None = None) -> None:
        for step, device in zip(self.steps, stage_devices):
            step.place(device)
