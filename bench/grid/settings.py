"""The settings of a cell, declared once with their types, ranges and choices.

Why pydantic (v2) rather than hand-written checks or OmegaConf: the grid is
YAML that users type by hand, and every wrong value must be refused before the
first cell runs, *all of them at once*, each with its key path, the value and
what would be valid.  Pydantic validates a whole mapping in one pass and
reports every error with its location (`method_options.gpipe.chunks`);
`strict` mode refuses `steps: "2"` or `count_train_memory: "no"` instead of
coercing them; `Literal` and `Field(ge=...)` put the choices and ranges on the
field itself, where a reader looks for them.  OmegaConf structured configs type
-check too, but stop at the first error and have no range constraints.

The choices of method-level names (`local_loss`, `supcon_variant`,
`projector`, `augment`) are repeated here as literals so that the schema, and
with it importing the grid package and reading a cell back from JSON, needs no
torch (the per-cell feasibility checks of `load_grid` do import it);
`tests/test_settings.py` checks they equal the lists the methods and data
modules accept.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["CellSettings", "ProfileSchedule", "settings_problems", "format_validation_error", "ADDED_DEFAULTS",
           "settings_reference"]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class ProfileSchedule(BaseModel):
    """`profile: {wait, warmup, active}`: extra profiled steps after the timed ones.

    The three numbers mean what they mean in `torch.profiler.schedule`: skip
    `wait` steps, record `warmup` steps and throw them away (the profiler's own
    start-up cost), then keep `active` steps.
    """

    model_config = _STRICT

    wait: int = Field(0, ge=0)
    warmup: int = Field(1, ge=0)
    active: int = Field(1, ge=1, description="steps kept in the trace")

    @classmethod
    def from_setting(cls, value: Any) -> "ProfileSchedule":
        """The schedule from a grid value (a mapping) or an already built schedule."""
        return value if isinstance(value, cls) else cls.model_validate(value)

    @property
    def recorded_steps(self) -> int:
        """Steps the profiler's schedule walks through: wait + warmup + active."""
        return self.wait + self.warmup + self.active

    def batches(self, devices: int, queue_depth: int = 2) -> int:
        """Batches to feed: the schedule's steps plus enough to keep a pipeline full after them.

        A step ends when a batch leaves the *last* stage; the first stages may
        run ahead by a queue's depth per device boundary.  Without batches
        beyond the active steps they would already be idle (out of input)
        during them, and the trace would show the pipeline draining rather than
        its steady state.
        """
        return self.recorded_steps + max(0, devices - 1) * (queue_depth + 2)

    def active_indices(self) -> range:
        """Indices of the batches whose steps end up in the trace."""
        return range(self.wait + self.warmup, self.recorded_steps)


class CellSettings(BaseModel):
    """Fixed settings of a cell. Anything not named here is rejected."""

    model_config = _STRICT

    # -- timing (sampled mode: the epoch is extrapolated from these steps) ----------------
    warmup_steps: int = Field(2, ge=1, description="untimed steps first (allocator, kernels): all but one run and "
                                                   "drain, the last fills the timed segment's pipeline")
    steps: int = Field(10, ge=1, description="timed steps")
    train_steps: int = Field(0, ge=0, description="untimed training steps before the timed ones")
    timeout_s: float = Field(900.0, gt=0, description="per cell; per epoch for training runs (epochs set)")
    seed: int = Field(0, ge=0, description="the cell's seed is seed + trial")
    # -- training run (docs/TRAINING.md): whole epochs instead of sampled steps ------------
    epochs: Optional[int] = Field(None, ge=1, description="null = the sampled mode; E = E full passes")
    eval_every: int = Field(1, ge=1, description="training runs: evaluate every N epochs (and after the last)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="training runs: per-epoch lr schedule of every optimizer (CosineAnnealingLR)")
    lr_min: float = Field(0.0, ge=0, description="cosine: the lr reached after the last epoch (eta_min)")
    checkpoint_every: int = Field(1, ge=1, description="training runs: epochs between resumable checkpoints")
    keep_checkpoints: bool = Field(False, description="keep a finished run's checkpoint")
    # read by the report (bench/report/tta.py) from the row's settings: time to these accuracies
    tta_targets: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=list, description="absolute accuracies for time-to-accuracy tables")
    # training health (bench/store/health.py): the margins of the row's `health` flags
    health_chance_margin: float = Field(
        0.05, ge=0, le=1, description="did_not_learn: final accuracy below 1/classes + this")
    health_improving_margin: float = Field(
        0.01, ge=0, le=1, description="still_improving: accuracy rose by more than this over the last evaluations")
    health_improving_window: int = Field(
        3, ge=1, description="still_improving: how many last evaluations (gains from the one before them)")
    health_spike_fraction: float = Field(
        0.5, gt=0, description="unstable: a loss above the lowest before it by more than this x the first loss")
    # -- evaluation ---------------------------------------------------------------------
    eval_batches: Optional[int] = Field(4, ge=1, description="test batches for accuracy; null = whole test set")
    eval_batch_size: int = Field(256, ge=1, description="samples per evaluation batch")
    eval_points: int = Field(1, ge=1, description="evaluations over training; > 1 enables model selection")
    # -- optimisation and losses --------------------------------------------------------
    lr: float = Field(1e-3, ge=0, description="every optimizer's learning rate (the start of a schedule)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="fused Adam, or SGD with momentum 0.9")
    temperature: float = Field(0.1, gt=0, description="contrastive temperature")
    projector: Optional[Literal["i", "l", "m"]] = Field(None, description="contrastive projector; null = the modality's default (vision m, text i)")
    supcon_variant: Literal["reference", "textbook"] = Field("reference", description="SupCon as the reference code computes it, or as the paper writes it")
    local_loss: Literal["supcon", "suncet", "ntxent"] = Field("supcon", description="SCPL-style stages' local loss (ntxent needs views: 2)")
    # method-specific, either flat ({chunks: 8}: every method of the grid must accept them) or per
    # method ({gpipe_dist: {chunks: 8}}); each method's own schema (`Method.Options`) checks them
    method_options: dict[str, Any] = Field(default_factory=dict, description="flat, or per method: {gpipe: {chunks: 8}}")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory")
    # -- data (docs/DATA.md) --------------------------------------------------------------
    views: Literal[1, 2] = Field(1, description="2 = the two-view 'strong' batch of contrastive methods")
    augment: Literal["none", "basic"] = Field("none", description="training augmentation (basic: crop and flip, vision)")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="training items held out for validation")
    noise_rate: float = Field(0.0, ge=0, lt=1, description="fraction of training labels corrupted")
    glove: bool = Field(False, description="text models: GloVe 300-d embeddings (docs/DATA.md)")
    data_workers: int = Field(0, ge=0, description="DataLoader worker processes (pinned memory on CUDA)")
    max_train_items: Optional[int] = Field(None, ge=1, description="use the first N official training items")
    max_test_items: Optional[int] = Field(None, ge=1, description="use the first N official test items")
    # text (docs/DATA.md "Text batches"): the references' choices are the defaults
    max_len: Optional[int] = Field(None, ge=1, description="text: tokens kept per text; null = the dataset's (docs/DATA.md)")
    padding: Literal["batch", "max_len"] = Field(
        "batch", description="text: pad each batch to its longest text (the references') or every text to max_len")
    padding_side: Literal["right", "left"] = Field("right", description="text: pads after the tokens (the references') or before")
    embedding_feature: Literal["mean", "masked_mean"] = Field(
        "mean", description="text models: embedding stage's local feature, mean over every position (the references') or over real tokens")
    imdb_stop_words: Literal["keep", "drop"] = Field(
        "keep", description="IMDB: keep English stop words (the reference's pandas quirk) or drop them as for the other datasets")
    # -- placement and execution ----------------------------------------------------------
    balance: Union[Literal["auto", "even", "predicted"], list[int]] = Field(
        "auto", description="stages per device: auto (by measured stage time), even, predicted (the split "
                            "bench.predict's simulator finds fastest for the method's schedule), or a list")
    device_kind: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when present, else CPU workers")
    # intra-op threads of each device's worker; null = the cores divided by the grid's largest
    # device count (at least 1), so a "device" is the same resource in every cell of a grid
    threads_per_device: Optional[int] = Field(None, ge=1, description="intra-op threads per device; null = cores / the grid's largest device count")
    queue_depth: int = Field(2, ge=1, description="batches in flight between two stages")
    # decoupled methods on N devices: stage workers as threads of one process, or one process per
    # device exchanging activations with torch.distributed send/recv (bench/execution/choice.py)
    executor: Literal["threads", "processes"] = Field(
        "threads", description="decoupled methods on N devices: stage threads, or processes with send/recv")
    # -- measurement extras -------------------------------------------------------------
    count_train_memory: bool = Field(True, description="count saved activations + parameters + optimizer state per stage")
    profile: Optional[ProfileSchedule] = Field(None, description="{wait, warmup, active}: a profiled run after the timed one (docs/PROFILING.md)")

    @property
    def is_training_run(self) -> bool:
        """A training run (`epochs` set: whole epochs, measured) rather than the sampled mode
        (steps timed, the epoch extrapolated); the one test of which a cell is."""
        return self.epochs is not None

    def options_per_method(self, known_methods: Optional[list[str]] = None) -> bool:
        """Whether `method_options` is in the per-method form: every key a method name mapping to a dict."""
        opts = self.method_options
        if not opts:
            return False
        if known_methods is None:
            from methods import list_methods  # imports (registers) every method

            known_methods = list_methods()
        return all(key in known_methods and isinstance(v, dict) for key, v in opts.items())

    def options_for(self, method: str, known_methods: Optional[list[str]] = None) -> dict:
        """The `method_options` that apply to `method` (see the field's comment)."""
        if self.options_per_method(known_methods):
            return dict(self.method_options.get(method, {}))
        return dict(self.method_options)

    def replace(self, **changes: Any) -> "CellSettings":
        """A validated copy with `changes` (unlike `model_copy`, which does not validate)."""
        return CellSettings.model_validate({**self.model_dump(), **changes})

    def as_dict(self) -> dict:
        """Plain JSON-ready values (the profile schedule as a mapping)."""
        return self.model_dump(mode="json")


# Settings added after results existed: left out of a cell's identity while at their default, so
# the ids (and the rerun-skips-finished-cells promise) of older grids stay the same.
ADDED_DEFAULTS: dict[str, Any] = {
    key: CellSettings.model_fields[key].get_default(call_default_factory=True)
    for key in ("executor", "epochs", "eval_every", "lr_schedule", "lr_min", "checkpoint_every", "keep_checkpoints",
                "max_train_items", "max_test_items", "tta_targets", "health_chance_margin", "health_improving_margin",
                "health_improving_window", "health_spike_fraction", "max_len", "padding", "padding_side",
                "embedding_feature", "imdb_stop_words")
}


def _list_ints_positive(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)


def format_validation_error(exc: ValidationError, prefix: str) -> list[str]:
    """One line per pydantic error: `prefix.key.path: value: what is valid`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        # a Union reports each branch; keep the field path, drop pydantic's branch names
        loc = [part for part in loc if not part.startswith(("literal[", "list[", "function-", "int", "is-instance"))]
        path = ".".join([prefix, *loc]) if prefix else ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key")
            continue
        lines.append(f"{path}: {error.get('input')!r}: {message}")
    return lines


def settings_problems(mapping: Any, prefix: str = "settings") -> tuple[Optional[CellSettings], list[str]]:
    """Validate a `settings` mapping; (settings or None, every problem as one line)."""
    if not isinstance(mapping, dict):
        return None, [f"{prefix}: must be a mapping of setting to value, not {type(mapping).__name__}"]
    try:
        return CellSettings.model_validate(mapping), []
    except ValidationError as exc:
        lines = format_validation_error(exc, prefix)
        unknown = [line for line in lines if line.endswith("unknown key") and line.count(".") == prefix.count(".") + 1]
        if unknown:
            lines.append(f"{prefix}: valid settings are {', '.join(CellSettings.model_fields)}")
        if "balance" in mapping and not isinstance(mapping["balance"], str) and not _list_ints_positive(mapping["balance"]):
            lines = [line for line in lines if not line.startswith(f"{prefix}.balance")]
            lines.append(f"{prefix}.balance: {mapping['balance']!r}: use 'auto', 'even', 'predicted' or a list of "
                         "positive stage counts per device")
        return None, lines


def _type_text(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"Annotated\[float, FieldInfo\([^]]*\]\)\]", "float", text)
    return text.replace("bench.grid.settings.", "")


def _range_text(metadata: list) -> str:
    parts = []
    for item in metadata:
        for key, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, key, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def settings_reference() -> str:
    """docs/SETTINGS.md: every setting with its type, range, default and meaning, from the schema itself."""
    lines = ["# Grid settings", "",
             "Generated from `bench/grid/settings.py` (`settings_reference()`); a test keeps this file equal",
             "to the schema. Every value is checked before the first cell runs.", "",
             "| setting | type | range | default | meaning |", "|---|---|---|---|---|"]
    for name, info in CellSettings.model_fields.items():
        default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
        lines.append(f"| `{name}` | `{_type_text(info.annotation)}` | {_range_text(info.metadata)} | "
                     f"`{default!r}` | {(info.description or '').replace('|', '/')} |")
    lines += ["", "`profile` takes `{wait, warmup, active}` (integers >= 0, active >= 1), as `torch.profiler.schedule`.",
              "Each method's own `method_options` are declared on the method (`Method.Options`, docs/METHODS.md)."]
    return "\n".join(lines) + "\n"
