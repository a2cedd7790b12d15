"""A training run: E whole epochs through the cell's executor, evaluated, timed and resumable.

Why per epoch through `run_training`: every batch of every epoch goes through
the same executor as the sampled mode (decoupled methods pipelined across the
devices, DDP and torch.distributed GPipe in their rank processes, coupled
methods sequentially), and the executor's queues drain only at the epoch
boundary, where the run evaluates and checkpoints anyway.  Batches stream from
a DataLoader (data/epochs.py), so memory does not grow with E; the rank and
process executors take an epoch's batches as a list (one epoch in memory).

Time per epoch is measured with every device synchronised; evaluation and
checkpointing sit outside it.  `data_wait_s` is the time the feeding loop was
blocked on the loader (`next()`), which is what a slow loader costs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from bench.cell.checkpoint import RunState, checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint
from bench.cell.evaluation import ExitReport, accuracy, evaluate_exits
from bench.cell.model_selection import SelectionCurve
from bench.cell.watchdog import EpochWatchdog
from bench.execution.choice import run_training
from bench.execution.devices import synchronize
from bench.store.curves import CurveRow, append_curve
from data.epochs import EpochStream
from methods.schedules import current_lr, make_schedulers

__all__ = ["TimedFeed", "TrainingRun", "run_epochs"]


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
    """What a training run measured: per-epoch times, the final evaluation, the selection curve."""

    epochs: int
    run: RunState
    selection: SelectionCurve
    test_acc: float
    eval_samples: int
    exits: Optional[ExitReport]
    steps_per_epoch: int
    samples_per_step: int
    curve: list[CurveRow] = field(default_factory=list)

    def columns(self) -> dict:
        r = self.run
        times = r.epoch_times_s
        median = statistics.median(times)
        out = {
            "epochs": self.epochs, "epoch_times_s": times, "epoch_time_s": median, "epoch_time_kind": "measured",
            "train_wall_s": r.wall_s, "data_wait_s": sum(r.data_wait_s),
            "data_wait_fraction": sum(r.data_wait_s) / r.wall_s if r.wall_s > 0 else None,
            "throughput_samples_s": r.samples / r.wall_s if r.wall_s > 0 else None,
            "warmup_steps": 0, "timed_steps": self.epochs * self.steps_per_epoch,
            "step_time_median_s": median / self.steps_per_epoch, "timed_total_s": r.wall_s,
            "final_train_loss": r.last_loss, "resumed_from_epoch": r.resumed_from_epoch,
            "test_acc": self.test_acc, "eval_samples": self.eval_samples, **self.selection.columns(),
        }
        if self.exits is not None:
            for name, value in vars(self.exits).items():
                out[name if name.startswith("exit_") else f"exit_{name}"] = value
        return out


def _selection_from(saved: dict) -> SelectionCurve:
    return SelectionCurve(**saved) if saved else SelectionCurve()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def run_epochs(cell, placed, data, results_dir: Optional[Path]) -> TrainingRun:
    """Train `placed.method` for `cell.settings.epochs` epochs, resuming from a checkpoint if one exists.

    `data` is the cell's CellData (train split, validation and whole-test batches).
    Checkpoints and the curve fragment go under `results_dir` (none without it).
    """
    s = cell.settings
    epochs = int(s.epochs)
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
    exits: Optional[ExitReport] = None
    test_acc, eval_samples = (run.curve[-1]["test_acc"], 0) if run.curve else (0.0, 0)
    with EpochWatchdog(s.timeout_s) as watchdog:
        for epoch in range(run.epoch + 1, epochs + 1):
            watchdog.arm(epoch)
            lr = current_lr(method.optimizers(), method.config.lr)
            feed = TimedFeed(stream.epoch(epoch))
            synchronize(devices)
            start = time.perf_counter()
            record = run_training(method, feed, devices, placed.balance, warmup_steps=0, queue_depth=s.queue_depth,
                                  timeout_s=s.timeout_s, executor=s.executor)
            synchronize(devices)
            epoch_s = time.perf_counter() - start
            for scheduler in schedulers:
                scheduler.step()
            samples = feed.samples
            run.epoch, run.wall_s = epoch, run.wall_s + epoch_s
            run.epoch_times_s.append(epoch_s)
            run.data_wait_s.append(feed.wait_s)
            run.samples += samples
            run.last_loss = record.losses[-1]
            row = CurveRow(
                cell_id=cell.cell_id, grid=cell.grid, method=cell.method, model=cell.model, dataset=cell.dataset,
                batch_size=cell.batch_size, devices=cell.devices, trial=cell.trial, epoch=epoch, wall_s=run.wall_s,
                epoch_time_s=epoch_s, data_wait_s=feed.wait_s, samples_per_s=samples / epoch_s,
                train_loss=_mean(record.losses), stage_losses=[_mean(k) for k in record.stage_losses], lr=lr,
            )
            if epoch % s.eval_every == 0 or epoch == epochs:
                test_acc, eval_samples = accuracy(method, data.test_batches)
                if eval_samples == 0:
                    raise ValueError("evaluation saw 0 test samples: the test split is empty")
                val_acc = accuracy(method, data.val_batches)[0] if data.val_batches else None
                exits = evaluate_exits(method, data.test_batches)
                row.test_acc, row.val_acc = test_acc, val_acc
                row.exit_acc = list(exits.exit_acc) if exits is not None else []
                selection.add(epoch * steps_per_epoch, test_acc, val_acc)
            run.curve.append(row.to_dict())
            run.selection = vars(selection).copy()
            if ckpt is not None and (epoch % s.checkpoint_every == 0 or epoch == epochs):
                save_checkpoint(ckpt, method, schedulers, run)
    stream.close()
    if exits is None and run.curve:  # resumed after the last epoch: evaluate again (same numbers)
        test_acc, eval_samples = accuracy(method, data.test_batches)
        exits = evaluate_exits(method, data.test_batches)
    curve = [CurveRow(**row) for row in run.curve]
    if results_dir is not None:
        append_curve(results_dir, curve)
        if not s.keep_checkpoints and ckpt is not None:
            remove_checkpoint(ckpt)
    return TrainingRun(epochs, run, selection, test_acc, eval_samples, exits, steps_per_epoch,
                       cell.batch_size * s.views, curve)
