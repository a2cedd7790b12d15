"""A distributed cell as one job: N rank processes that live for the whole cell and run its phases.

When `choose_executor` says RANKS (DDP, gpipe_dist) or PROCESSES (decoupled
stages with `executor: processes`), the cell process does not run the phases
itself: `run_cell_in_ranks` starts the ranks once (`ranks.run_ranks`), each
runs `run_rank_program`, an SPMD program, and rank 0 hands back the row.
Under torchrun the same program runs, started by `python -m bench.run.rank_cell`.
The cell process never holds a batch or a parameter of a rank.

Per rank, in order (the same phases as bench/cell/phases.py, in rank form):

- data: every rank loads the splits itself (the test and hold-out batches it
  evaluates on are its own lists).  Training batches are read only where they
  are used: a pipeline's rank 0 reads inputs and labels (the labels travel with
  the activations, or, for gpipe_dist, by a send to the last rank); a DDP rank
  reads its contiguous slice of every global batch (data/epochs.py `shard`);
- build: `torch.manual_seed(cell.seed)` before the data and the method, as in
  one process, so every rank builds the same method;
- balance: a given or even balance is computed by every rank alike; `auto` is
  timed by rank 0 on its probe batches and broadcast;
- the rank loop (bench/execution/rank_loops.py) is built once: each rank places
  only its own stages on its device (the others stay on the CPU, unused);
- train or sample: a sampled cell's untimed segments (with the selection
  curve's evaluations between them), then warm-up + timed steps; a training
  run's epochs, each evaluated (bench/cell/rank_evaluation.py) and checkpointed
  per rank (checkpoint.RankCheckpoints) as due.  An epoch's time is taken on
  rank 0's clock between two barriers, every device synchronised first;
  evaluation and checkpointing are outside it;
- with `profile` set, the rank loop once more under the profiler, on fresh
  batches, its state restored after (bench/profiling/rank_profile.py);
- per-rank results (the loop's small records, peak memory, the digests of the
  stages the rank trained: bench/cell/param_checksum.py) go to rank 0 with
  `dist.gather_object`; rank 0 builds the `RunRecord`, the row (the same
  `rows.cell_row` from the same phase columns) and, for a training run, the curve.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from bench.cell.checkpoint import RankCheckpoints, RunState
from bench.cell.evaluation import EvalPoint, Evaluation
from bench.cell.memory import rank_peak, ranks_memory, reset_peak
from bench.cell.model_selection import SelectionCurve, segment_lengths
from bench.cell.param_checksum import StageDigests, ranks_checksum
from bench.cell.phases import (
    CellData,
    PlacedMethod,
    Profiled,
    SampledSteps,
    Trained,
    build_method,
    judge_health,
    prepare_data,
)
from bench.cell.rank_evaluation import evaluate_in_ranks
from bench.cell.rows import cell_row, utc_now
from bench.cell.timing import step_stats, time_after_warmup, warmup_split
from bench.cell.training_memory import training_memory_bytes
from bench.cell.training_run import EpochDone, TimedFeed, TrainingRun, account_epoch, finish_run
from bench.cell.watchdog import EpochTimeout, EpochWatchdog
from bench.execution.devices import DeviceSet, resolve_devices
from bench.execution.placement import choose_balance
from bench.execution.rank_context import RankContext, pipeline_context, replica_context
from bench.execution.rank_loops import Prefetch, aligned_now, barrier, make_rank_loop, shard_of
from bench.execution.ranks import RanksFailed, run_ranks
from bench.execution.record import NonFiniteLossError
from bench.grid import Cell
from bench.store.row import ResultRow
from data.epochs import EpochStream, batches_per_epoch
from data.prepared import prepare_batches
from methods.base import Method
from methods.rank_method import RankMethod
from methods.schedules import current_lr, make_schedulers

__all__ = ["run_cell_in_ranks", "rank_cell_job", "run_rank_program", "ranks_timeout_s"]


def ranks_timeout_s(cell: Cell) -> float:
    """The whole job's limit: `timeout_s` for a sampled cell, one share per epoch plus one for a training run.

    Slightly under the runner's limit on the cell process (run/cell_process.py),
    so the ranks are ended, and the row written, by the cell itself.
    """
    s = cell.settings
    limit = s.timeout_s * ((s.epochs or 0) + 1) if s.is_training_run else s.timeout_s
    return 0.95 * limit


# -- the cell process ----------------------------------------------------------------------------

_ERRORS = {"NonFiniteLossError": NonFiniteLossError, "EpochTimeout": EpochTimeout}


def run_cell_in_ranks(cell: Cell, data_root: Optional[str], results_dir: Optional[Path]) -> ResultRow:
    """Start the cell's ranks once, for the whole cell; rank 0's row.

    A rank's NaN loss or epoch timeout becomes the same exception (hence the same
    row status) as in one process; a rank that dies or hangs ends them all.
    """
    s = cell.settings
    devices = resolve_devices(cell.devices, s.device_kind, s.threads_per_device)
    try:
        results = run_ranks(rank_cell_job, devices, (cell, data_root, str(results_dir) if results_dir else None),
                            timeout_s=ranks_timeout_s(cell))
    except RanksFailed as exc:
        for name, kind in _ERRORS.items():
            found = re.search(rf"{name}: (.*)", str(exc))
            if found:
                raise kind(found.group(1)) from exc
        raise
    except TimeoutError as exc:
        raise EpochTimeout(str(exc)) from exc
    row = results[0]
    assert isinstance(row, ResultRow)
    return row


def rank_cell_job(rank: int, world: int, device: torch.device, cell: Cell, data_root: Optional[str],
                  results_dir: Optional[str]) -> Optional[ResultRow]:
    """One rank forked by `run_ranks` (which has initialised the process group): the rank program."""
    return run_rank_program(cell, rank, world, device, data_root, Path(results_dir) if results_dir else None)


# -- the rank program ----------------------------------------------------------------------------

@dataclass
class _Rank:
    """What every phase of one rank works with."""

    cell: Cell
    ctx: RankContext
    method: Method
    loop: Any  # bench.execution.rank_loops.RankLoop
    data: CellData

    @property
    def first(self) -> bool:
        return self.ctx.first

    def batches(self, prepared: list) -> Optional[list]:
        """This rank's part of prepared batches: all (pipeline rank 0), its shard (DDP), none."""
        if not self.loop.reads_data:
            return None
        return [shard_of(b, self.loop.shard) for b in prepared]

    def gather(self, obj: Any) -> Optional[list]:
        """Every rank's `obj` on rank 0 (None elsewhere): small per-rank results only."""
        out: Optional[list] = [None] * self.ctx.world if self.first else None
        dist.gather_object(obj, out, dst=0)
        return out

    def evaluate(self) -> Optional[EvalPoint]:
        return evaluate_in_ranks(self.method, self.ctx, self.data.test_batches, self.data.val_batches)


def _broadcast(obj: Any, first: bool) -> Any:
    box = [obj if first else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _device_set(cell: Cell, device: torch.device, world: int, first: bool) -> Optional[DeviceSet]:
    """Rank 0: the cell's devices as the ranks see them (for the row's device columns)."""
    from bench.execution.threads import available_cores, cores_per_device

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    names: Optional[list] = [None] * world if first else None
    dist.gather_object((str(device), name), names, dst=0)
    if not first:
        return None
    assert names is not None
    s = cell.settings
    cores = available_cores()
    if device.type == "cuda":
        return DeviceSet("cuda", tuple(torch.device(d) for d, _ in names), tuple(n for _, n in names),
                         s.threads_per_device or max(1, cores), cores)
    return DeviceSet("cpu", tuple(torch.device("cpu") for _ in names), tuple(f"cpu-worker{r}" for r in range(world)),
                     s.threads_per_device or cores_per_device(world), cores)


def _balance(cell: Cell, method: Method, data: CellData, world: int, first: bool,
             device: torch.device) -> tuple[list[int], list[float]]:
    """A given or even balance on every rank alike; `auto`, `predicted`: timed on rank 0's probes and
    device, then broadcast."""
    setting = cell.settings.balance
    if setting not in ("auto", "predicted"):
        balance, costs = choose_balance(method, world, [], setting)
        return balance, costs or []
    chosen = choose_balance(method, world, data.timed, setting, device=device) if first else None
    balance, costs = _broadcast(chosen, first)
    return balance, costs or []


def _context(method: Method, rank: int, world: int, device: torch.device, balance: list[int]) -> RankContext:
    """Replicas (a method that declares `replica`: DDP) or a pipeline cut by the balance."""
    if isinstance(method, RankMethod) and method.replica:
        return replica_context(rank, world, device, method.model.num_stages)
    return pipeline_context(rank, world, device, balance)


def run_rank_program(cell: Cell, rank: int, world: int, device: torch.device, data_root: Optional[str],
                     results_dir: Optional[Path]) -> Optional[ResultRow]:
    """Every phase of `cell` in this rank (process group initialised); rank 0's row, None elsewhere."""
    if world != cell.devices:
        raise ValueError(f"cell {cell.cell_id[:10]} runs on {cell.devices} devices but {world} ranks started")
    started_at, wall_start = utc_now(), time.perf_counter()
    first = rank == 0
    devices = _device_set(cell, device, world, first)
    torch.manual_seed(cell.seed)
    data = prepare_data(cell, data_root, read_training=_reads_training(cell, rank), warn=first)
    built = build_method(cell, data, data_root)
    method = built.method
    balance, costs = _balance(cell, method, data, world, first, device)
    ctx = _context(method, rank, world, device, balance)
    loop = make_rank_loop(method, ctx, cell.settings.queue_depth)
    me = _Rank(cell, ctx, method, loop, data)

    reset_peak(device)
    result: Any = _run_epochs(me, balance, results_dir) if cell.settings.is_training_run else _sample(me)
    peaks = me.gather(rank_peak(device))
    digests = me.gather(StageDigests.of(method, ctx.stages, ctx.replica))  # this rank's stages, trained
    evaluation = result.final_evaluation(me)
    profiled = _profile(me, results_dir)
    if not first:
        return None
    assert devices is not None and peaks is not None and digests is not None
    s = cell.settings
    # a pipeline rank placed only its own stages: its coupled step is counted on the CPU
    train_mem = training_memory_bytes(method, data.timed[0], on_cpu=not ctx.replica) if s.count_train_memory else []
    trained = Trained(result.outcome, ranks_memory(peaks, train_mem),
                      ranks_checksum(digests, method.model.num_stages, ctx.replica))
    placed = PlacedMethod(method, devices, balance, costs, s.executor)
    profile_columns = Profiled(profiled, trained.result.step_median_s, results_dir).columns() if profiled else {}
    return cell_row(cell, data.columns(), built.columns(), placed.columns(), trained.columns(), evaluation.columns(),
                    profile_columns, judge_health(cell, data, trained, evaluation),
                    started_at=started_at, duration_s=time.perf_counter() - wall_start)


def _profile(me: _Rank, results_dir: Optional[Path]) -> Any:
    """With `profile` set: the rank loop once more under the profiler, after evaluation; rank 0's result.

    On fresh batches, its training state restored after (bench/profiling/rank_profile.py),
    so neither the timings nor the accuracy see it.
    """
    from bench.profiling.profiler import cell_trace_dir
    from bench.profiling.rank_profile import profile_in_rank

    cell, data = me.cell, me.data
    s = cell.settings
    plan = s.profile
    if plan is None:
        return None
    steps = plan.batches(me.ctx.world, s.queue_depth)
    batches = prepare_batches(data.train_set, cell.batch_size, steps, cell.seed + 20_000, s.views,
                              data.spec.modality, data.spec) if me.loop.reads_data else []
    trace_dir = cell_trace_dir(results_dir, cell.grid, cell.label, cell.cell_id)
    return profile_in_rank(me.loop, me.ctx, me.batches(batches), steps, plan, trace_dir, cell.method,
                           cell.batch_size)


def _reads_training(cell: Cell, rank: int) -> bool:
    """Whether this rank needs the prepared training batches: rank 0 always (balance probes, memory count),
    a replica (DDP) for its shards, a pipeline's other ranks never."""
    from methods import method_class

    cls = method_class(cell.method)
    return rank == 0 or (issubclass(cls, RankMethod) and cls.replica)


# -- sampled cells -------------------------------------------------------------------------------

@dataclass
class _Sampled:
    outcome: Optional[SampledSteps]  # rank 0's

    def final_evaluation(self, me: _Rank) -> Optional[Evaluation]:
        point = me.evaluate()
        if self.outcome is None or point is None:
            return None
        self.outcome.selection.add(self.outcome.steps_done, point.test_acc, point.val_acc)
        return Evaluation(point.test_acc, point.eval_samples, self.outcome.selection, point.exits)


def _sample(me: _Rank) -> _Sampled:
    """Untimed segments (evaluated between them), then warm-up (drained, then one fill batch) and timed steps."""
    s = me.cell.settings
    curve = SelectionCurve()
    untimed = me.batches(me.data.untimed)
    done = 0
    for length in segment_lengths(s.train_steps, s.eval_points):
        if length:
            me.loop.run(untimed[done:done + length] if untimed is not None else None, length, 0)
            done += length
        if s.eval_points > 1:
            point = me.evaluate()
            if point is not None:
                curve.add(done, point.test_acc, point.val_acc)
    reset_peak(me.ctx.device)
    summary = time_after_warmup(me.loop.run, me.batches(me.data.timed), s.warmup_steps, s.steps)
    gathered = me.gather(summary)
    if gathered is None:
        return _Sampled(None)
    record = me.loop.record(gathered, warmup_split(s.warmup_steps).fill)
    return _Sampled(SampledSteps(curve, record, step_stats(record), me.cell.batch_size * s.views, s.warmup_steps,
                                 me.data.steps_per_epoch, s.train_steps + s.warmup_steps + s.steps))


# -- training runs --------------------------------------------------------------------------------

@dataclass
class _Epochs:
    outcome: Optional[TrainingRun]  # rank 0's

    def final_evaluation(self, me: _Rank) -> Optional[Evaluation]:
        if self.outcome is None:
            return None
        return self.outcome.evaluation(me.method, me.data)


def _run_epochs(me: _Rank, balance: list[int], results_dir: Optional[Path]) -> _Epochs:
    """E whole epochs through the rank loop, evaluated, timed and checkpointed per rank (resumable)."""
    cell, ctx, loop = me.cell, me.ctx, me.loop
    s = cell.settings
    epochs = int(s.epochs or 0)
    schedulers = make_schedulers(loop.optimizers(), s.lr_schedule, epochs, s.lr_min)
    store = RankCheckpoints(results_dir, cell.cell_id) if results_dir is not None else None
    run = store.load(ctx.rank, ctx.world, balance, loop, schedulers) if store is not None else None
    if run is not None:
        run.resumed_from_epoch = run.epoch
    run = run or RunState()
    selection = SelectionCurve(**run.selection) if run.selection else SelectionCurve()
    stream = (EpochStream(me.data.train_set, cell.batch_size, cell.seed, s.views, run.epoch + 1, epochs,
                          workers=s.data_workers, pin_memory=ctx.device.type == "cuda", shard=loop.shard)
              if loop.reads_data and run.epoch < epochs else None)
    steps_per_epoch = batches_per_epoch(len(me.data.train_set), cell.batch_size)
    done = EpochDone(run, selection, cell.identity_columns(), steps_per_epoch)
    final: Optional[EvalPoint] = None
    ran = False
    with EpochWatchdog(s.timeout_s) as watchdog:
        for epoch in range(run.epoch + 1, epochs + 1):
            watchdog.arm(epoch)
            lr = current_lr(loop.optimizers(), me.method.config.lr)
            ahead = Prefetch(stream.epoch(epoch)) if stream is not None else None
            feed = TimedFeed(ahead) if ahead is not None else None
            start = aligned_now(ctx.device)
            summary = loop.run(feed, steps_per_epoch, 0)
            epoch_s = aligned_now(ctx.device) - start
            if ahead is not None:
                ahead.close()
            for scheduler in schedulers:
                scheduler.step()
            gathered = me.gather({**summary, "wait_s": feed.wait_s if feed else 0.0,
                                  "samples": feed.samples if feed else 0})
            ran = True
            point = me.evaluate() if epoch % s.eval_every == 0 or epoch == epochs else None
            final = point
            if gathered is not None:  # rank 0
                readers = [g for g in gathered if g["samples"]]
                samples = sum(g["samples"] for g in readers) if ctx.replica else gathered[0]["samples"]
                account_epoch(done, epoch, epoch_s, lr, loop.record(gathered, 0),
                              max((g["wait_s"] for g in readers), default=0.0), samples, point)
            if store is not None and (epoch % s.checkpoint_every == 0 or epoch == epochs):
                store.save_shard(ctx.rank, epoch, loop.state_dict(), schedulers)
                barrier(ctx.device)  # every shard of this epoch is on disk before the manifest names them
                if ctx.first:
                    store.save_manifest(epoch, ctx.world, balance, run)
    if stream is not None:
        stream.close()
    if not ran:  # resumed after the last epoch: evaluate again (same numbers; the hold-out is not needed)
        final = evaluate_in_ranks(me.method, ctx, me.data.test_batches, None)
    barrier(ctx.device)
    if not ctx.first:
        return _Epochs(None)
    assert final is not None
    remove = store.remove if store is not None and not s.keep_checkpoints else None
    return _Epochs(finish_run(done, epochs, final, results_dir, remove))
