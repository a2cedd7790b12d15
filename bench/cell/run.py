"""Run one grid cell in this process and produce its result row.

The runner starts `python -m bench.cell.run CELL.json ROW.json` once per cell, with
the thread budget in the environment before torch is imported, so no global
flag of one cell can leak into the next, and a crash becomes a status.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from bench.execution import choose_balance, resolve_devices, run_pipelined, run_sequential, stage_devices
from bench.execution.processes import record_from_ranks, run_ranks
from bench.cell.evaluation import accuracy, evaluate_exits, test_batches
from bench.execution.record import NonFiniteLossError
from bench.grid import Cell
from bench.cell.measure import peak_memory, provenance, step_stats
from bench.store.row import ResultRow
from bench.cell.model_selection import SelectionCurve, segment_lengths
from bench.cell.training_memory import training_memory_bytes
from data.prepared import prepare_batches
from models.build import build_model

__all__ = ["run_cell", "failed_row"]


def _base_row(cell: Cell) -> ResultRow:
    from data import get_spec

    spec = get_spec(cell.dataset)
    return ResultRow(
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


def glove_embedding(dataset: str, spec, data_root: Optional[str], seed: int) -> tuple[torch.Tensor, float]:
    """GloVe rows aligned to the dataset's vocabulary (row i = word i), and the coverage."""
    from data import glove_path, load_glove, text_vocab

    return load_glove(glove_path(data_root), text_vocab(dataset, data_root), rows=spec.vocab_size, seed=seed)


def run_cell(cell: Cell, data_root: Optional[str] = None, results_dir: Optional[Path] = None) -> ResultRow:
    """Build, place, train (warm-up + timed steps), evaluate and measure one cell."""
    from data import get_spec, load_dataset
    from methods import MethodConfig, create_method

    wall_start = time.perf_counter()
    s = cell.settings
    row = _base_row(cell)
    devices = resolve_devices(cell.devices, s.device_kind, s.threads_per_device)
    torch.set_num_threads(devices.threads_per_device)
    torch.manual_seed(cell.seed)
    spec = get_spec(cell.dataset)

    t0 = time.perf_counter()
    split_args = dict(root=data_root, seed=cell.seed, val_fraction=s.val_fraction)
    train_set = load_dataset(cell.dataset, split="train", augment=s.augment, noise_rate=s.noise_rate, **split_args)
    val_set = load_dataset(cell.dataset, split="val", **split_args) if s.val_fraction > 0 else None
    test_set = load_dataset(cell.dataset, split="test", **split_args)
    untimed = prepare_batches(train_set, cell.batch_size, s.train_steps, cell.seed, s.views, spec.modality, spec,
                              s.data_workers)
    timed = prepare_batches(train_set, cell.batch_size, s.warmup_steps + s.steps, cell.seed + 10_000, s.views,
                            spec.modality, spec, s.data_workers)
    data_time = time.perf_counter() - t0

    model_kwargs = dict(s.model_kwargs)
    if s.glove:
        model_kwargs["embedding_weights"], row.glove_coverage = glove_embedding(cell.dataset, spec, data_root, cell.seed)
    model = build_model(cell.model, spec, **model_kwargs)
    options = s.options_for(cell.method)
    if "trigger_epochs" in options:
        options["steps_per_epoch"] = math.ceil(spec.train_size / cell.batch_size)
    config = MethodConfig(
        lr=s.lr, optimizer=s.optimizer, temperature=s.temperature, projector=s.projector,
        supcon_variant=s.supcon_variant, local_loss=s.local_loss, options=options,
    )
    method = create_method(cell.method, model, config)
    balance, costs = choose_balance(method, devices.count, timed, s.balance)
    method.place(stage_devices(balance, devices.devices), balance)

    eval_batches = test_batches(test_set, s.eval_batch_size, s.eval_batches)
    val_batches = test_batches(val_set, s.eval_batch_size, s.eval_batches) if val_set is not None else None
    curve = SelectionCurve()
    done = 0
    for length in segment_lengths(s.train_steps, s.eval_points):
        if length:
            run_sequential(method, untimed[done:done + length], devices, warmup_steps=0)
            done += length
        if s.eval_points > 1:
            curve.add(done, accuracy(method, eval_batches)[0],
                      accuracy(method, val_batches)[0] if val_batches else None)
    for device in devices.devices:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
    if method.execution == "processes":
        fn, args = method.rank_job(timed, balance, s.warmup_steps)
        results = run_ranks(fn, devices, args, timeout_s=s.timeout_s)
        method.absorb(results)
        record = record_from_ranks(results, s.warmup_steps)
    elif method.decoupled and devices.count > 1:
        record = run_pipelined(method.stage_steps(), balance, devices, timed, s.warmup_steps, s.queue_depth)
    else:
        record = run_sequential(method, timed, devices, s.warmup_steps)
    stats = step_stats(record)
    peak, per_device, mem_kind = peak_memory(devices)
    # after the peak is read (it allocates); one extra, untimed step on a copy
    train_mem = training_memory_bytes(method, timed[0]) if s.count_train_memory else []
    acc, eval_samples = accuracy(method, eval_batches)
    curve.add(s.train_steps + s.warmup_steps + s.steps, acc,
              accuracy(method, val_batches)[0] if val_batches else None)
    exits = evaluate_exits(method, eval_batches)
    if exits is not None:
        for name, value in dataclasses.asdict(exits).items():
            setattr(row, f"exit_{name}" if not name.startswith("exit_") else name, value)
    effective, affiliated = method.parameter_counts()
    steps_per_epoch = math.ceil(spec.train_size / cell.batch_size)

    row.device_kind = devices.kind
    row.device_names = list(devices.names)
    row.threads_per_device = devices.threads_per_device
    row.threads_total = devices.total_threads
    row.cores = devices.cores
    row.oversubscribed = devices.oversubscribed
    row.balance = balance
    row.stage_costs_s = costs or []
    row.warmup_steps = s.warmup_steps
    row.timed_steps = s.steps
    row.step_times_s = stats.step_times_s
    row.step_time_median_s = stats.median_s
    row.step_time_p10_s = stats.p10_s
    row.step_time_p90_s = stats.p90_s
    row.timed_total_s = stats.timed_total_s
    row.steps_per_epoch = steps_per_epoch
    row.epoch_time_s = stats.median_s * steps_per_epoch
    row.epoch_time_kind = "extrapolated"
    row.data_time_s = data_time
    row.throughput_samples_s = cell.batch_size * s.views / stats.median_s
    row.stage_busy_s = record.stage_busy_s
    row.device_busy_s = record.device_busy_s
    row.final_train_loss = record.losses[-1]
    row.test_acc = acc
    for column, value in curve.columns().items():
        setattr(row, column, value)
    row.eval_samples = eval_samples
    row.params_effective = effective
    row.params_affiliated = affiliated
    row.peak_mem_bytes = peak
    row.peak_mem_per_device = per_device
    row.peak_mem_kind = mem_kind
    row.train_mem_bytes = train_mem
    row.train_mem_max_bytes = max(train_mem) if train_mem else None
    if s.profile is not None:  # after evaluation, on a copy: neither timings nor accuracy see the profiler
        from bench.profiling.profiler import ProfileSchedule, cell_trace_dir, fill_profile_columns, profile_cell

        plan = ProfileSchedule.from_setting(s.profile)
        profile_batches = prepare_batches(train_set, cell.batch_size, plan.batches(devices.count, s.queue_depth),
                                          cell.seed + 20_000, s.views, spec.modality, spec)
        trace_dir = cell_trace_dir(results_dir, cell.grid, cell.label, cell.cell_id)
        result = profile_cell(method, devices, balance, profile_batches, plan, trace_dir, s.queue_depth, s.timeout_s)
        fill_profile_columns(row, result, stats.median_s, results_dir)
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
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status row
        row = failed_row(cell, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        import traceback

        traceback.print_exc()
    tmp = Path(row_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(row.to_dict()))
    os.replace(tmp, row_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
