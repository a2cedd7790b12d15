"""One grid cell as a short pipeline of named phases, the same for both modes.

    prepare_data -> build_method -> place (balance) -> train_or_sample -> evaluate -> profile -> row

Each phase returns a typed record of what it measured, with a `columns()`
method; `run_cell` lists the phases and `bench.cell.rows.cell_row` assembles
the row from their columns, refusing a column two phases both write, so each
column has one author.

The modes differ in one phase.  A sampled cell (`epochs` unset) trains some
untimed steps (evaluating between segments, for model selection), then times
warm-up + timed steps through the cell's executor and extrapolates an epoch.
A training run (`epochs` set; bench/cell/training_run.py) trains E whole
epochs through the same executor, evaluating as it goes, timed and resumable.
Either way the peak and counted memory are measured around that training, and
the evaluation after it is the record's own (`evaluation`).

A distributed cell (DDP, gpipe_dist, decoupled stages with `executor:
processes`) runs these phases in its ranks, one job for the whole cell
(bench/cell/rank_phases.py); `run_cell` only starts and supervises it.

The runner does not import this module: its supervisor starts `python -m
bench.cell` (bench/cell/__main__.py), a fresh interpreter per cell.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence

import torch

from bench.cell.evaluation import Evaluation, accuracy, evaluate_now, test_accuracy, test_batches
from bench.cell.memory import MemoryUse, measured_memory
from bench.cell.model_selection import SelectionCurve, segment_lengths
from bench.cell.param_checksum import method_checksum
from bench.cell.rows import cell_row, utc_now
from bench.cell.timing import StepStats, step_stats, time_after_warmup
from bench.cell.training_run import run_epochs
from bench.execution.choice import choose_executor, run_training
from bench.execution.devices import DeviceSet, resolve_devices
from bench.execution.placement import BALANCE_PROBE_BATCHES, choose_balance, stage_devices
from bench.execution.record import RunRecord
from bench.execution.sequential import run_sequential
from bench.execution.threads import denormals_flushed, use_threads
from bench.grid import Cell
from bench.store.health import HealthThresholds, LearningTrace, health_flags
from bench.store.row import ResultRow
from data.prepared import prepare_batches
from methods.base import Method
from models.build import build_model
from models.registry import model_accepts

if TYPE_CHECKING:
    from bench.profiling.profiler import ProfileResult
    from data.text_layout import TextOptions

__all__ = ["run_cell", "runs_in_ranks", "prepare_data", "build_method", "place", "train_or_sample", "evaluate", "profile", "judge_health",
           "CellData", "BuiltMethod", "PlacedMethod", "Trained", "TrainingResult", "SampledSteps", "Profiled"]


# -- phase records ------------------------------------------------------------------------------

@dataclass
class CellData:
    """The splits and the batches built ahead of time (data loading never sits inside step time)."""

    spec: Any
    train_set: Any
    val_batches: Optional[list]
    test_batches: list
    untimed: list
    timed: list
    data_time_s: float
    batch_size: int
    note: Optional[str] = None  # how the data read differs from the published dataset

    @property
    def steps_per_epoch(self) -> int:
        """Batches in one pass over the training split actually read (after the validation hold-out)."""
        from data.epochs import batches_per_epoch

        return batches_per_epoch(len(self.train_set), self.batch_size)

    def columns(self) -> dict:
        return {"data_time_s": self.data_time_s, "steps_per_epoch": self.steps_per_epoch, "data_note": self.note,
                "num_classes": self.spec.num_classes, "train_items": len(self.train_set)}


@dataclass
class BuiltMethod:
    """The model and the method around it, not yet placed."""

    method: Method
    glove_coverage: Optional[float] = None

    def columns(self) -> dict:
        effective, affiliated = self.method.parameter_counts()
        return {"params_effective": effective, "params_affiliated": affiliated, "glove_coverage": self.glove_coverage}


@dataclass
class PlacedMethod:
    """The method's stages grouped by the balance and placed on the devices."""

    method: Method
    devices: DeviceSet
    balance: list[int]
    stage_costs_s: list[float]
    executor: str  # the setting; the executor used is `choose_executor`'s answer

    def columns(self) -> dict:
        d = self.devices
        return {
            "device_kind": d.kind, "device_names": list(d.names), "threads_per_device": d.threads_per_device,
            "threads_total": d.total_threads, "cores": d.cores, "oversubscribed": d.oversubscribed,
            "cpu_denormals_flushed": denormals_flushed(),
            "balance": self.balance, "stage_costs_s": self.stage_costs_s,
            "executor": choose_executor(self.method, d.count, self.executor).value,
        }


class TrainingResult(Protocol):
    """What the train-or-sample phase hands on, whichever mode ran."""

    @property
    def step_median_s(self) -> float:
        """The median training step, what a profiled run's steps are compared with."""

    def columns(self) -> dict:
        """Timing and training columns."""

    def evaluation(self, method: Method, data: CellData) -> Evaluation:
        """The accuracy after all training."""

    def learning(self, num_classes: int, evaluation: Evaluation) -> LearningTrace:
        """What the training health flags are judged on (bench/store/health.py)."""


@dataclass
class SampledSteps:
    """Untimed training (with its evaluation points), then warm-up + timed steps through the executor."""

    selection: SelectionCurve
    record: RunRecord
    stats: StepStats
    samples_per_step: int
    warmup_steps: int
    steps_per_epoch: int
    steps_done: int  # untimed + warm-up + timed: where the final evaluation sits on the selection curve

    @property
    def step_median_s(self) -> float:
        return self.stats.median_s

    def columns(self) -> dict:
        s = self.stats
        return {
            "warmup_steps": self.warmup_steps, "timed_steps": len(s.step_times_s), "step_times_s": s.step_times_s,
            "step_time_median_s": s.median_s, "step_time_p10_s": s.p10_s, "step_time_p90_s": s.p90_s,
            "timed_total_s": s.timed_total_s, "epoch_time_s": s.median_s * self.steps_per_epoch,
            "epoch_time_kind": "extrapolated", "throughput_samples_s": self.samples_per_step / s.median_s,
            "stage_busy_s": self.record.stage_busy_s, "device_busy_s": self.record.device_busy_s,
            "final_train_loss": self.record.losses[-1],
        }

    def evaluation(self, method: Method, data: CellData) -> Evaluation:
        """Test, hold-out and exits after the timed steps; the last point of the selection curve."""
        final = evaluate_now(method, data.test_batches, data.val_batches)
        self.selection.add(self.steps_done, final.test_acc, final.val_acc)
        return Evaluation(final.test_acc, final.eval_samples, self.selection, final.exits)

    def learning(self, num_classes: int, evaluation: Evaluation) -> LearningTrace:
        """Accuracy at the evaluation points, the timed steps' losses, the exits at the end (no epochs)."""
        exits = [list(evaluation.exits.exit_acc)] if evaluation.exits is not None else []
        return LearningTrace(num_classes, list(evaluation.selection.test_acc), self.record.losses, False, exits)


@dataclass
class Trained:
    """The train-or-sample phase: the mode's own result, the memory its training took, and the
    checksum of the parameters and buffers it ended with (bench/cell/param_checksum.py)."""

    result: TrainingResult
    memory: MemoryUse
    param_checksum: Optional[str] = None

    def columns(self) -> dict:
        return {**self.result.columns(), **self.memory.columns(), "param_checksum": self.param_checksum}


@dataclass
class Profiled:
    """A separate profiled run on a copy, compared with the measured step time."""

    result: "ProfileResult"
    step_median_s: float
    results_dir: Optional[Path]

    def columns(self) -> dict:
        from bench.profiling.profiler import profile_columns

        return profile_columns(self.result, self.step_median_s, self.results_dir)


# -- phases ---------------------------------------------------------------------------------------

def prepare_data(cell: Cell, data_root: Optional[str], read_training: bool = True, warn: bool = True) -> CellData:
    """Load the splits and build the untimed and the timed batches ahead of time.

    Classes and sizes are those of the data read (data/observed.py), not the
    published ones; where they differ the row's `data_note` says how, and one
    warning line goes to stderr.  A training run evaluates on the whole
    validation hold-out and test set and streams its training batches, so only
    the batches that choose the balance and count training memory are built here.
    `read_training=False` (a pipeline rank after the first, bench/cell/rank_phases.py)
    builds no training batches: that rank never reads training data.  `warn=False`
    (every rank but rank 0) keeps the warning to one line per cell.
    """
    from data import load_dataset
    from data.observed import observe_dataset

    s = cell.settings
    t0 = time.perf_counter()
    text = text_options(cell)
    observed = observe_dataset(cell.dataset, data_root, s.max_train_items, s.max_test_items, text, cell.seed)
    spec = observed.spec
    if observed.note and warn:
        print(f"warning: {observed.note}", file=sys.stderr)
    split_args: dict[str, Any] = dict(root=data_root, seed=cell.seed, val_fraction=s.val_fraction, spec=spec,
                                      max_train_items=s.max_train_items, max_test_items=s.max_test_items, text=text)
    train_set = load_dataset(cell.dataset, split="train", augment=s.augment, noise_rate=s.noise_rate, **split_args)
    val_set = load_dataset(cell.dataset, split="val", **split_args) if s.val_fraction > 0 else None
    test_set = load_dataset(cell.dataset, split="test", **split_args)
    eval_batches = None if s.is_training_run else s.eval_batches
    untimed = [] if s.is_training_run or not read_training else prepare_batches(
        train_set, cell.batch_size, s.train_steps, cell.seed, s.views, spec.modality, spec, s.data_workers)
    # a training run streams its epochs: here only the balance's probes (>= 1: the memory count's batch)
    timed_count = ((BALANCE_PROBE_BATCHES if s.balance in ("auto", "predicted") else 1) if s.is_training_run
                   else s.warmup_steps + s.steps) if read_training else 0
    timed = prepare_batches(train_set, cell.batch_size, timed_count, cell.seed + 10_000, s.views,
                            spec.modality, spec, s.data_workers)
    return CellData(
        spec=spec, train_set=train_set,
        val_batches=test_batches(val_set, s.eval_batch_size, eval_batches) if val_set is not None else None,
        test_batches=test_batches(test_set, s.eval_batch_size, eval_batches),
        untimed=untimed, timed=timed, data_time_s=time.perf_counter() - t0, batch_size=cell.batch_size,
        note=observed.note,
    )


def text_options(cell: Cell) -> "TextOptions":
    """The cell's text settings; a method that cannot take batches of varying width
    (`Method.fixed_input_shape`: torch.distributed.pipelining) gets every batch max_len wide."""
    from data.text_layout import TextOptions
    from methods import method_class

    s = cell.settings
    padding = "max_len" if method_class(cell.method).fixed_input_shape else s.padding
    return TextOptions(max_len=s.max_len, padding=padding, padding_side=s.padding_side,
                       imdb_stop_words=s.imdb_stop_words)


def _glove_embedding(cell: Cell, spec: Any, data_root: Optional[str]) -> tuple[torch.Tensor, float]:
    """GloVe rows aligned to the dataset's vocabulary (row i = word i), and the coverage."""
    from data import glove_path, load_glove, text_vocab

    vocab = text_vocab(cell.dataset, data_root, text_options(cell))
    return load_glove(glove_path(data_root), vocab, rows=spec.vocab_size, seed=cell.seed)


def build_method(cell: Cell, data: CellData, data_root: Optional[str]) -> BuiltMethod:
    """Build the model for the data read, and the method around it."""
    from methods import MethodConfig, create_method, method_class

    s = cell.settings
    model_kwargs = dict(s.model_kwargs)
    coverage = None
    if s.glove:
        model_kwargs["embedding_weights"], coverage = _glove_embedding(cell, data.spec, data_root)
    if data.spec.modality == "text" and model_accepts(cell.model, "embedding_feature"):
        model_kwargs.setdefault("embedding_feature", s.embedding_feature)
    model = build_model(cell.model, data.spec, **model_kwargs)
    # what only the cell knows (DASCPL's batches per epoch, of the split actually trained on)
    options = method_class(cell.method).harness_options(s.options_for(cell.method),
                                                        steps_per_epoch=data.steps_per_epoch)
    config = MethodConfig(
        lr=s.lr, optimizer=s.optimizer, temperature=s.temperature, projector=s.projector,
        supcon_variant=s.supcon_variant, local_loss=s.local_loss, options=options,
    )
    return BuiltMethod(create_method(cell.method, model, config), coverage)


def place(cell: Cell, built: BuiltMethod, data: CellData, devices: DeviceSet) -> PlacedMethod:
    """Choose the balance (given, even, or by timing the stages on probe batches) and place the stages."""
    s = cell.settings
    method = built.method
    balance, costs = choose_balance(method, devices.count, data.timed, s.balance, device=devices.devices[0])
    method.place(stage_devices(balance, devices.devices), balance)
    return PlacedMethod(method, devices, balance, costs or [], s.executor)


def _train_untimed(cell: Cell, placed: PlacedMethod, data: CellData) -> SelectionCurve:
    """The untimed training steps, with evaluations between segments (model selection)."""
    s = cell.settings
    curve = SelectionCurve()
    done = 0
    for length in segment_lengths(s.train_steps, s.eval_points):
        if length:
            run_sequential(placed.method, data.untimed[done:done + length], placed.devices, warmup_steps=0)
            done += length
        if s.eval_points > 1:
            curve.add(done, test_accuracy(placed.method, data.test_batches)[0],
                      accuracy(placed.method, data.val_batches)[0] if data.val_batches else None)
    return curve


def _time_steps(cell: Cell, placed: PlacedMethod, data: CellData, selection: SelectionCurve) -> SampledSteps:
    """Warm-up (drained, then one fill batch: `warmup_split`) and timed steps through the cell's executor."""
    s = cell.settings

    def run(batches: Optional[Sequence], _count: int, warmup: int) -> RunRecord:
        assert batches is not None  # this process reads every batch
        return run_training(placed.method, batches, placed.devices, placed.balance, warmup_steps=warmup,
                            queue_depth=s.queue_depth, executor=s.executor)

    record = time_after_warmup(run, data.timed, s.warmup_steps, s.steps)
    return SampledSteps(selection, record, step_stats(record), cell.batch_size * s.views, s.warmup_steps,
                        data.steps_per_epoch, s.train_steps + s.warmup_steps + s.steps)


def train_or_sample(cell: Cell, placed: PlacedMethod, data: CellData, results_dir: Optional[Path]) -> Trained:
    """The phase that differs by mode: E whole epochs, or untimed then warm-up + timed steps.

    Peak memory covers what is measured, the epochs or the timed steps (a sampled
    cell's untimed steps run before the peak is reset); training memory is counted after.
    The parameter checksum is taken once training is over, outside the peak.
    """
    s = cell.settings
    memory = (placed.devices, placed.method, data.timed[0], s.count_train_memory)
    result: TrainingResult
    if s.is_training_run:
        with measured_memory(*memory) as probe:
            result = run_epochs(cell, placed, data, results_dir)
    else:
        selection = _train_untimed(cell, placed, data)
        with measured_memory(*memory) as probe:
            result = _time_steps(cell, placed, data, selection)
    assert probe.use is not None
    return Trained(result, probe.use, method_checksum(placed.method))


def evaluate(placed: PlacedMethod, data: CellData, trained: Trained) -> Evaluation:
    """Test (and validation) accuracy after all training, and every early exit's."""
    return trained.result.evaluation(placed.method, data)


def profile(cell: Cell, placed: PlacedMethod, data: CellData, trained: Trained,
            results_dir: Optional[Path]) -> Optional[Profiled]:
    """With `profile` set: a profiled run on a copy, after evaluation (neither timings nor accuracy see it)."""
    from bench.profiling.profiler import cell_trace_dir, profile_cell

    s = cell.settings
    plan = s.profile
    if plan is None:
        return None
    batches = prepare_batches(data.train_set, cell.batch_size, plan.batches(placed.devices.count, s.queue_depth),
                              cell.seed + 20_000, s.views, data.spec.modality, data.spec)
    trace_dir = cell_trace_dir(results_dir, cell.grid, cell.label, cell.cell_id)
    result = profile_cell(placed.method, placed.devices, placed.balance, batches, plan, trace_dir, s.queue_depth,
                          s.timeout_s, executor=s.executor)
    return Profiled(result, trained.result.step_median_s, results_dir)


def judge_health(cell: Cell, data: CellData, trained: Trained, evaluation: Evaluation) -> dict:
    """The row's `health` flags (bench/store/health.py) from what the cell measured.

    A sampled cell that trained no untimed steps is not judged ([]): its few timed
    steps measure time, not learning (docs/TRAINING.md "Training health").
    """
    s = cell.settings
    if not s.is_training_run and s.train_steps == 0:
        return {"health": []}
    trace = trained.result.learning(data.spec.num_classes, evaluation)
    return {"health": health_flags(trace, HealthThresholds.from_settings(s))}


def runs_in_ranks(cell: Cell) -> bool:
    """Whether the cell is a distributed job (rank methods; decoupled stages with `executor: processes`)."""
    from methods import method_class

    kind = choose_executor(method_class(cell.method), cell.devices, cell.settings.executor)
    return kind.distributed


def run_cell(cell: Cell, data_root: Optional[str] = None, results_dir: Optional[Path] = None) -> ResultRow:
    """Every phase of one cell, in order; its row.

    A distributed cell runs its phases in its ranks (bench/cell/rank_phases.py);
    this process then only supervises them.
    """
    if runs_in_ranks(cell):
        from bench.cell.rank_phases import run_cell_in_ranks

        return run_cell_in_ranks(cell, data_root, results_dir)
    started_at, wall_start = utc_now(), time.perf_counter()
    s = cell.settings
    devices = resolve_devices(cell.devices, s.device_kind, s.threads_per_device)
    use_threads(devices.threads_per_device)
    torch.manual_seed(cell.seed)

    data = prepare_data(cell, data_root)
    built = build_method(cell, data, data_root)
    placed = place(cell, built, data, devices)
    trained = train_or_sample(cell, placed, data, results_dir)
    evaluation = evaluate(placed, data, trained)
    profiled = profile(cell, placed, data, trained, results_dir)
    return cell_row(cell, data.columns(), built.columns(), placed.columns(), trained.columns(), evaluation.columns(),
                    profiled.columns() if profiled is not None else {}, judge_health(cell, data, trained, evaluation),
                    started_at=started_at, duration_s=time.perf_counter() - wall_start)
