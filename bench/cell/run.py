"""Run one grid cell in this process and produce its result row.

The runner starts `python -m bench.cell.run CELL.json ROW.json` once per cell, with
the thread budget in the environment before torch is imported, so no global
flag of one cell can leak into the next, and a crash becomes a status.

A cell runs in phases, each returning a typed record of what it measured:
prepare the data, build and place the method, train untimed (for accuracy),
time the warm-up + timed steps, evaluate, and profile.  The row is assembled
from those records' columns, so each column is written in one place.

A training run (`epochs` set) replaces the untimed training, the timed steps
and the evaluation by one phase, `run_epochs` (bench/cell/training_run.py):
E whole epochs through the same executor, evaluated, timed and resumable.
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from bench.cell.evaluation import ExitReport, accuracy, evaluate_exits, test_batches
from bench.cell.memory import peak_memory
from bench.cell.model_selection import SelectionCurve, segment_lengths
from bench.cell.provenance import provenance
from bench.cell.timing import StepStats, step_stats
from bench.cell.training_memory import training_memory_bytes
from bench.cell.watchdog import EpochTimeout
from bench.execution.choice import choose_executor, run_training
from bench.execution.devices import DeviceSet, resolve_devices
from bench.execution.placement import choose_balance, stage_devices
from bench.execution.record import NonFiniteLossError, RunRecord
from bench.execution.sequential import run_sequential
from bench.execution.threads import use_threads
from bench.grid import Cell
from bench.store.row import ResultRow
from data.prepared import prepare_batches
from models.build import build_model

__all__ = ["run_cell", "failed_row", "CellData", "PlacedMethod", "TimedRun", "Evaluation"]


def _base_row(cell: Cell) -> ResultRow:
    from data import get_spec

    spec = get_spec(cell.dataset)
    return ResultRow(
        epochs=cell.settings.epochs,
        cell_id=cell.cell_id, grid=cell.grid, method=cell.method, model=cell.model,
        dataset=cell.dataset, data_kind=spec.kind, batch_size=cell.batch_size,
        devices=cell.devices, trial=cell.trial, seed=cell.seed,
        settings_json=json.dumps(cell.identity()["settings"], sort_keys=True),
        noise_rate=cell.settings.noise_rate, val_fraction=cell.settings.val_fraction,
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **provenance(),
    )


def failed_row(cell: Cell, status: str, error: str, duration_s: Optional[float] = None) -> ResultRow:
    """The row of a cell that did not finish: it still records what was asked."""
    row = _base_row(cell)
    row.status, row.error, row.duration_s = status, error, duration_s
    return row


def glove_embedding(dataset: str, spec: Any, data_root: Optional[str], seed: int) -> tuple[torch.Tensor, float]:
    """GloVe rows aligned to the dataset's vocabulary (row i = word i), and the coverage."""
    from data import glove_path, load_glove, text_vocab

    return load_glove(glove_path(data_root), text_vocab(dataset, data_root), rows=spec.vocab_size, seed=seed)


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
class PlacedMethod:
    """The method built around the model and placed on the devices."""

    method: Any
    devices: DeviceSet
    balance: list[int]
    stage_costs_s: list[float]
    executor: str
    glove_coverage: Optional[float] = None

    def columns(self) -> dict:
        d = self.devices
        effective, affiliated = self.method.parameter_counts()
        return {
            "device_kind": d.kind, "device_names": list(d.names), "threads_per_device": d.threads_per_device,
            "threads_total": d.total_threads, "cores": d.cores, "oversubscribed": d.oversubscribed,
            "balance": self.balance, "stage_costs_s": self.stage_costs_s, "glove_coverage": self.glove_coverage,
            "params_effective": effective, "params_affiliated": affiliated,
            "executor": choose_executor(self.method, d.count, self.executor).value,
        }


@dataclass
class TimedRun:
    """Warm-up + timed steps through the cell's executor, and the memory they peaked at."""

    record: RunRecord
    stats: StepStats
    samples_per_step: int
    peak_mem_bytes: int
    peak_mem_per_device: list[int]
    peak_mem_kind: str
    train_mem_bytes: list[int] = field(default_factory=list)

    def columns(self, warmup_steps: int, steps_per_epoch: int) -> dict:
        s = self.stats
        return {
            "warmup_steps": warmup_steps, "timed_steps": len(s.step_times_s), "step_times_s": s.step_times_s,
            "step_time_median_s": s.median_s, "step_time_p10_s": s.p10_s, "step_time_p90_s": s.p90_s,
            "timed_total_s": s.timed_total_s, "epoch_time_s": s.median_s * steps_per_epoch,
            "epoch_time_kind": "extrapolated", "throughput_samples_s": self.samples_per_step / s.median_s,
            "stage_busy_s": self.record.stage_busy_s, "device_busy_s": self.record.device_busy_s,
            "final_train_loss": self.record.losses[-1],
            "peak_mem_bytes": self.peak_mem_bytes, "peak_mem_per_device": self.peak_mem_per_device,
            "peak_mem_kind": self.peak_mem_kind, "train_mem_bytes": self.train_mem_bytes,
            "train_mem_max_bytes": max(self.train_mem_bytes) if self.train_mem_bytes else None,
        }


@dataclass
class Evaluation:
    """Accuracy of the deployed network, the selection curve, and every exit's accuracy and cost."""

    test_acc: float
    eval_samples: int
    curve: SelectionCurve
    exits: Optional[ExitReport]

    def columns(self) -> dict:
        out: dict = {"test_acc": self.test_acc, "eval_samples": self.eval_samples, **self.curve.columns()}
        if self.exits is not None:
            for name, value in vars(self.exits).items():
                out[name if name.startswith("exit_") else f"exit_{name}"] = value
        return out


# -- phases ---------------------------------------------------------------------------------------

def prepare_data(cell: Cell, data_root: Optional[str]) -> CellData:
    """Load the splits and build the untimed and the timed batches ahead of time.

    Classes and sizes are those of the data read (data/observed.py), not the
    published ones; where they differ the row's `data_note` says how, and one
    warning line goes to stderr.  A training run evaluates on the whole
    validation hold-out and test set and streams its training batches, so only
    the batches that choose the balance and count training memory are built here.
    """
    from data import load_dataset
    from data.observed import observe_dataset

    s = cell.settings
    t0 = time.perf_counter()
    observed = observe_dataset(cell.dataset, data_root, s.max_train_items, s.max_test_items)
    spec = observed.spec
    if observed.note:
        print(f"warning: {observed.note}", file=sys.stderr)
    split_args: dict[str, Any] = dict(root=data_root, seed=cell.seed, val_fraction=s.val_fraction, spec=spec,
                      max_train_items=s.max_train_items, max_test_items=s.max_test_items)
    train_set = load_dataset(cell.dataset, split="train", augment=s.augment, noise_rate=s.noise_rate, **split_args)
    val_set = load_dataset(cell.dataset, split="val", **split_args) if s.val_fraction > 0 else None
    test_set = load_dataset(cell.dataset, split="test", **split_args)
    training_run = s.epochs is not None
    eval_batches = None if training_run else s.eval_batches
    untimed = [] if training_run else prepare_batches(
        train_set, cell.batch_size, s.train_steps, cell.seed, s.views, spec.modality, spec, s.data_workers)
    timed_count = (2 if s.balance == "auto" else 1) if training_run else s.warmup_steps + s.steps
    timed = prepare_batches(train_set, cell.batch_size, timed_count, cell.seed + 10_000, s.views,
                            spec.modality, spec, s.data_workers)
    return CellData(
        spec=spec, train_set=train_set,
        val_batches=test_batches(val_set, s.eval_batch_size, eval_batches) if val_set is not None else None,
        test_batches=test_batches(test_set, s.eval_batch_size, eval_batches),
        untimed=untimed, timed=timed, data_time_s=time.perf_counter() - t0, batch_size=cell.batch_size,
        note=observed.note,
    )


def build_and_place(cell: Cell, data: CellData, devices: DeviceSet, data_root: Optional[str]) -> PlacedMethod:
    """Build the model and the method, choose the balance, and place the stages on the devices."""
    from methods import MethodConfig, create_method, method_class

    s = cell.settings
    model_kwargs = dict(s.model_kwargs)
    coverage = None
    if s.glove:
        model_kwargs["embedding_weights"], coverage = glove_embedding(cell.dataset, data.spec, data_root, cell.seed)
    model = build_model(cell.model, data.spec, **model_kwargs)
    # what only the cell knows (DASCPL's batches per epoch, of the split actually trained on)
    options = method_class(cell.method).harness_options(s.options_for(cell.method),
                                                        steps_per_epoch=data.steps_per_epoch)
    config = MethodConfig(
        lr=s.lr, optimizer=s.optimizer, temperature=s.temperature, projector=s.projector,
        supcon_variant=s.supcon_variant, local_loss=s.local_loss, options=options,
    )
    method = create_method(cell.method, model, config)
    balance, costs = choose_balance(method, devices.count, data.timed, s.balance)
    method.place(stage_devices(balance, devices.devices), balance)
    return PlacedMethod(method, devices, balance, costs or [], s.executor, coverage)


def train_untimed(cell: Cell, placed: PlacedMethod, data: CellData) -> SelectionCurve:
    """The untimed training steps, with evaluations between segments (model selection)."""
    s = cell.settings
    curve = SelectionCurve()
    done = 0
    for length in segment_lengths(s.train_steps, s.eval_points):
        if length:
            run_sequential(placed.method, data.untimed[done:done + length], placed.devices, warmup_steps=0)
            done += length
        if s.eval_points > 1:
            curve.add(done, accuracy(placed.method, data.test_batches)[0],
                      accuracy(placed.method, data.val_batches)[0] if data.val_batches else None)
    return curve


def time_steps(cell: Cell, placed: PlacedMethod, data: CellData) -> TimedRun:
    """Warm-up + timed steps through the cell's executor; peak and counted training memory."""
    s = cell.settings
    for device in placed.devices.devices:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
    ranks: list[dict] = []
    record = run_training(placed.method, data.timed, placed.devices, placed.balance, warmup_steps=s.warmup_steps,
                          queue_depth=s.queue_depth, timeout_s=s.timeout_s, executor=s.executor,
                          on_ranks=ranks.extend)
    peak, per_device, kind = peak_memory(placed.devices)
    rank_peaks = [r.get("peak_mem_bytes") for r in sorted(ranks, key=lambda r: r["rank"])]
    if rank_peaks and all(isinstance(v, int) for v in rank_peaks):
        # each rank's own GPU: the parent process cannot read another process's CUDA peak
        per_device = [int(v) for v in rank_peaks if v is not None]
        peak, kind = max(per_device), "cuda_max_allocated"
    # after the peak is read (it allocates); one extra, untimed step on a copy
    train_mem = training_memory_bytes(placed.method, data.timed[0]) if s.count_train_memory else []
    return TimedRun(record, step_stats(record), cell.batch_size * s.views, peak, per_device, kind, train_mem)


def evaluate(cell: Cell, placed: PlacedMethod, data: CellData, curve: SelectionCurve) -> Evaluation:
    """Test (and validation) accuracy after all training, and every early exit's."""
    s = cell.settings
    acc, samples = accuracy(placed.method, data.test_batches)
    if samples == 0:
        raise ValueError("evaluation saw 0 test samples: the test split is empty")
    curve.add(s.train_steps + s.warmup_steps + s.steps, acc,
              accuracy(placed.method, data.val_batches)[0] if data.val_batches else None)
    return Evaluation(acc, samples, curve, evaluate_exits(placed.method, data.test_batches))


def profile(cell: Cell, placed: PlacedMethod, data: CellData, timed_median_s: float,
            results_dir: Optional[Path]) -> dict:
    """A separate profiled run on a copy, after evaluation: neither timings nor accuracy see the profiler."""
    from bench.profiling.profiler import cell_trace_dir, profile_cell, profile_columns

    s = cell.settings
    plan = s.profile
    assert plan is not None
    batches = prepare_batches(data.train_set, cell.batch_size, plan.batches(placed.devices.count, s.queue_depth),
                              cell.seed + 20_000, s.views, data.spec.modality, data.spec)
    trace_dir = cell_trace_dir(results_dir, cell.grid, cell.label, cell.cell_id)
    result = profile_cell(placed.method, placed.devices, placed.balance, batches, plan, trace_dir, s.queue_depth,
                          s.timeout_s, executor=s.executor)
    return profile_columns(result, timed_median_s, results_dir)


def train_for_epochs(cell: Cell, placed: PlacedMethod, data: CellData, results_dir: Optional[Path]) -> dict:
    """The training-run phase (`epochs` set): whole epochs, then memory; its row columns."""
    from bench.cell.training_run import run_epochs

    s = cell.settings
    for device in placed.devices.devices:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
    trained = run_epochs(cell, placed, data, results_dir)
    peak, per_device, kind = peak_memory(placed.devices)
    train_mem = training_memory_bytes(placed.method, data.timed[0]) if s.count_train_memory else []
    return {**trained.columns(), "peak_mem_bytes": peak, "peak_mem_per_device": per_device, "peak_mem_kind": kind,
            "train_mem_bytes": train_mem, "train_mem_max_bytes": max(train_mem) if train_mem else None}


def run_cell(cell: Cell, data_root: Optional[str] = None, results_dir: Optional[Path] = None) -> ResultRow:
    """Prepare, build, place, train (untimed, then warm-up + timed steps), evaluate, profile one cell."""
    wall_start = time.perf_counter()
    s = cell.settings
    devices = resolve_devices(cell.devices, s.device_kind, s.threads_per_device)
    use_threads(devices.threads_per_device)
    torch.manual_seed(cell.seed)

    data = prepare_data(cell, data_root)
    placed = build_and_place(cell, data, devices, data_root)
    if s.epochs is not None:
        row = _base_row(cell)
        for column, value in {**data.columns(), **placed.columns(), **train_for_epochs(cell, placed, data,
                                                                                        results_dir)}.items():
            setattr(row, column, value)
        row.duration_s = time.perf_counter() - wall_start
        return row
    curve = train_untimed(cell, placed, data)
    timed = time_steps(cell, placed, data)
    evaluation = evaluate(cell, placed, data, curve)
    columns = {**data.columns(), **placed.columns(), **timed.columns(s.warmup_steps, data.steps_per_epoch),
               **evaluation.columns()}
    if s.profile is not None:
        columns.update(profile(cell, placed, data, timed.stats.median_s, results_dir))
    row = _base_row(cell)
    for column, value in columns.items():
        setattr(row, column, value)
    row.duration_s = time.perf_counter() - wall_start
    return row


def main(argv: list[str]) -> int:
    cell_path, row_path = argv[1], argv[2]
    data_root = argv[3] if len(argv) > 3 and argv[3] else None
    results_dir = Path(argv[4]) if len(argv) > 4 and argv[4] else None  # where traces go
    cell = Cell.from_json(Path(cell_path).read_text())
    start = time.perf_counter()
    try:
        row = run_cell(cell, data_root, results_dir)
    except NonFiniteLossError as exc:
        row = failed_row(cell, "nan", str(exc), time.perf_counter() - start)
    except EpochTimeout as exc:  # a training run's epoch ran past timeout_s; a rerun resumes from its checkpoint
        row = failed_row(cell, "timeout", str(exc), time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status row
        row = failed_row(cell, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        import traceback

        traceback.print_exc()
    tmp = Path(row_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(row.to_dict()))
    tmp.replace(row_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
