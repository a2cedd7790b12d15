"""A training run: E whole epochs through the cell's executor, evaluated, timed and resumable.

Why per epoch through `run_training`: every batch of every epoch goes through
the same executor as the sampled mode (decoupled methods pipelined across the
devices in threads, coupled methods sequentially), and the executor's queues
drain only at the epoch boundary, where the run evaluates and checkpoints
anyway.  Batches stream from a DataLoader (data/epochs.py), so memory does not
grow with E.  Distributed cells (DDP, gpipe_dist, `executor: processes`) run
their epochs inside their ranks instead (bench/cell/rank_phases.py), through
the same `account_epoch`.

Time per epoch is measured with every device synchronised; evaluation and
checkpointing sit outside it.  `data_wait_s` is the time the feeding loop was
blocked on the loader (`next()`), which is what a slow loader costs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

from bench.cell.checkpoint import RunState, checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint
from bench.cell.evaluation import EvalPoint, Evaluation, evaluate_now
from bench.cell.model_selection import SelectionCurve
from bench.cell.watchdog import EpochWatchdog
from bench.execution.choice import run_training
from bench.execution.devices import synchronize
from bench.execution.record import RunRecord
from bench.store.curves import CurveRow, append_curve
from bench.store.health import LearningTrace
from bench.store.records import from_columns
from data.epochs import EpochStream
from methods.schedules import current_lr, make_schedulers

if TYPE_CHECKING:
    from bench.cell.phases import CellData, PlacedMethod
    from bench.grid import Cell

__all__ = ["TimedFeed", "TrainingRun", "run_epochs", "EpochDone", "account_epoch", "finish_run"]


class TimedFeed:
    """An iterator over batches that adds up the time spent waiting in `next()` of the source,
    and the samples it handed out (a two-view batch counts both views)."""

    def __init__(self, source: Iterable) -> None:
        self._source: Iterator = iter(source)
        self.wait_s = 0.0
        self.samples = 0

    def __iter__(self) -> "TimedFeed":
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        try:
            batch = next(self._source)
        finally:
            self.wait_s += time.perf_counter() - t0
        self.samples += len(batch[1])
        return batch


@dataclass
class TrainingRun:
    """What a training run measured: per-epoch times, the last evaluation, the selection curve, the curve rows."""

    epochs: int
    run: RunState
    selection: SelectionCurve
    final: EvalPoint  # after the last epoch
    steps_per_epoch: int
    curve: list[CurveRow] = field(default_factory=list)

    @property
    def step_median_s(self) -> float:
        """The median epoch over its steps: the step time a profiled run is compared with."""
        return statistics.median(self.run.epoch_times_s) / self.steps_per_epoch

    def columns(self) -> dict:
        r = self.run
        times = r.epoch_times_s
        median = statistics.median(times)
        return {
            "epoch_times_s": times, "epoch_time_s": median, "epoch_time_kind": "measured",
            "train_wall_s": r.wall_s, "data_wait_s": sum(r.data_wait_s),
            "data_wait_fraction": sum(r.data_wait_s) / r.wall_s if r.wall_s > 0 else None,
            "throughput_samples_s": r.samples / r.wall_s if r.wall_s > 0 else None,
            "warmup_steps": 0, "timed_steps": self.epochs * self.steps_per_epoch,
            "step_time_median_s": median / self.steps_per_epoch, "timed_total_s": r.wall_s,
            "final_train_loss": r.last_loss, "resumed_from_epoch": r.resumed_from_epoch,
        }

    def evaluation(self, method: Any, data: "CellData") -> Evaluation:
        """The evaluation after the last epoch, made as the run ended (a training run evaluates as it goes)."""
        return Evaluation(self.final.test_acc, self.final.eval_samples, self.selection, self.final.exits)

    def learning(self, num_classes: int, evaluation: Evaluation) -> LearningTrace:
        """The whole curve (a resumed run's too): loss per epoch, accuracy and exits per evaluation."""
        accuracy = [row.test_acc for row in self.curve if row.test_acc is not None]
        exits = [row.exit_acc for row in self.curve if row.test_acc is not None and row.exit_acc]
        return LearningTrace(num_classes, accuracy, [row.train_loss for row in self.curve], True, exits)


def _selection_from(saved: dict) -> SelectionCurve:
    return SelectionCurve(**saved) if saved else SelectionCurve()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass
class EpochDone:
    """Where a finished epoch is written down: the run state, its selection curve, the curve rows' identity."""

    run: RunState
    selection: SelectionCurve
    identity: dict
    steps_per_epoch: int


def account_epoch(done: EpochDone, epoch: int, epoch_s: float, lr: float, record: RunRecord, wait_s: float,
                  samples: int, point: Optional[EvalPoint]) -> None:
    """Add one epoch (its record, times, samples and evaluation, if any) to the run state and curve.

    Shared by the in-process run and rank 0 of a distributed one, so a curve row
    means the same whichever executor trained the cell.
    """
    run, selection = done.run, done.selection
    run.epoch, run.wall_s = epoch, run.wall_s + epoch_s
    run.epoch_times_s.append(epoch_s)
    run.data_wait_s.append(wait_s)
    run.samples += samples
    run.last_loss = record.losses[-1]
    columns = {
        "epoch": epoch, "wall_s": run.wall_s, "epoch_time_s": epoch_s, "data_wait_s": wait_s,
        "samples_per_s": samples / epoch_s, "train_loss": _mean(record.losses),
        "stage_losses": [_mean(k) for k in record.stage_losses], "lr": lr,
    }
    if point is not None:
        exit_acc = list(point.exits.exit_acc) if point.exits is not None else []
        columns |= {"test_acc": point.test_acc, "val_acc": point.val_acc, "exit_acc": exit_acc}
        selection.add(epoch * done.steps_per_epoch, point.test_acc, point.val_acc)
    run.curve.append(from_columns(CurveRow, done.identity, columns).to_dict())
    run.selection = vars(selection).copy()


def run_epochs(cell: "Cell", placed: "PlacedMethod", data: "CellData", results_dir: Optional[Path]) -> TrainingRun:
    """Train `placed.method` for `cell.settings.epochs` epochs, resuming from a checkpoint if one exists.

    `data` is the cell's CellData (train split, validation and whole-test batches).
    Checkpoints and the curve fragment go under `results_dir` (none without it).
    """
    s = cell.settings
    epochs = int(s.epochs or 0)
    method, devices = placed.method, placed.devices
    schedulers = make_schedulers(method.optimizers(), s.lr_schedule, epochs, s.lr_min)
    ckpt = checkpoint_path(results_dir, cell.cell_id) if results_dir is not None else None
    run = load_checkpoint(ckpt, method, schedulers) if ckpt is not None else None
    if run is not None:
        run.resumed_from_epoch = run.epoch
    run = run or RunState()
    selection = _selection_from(run.selection)
    stream = EpochStream(data.train_set, cell.batch_size, cell.seed, s.views, run.epoch + 1, epochs,
                         workers=s.data_workers, pin_memory=devices.kind == "cuda")
    steps_per_epoch = stream.batches_per_epoch
    identity = cell.identity_columns()
    final: Optional[EvalPoint] = None
    with EpochWatchdog(s.timeout_s) as watchdog:
        for epoch in range(run.epoch + 1, epochs + 1):
            watchdog.arm(epoch)
            lr = current_lr(method.optimizers(), method.config.lr)
            feed = TimedFeed(stream.epoch(epoch))
            synchronize(devices)
            start = time.perf_counter()
            record = run_training(method, feed, devices, placed.balance, warmup_steps=0, queue_depth=s.queue_depth,
                                  executor=s.executor)
            synchronize(devices)
            epoch_s = time.perf_counter() - start
            for scheduler in schedulers:
                scheduler.step()
            final = None
            if epoch % s.eval_every == 0 or epoch == epochs:
                final = evaluate_now(method, data.test_batches, data.val_batches)
            account_epoch(EpochDone(run, selection, identity, steps_per_epoch), epoch, epoch_s, lr, record,
                          feed.wait_s, feed.samples, final)
            if ckpt is not None and (epoch % s.checkpoint_every == 0 or epoch == epochs):
                save_checkpoint(ckpt, method, schedulers, run)
    stream.close()
    if final is None:  # resumed after the last epoch: evaluate again (same numbers; the hold-out is not needed)
        final = evaluate_now(method, data.test_batches, None)
    remove = (lambda: remove_checkpoint(ckpt)) if ckpt is not None and not s.keep_checkpoints else None
    return finish_run(EpochDone(run, selection, identity, steps_per_epoch), epochs, final, results_dir, remove)


def finish_run(done: EpochDone, epochs: int, final: EvalPoint, results_dir: Optional[Path],
               remove_checkpoints: Optional[Callable[[], None]]) -> TrainingRun:
    """The finished run: its curve appended under `results_dir`, its checkpoints removed if asked."""
    curve = [from_columns(CurveRow, row) for row in done.run.curve]
    if results_dir is not None:
        append_curve(results_dir, curve)
        if remove_checkpoints is not None:
            remove_checkpoints()
    return TrainingRun(epochs, done.run, done.selection, final, done.steps_per_epoch, curve)
