"""The schedules the harness runs, each written out as the tasks its executor issues (see simulator.py).

A method declares which one it runs (`Method.schedule_for`); this module knows
schedules, never methods.  Each builder turns a `Plan` (costs, balance, link,
batches, micro-batches...) into a `Schedule`: the tasks in the order each
device issues them, and which task ends each batch.  Stage k runs on the device
its balance gives it; a hand-over between devices is a COPY task on the link
from the sender to the receiver (one queue per direction).

- naive: BP on N devices (naive model parallelism): forward through every
  stage, loss, backward back through every stage, update; one device works at a time.
- gpipe: fill-drain (Huang et al. 2019) with m micro-batches; with `checkpoint`
  "always" / "except_last" a backward first recomputes its forward.
- 1f1b: PipeDream-flush (Narayanan et al. 2021): device d runs N-d-1 forwards,
  then alternates one forward and one backward; at most N micro-batches in flight.
- decoupled: SCPL-style stage steps (forward, local loss, backward, update)
  handed on after the update through bounded queues of `queue_depth` batches.
- decoupled_microbatch: SCPL + GPipe: forwards per micro-batch, handed on at
  once; loss, backward and update once the batch's last micro-batch is in.
- data_parallel: DDP: N replicas on batch/N samples each, gradient buckets
  all-reduced (ring) as the backward produces them, then the update.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .costs import CostCurve, StageCosts
from .links import Link
from .simulator import Task

__all__ = ["Plan", "Schedule", "SCHEDULES", "build_schedule", "DDP_BUCKET_BYTES"]

DDP_BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's default bucket_cap_mb


@dataclass(frozen=True)
class Plan:
    """Everything a schedule needs: costs, where the stages go, the link, how the run is fed."""

    costs: CostCurve
    batch: int
    balance: tuple[int, ...]  # stages per device
    link: Link
    activation_bytes: tuple[float, ...] = ()  # per sample, stage k's output (k < last matter)
    parameter_bytes: tuple[float, ...] = ()  # per stage (the head with the last)
    batches: int = 3  # warm-up + timed, as the cell runs them
    micro_batches: int = 1
    checkpoint: str = "never"  # "always" | "except_last" | "never"
    queue_depth: int = 2
    one_thread: bool = False  # every device's work in one thread (torchgpipe on CPU)
    bucket_bytes: float = DDP_BUCKET_BYTES
    replicas: int = 1  # data parallelism: devices each holding every stage (balance = (stages,))
    # what the method's runs cost beyond BP's stage work, measured on one device (overheads.py): seconds per
    # micro-batch (gpipe, 1f1b) or per step on each replica (data_parallel), spread over the stages by their
    # share of the work, half with each forward, half with each backward
    overhead_s: float = 0.0

    @property
    def devices(self) -> int:
        return len(self.balance) * self.replicas

    @property
    def num_stages(self) -> int:
        return sum(self.balance)

    @functools.cached_property
    def lanes(self) -> list[int]:
        return _lanes(self.balance)

    def device_of(self, k: int) -> int:
        return self.lanes[k]

    def stages_of(self, d: int) -> list[int]:
        first = sum(self.balance[:d])
        return list(range(first, first + self.balance[d]))


@dataclass
class Schedule:
    """The tasks, which tasks end each batch (the latest of them), and the device of each timeline lane."""

    tasks: list[Task] = field(default_factory=list)
    completions: list[list[str]] = field(default_factory=list)
    lanes: list[int] = field(default_factory=list)  # lanes[stage] = device, as in bench.profiling


def _lanes(balance: Sequence[int]) -> list[int]:
    return [d for d, count in enumerate(balance) for _ in range(count)]


class _Builder:
    """Appends tasks with unique, predictable names: `{phase}:t{batch}:j{micro}:k{stage}`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.schedule = Schedule(lanes=_lanes(plan.balance))

    def device(self, d: int) -> str:
        return "device0" if self.plan.one_thread else f"device{d}"

    def add(self, phase: str, t: int, j: int, k: int, duration: float, *, device: Optional[int] = None,
            after: Sequence[str] = (), after_start: Sequence[str] = (), tag: str = "") -> str:
        name = f"{phase}{tag}:t{t}:j{j}:k{k}"
        d = self.plan.device_of(k) if device is None else device
        self.schedule.tasks.append(Task(name, self.device(d), duration, tuple(after), tuple(after_start),
                                        stage=k, phase=phase, batch=t, micro=j))
        return name

    def copy(self, t: int, j: int, sender: int, receiver: int, nbytes: float, after: Sequence[str]) -> str:
        """A hand-over from stage `sender` to stage `receiver` (drawn on the receiver, as traces do)."""
        a, b = self.plan.device_of(sender), self.plan.device_of(receiver)
        resource = self.device(a) if self.plan.one_thread else f"link{a}->{b}"
        name = f"COPY:t{t}:j{j}:k{sender}->{receiver}"
        self.schedule.tasks.append(Task(name, resource, self.plan.link.transfer_s(nbytes), tuple(after),
                                        stage=receiver, phase="COPY", batch=t, micro=j))
        return name

    def crosses(self, a: int, b: int) -> bool:
        return self.plan.device_of(a) != self.plan.device_of(b)

    def with_overhead(self, c: StageCosts, k: int, seconds: float) -> float:
        """`seconds` plus stage k's part of half the plan's overhead (its share of the forward and backward
        work), never below 0: the extra is the library's per micro-batch, spread over the devices as the
        work is, so a device pays for the stages it runs (bench/predict/overheads.py says why)."""
        if not self.plan.overhead_s:
            return seconds
        work = [c.forward[i] + c.backward[i] for i in range(c.num_stages)]
        share = work[k] / sum(work) if sum(work) > 0 else 1.0 / c.num_stages
        return max(0.0, seconds + self.plan.overhead_s / 2 * share)

    def activation(self, k: int, samples: float) -> float:
        sizes = self.plan.activation_bytes
        return sizes[k] * samples if k < len(sizes) else 0.0


SCHEDULES: dict[str, Callable[[Plan], Schedule]] = {}


def _schedule(name: str) -> Callable[[Callable[[Plan], Schedule]], Callable[[Plan], Schedule]]:
    def register(fn: Callable[[Plan], Schedule]) -> Callable[[Plan], Schedule]:
        SCHEDULES[name] = fn
        return fn
    return register


def build_schedule(name: str, plan: Plan) -> Schedule:
    """The tasks of schedule `name` for `plan`."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}: choose one of {', '.join(sorted(SCHEDULES))}")
    if plan.num_stages != plan.costs.num_stages:
        raise ValueError(f"balance {list(plan.balance)} places {plan.num_stages} stages; the costs have "
                         f"{plan.costs.num_stages}")
    return SCHEDULES[name](plan)


def _coupled_forward(b: _Builder, c: StageCosts, t: int, j: int, samples: float, after: Sequence[str]) -> str:
    """Forward of micro-batch j through every stage, handed over between devices, then the loss."""
    dep = list(after)
    for k in range(c.num_stages):
        if k > 0 and b.crosses(k - 1, k):
            dep = [b.copy(t, j, k - 1, k, b.activation(k - 1, samples), dep)]
        dep = [b.add("FW", t, j, k, b.with_overhead(c, k, c.forward[k]), after=dep)]
    return b.add("LOSS", t, j, c.num_stages - 1, sum(c.loss), after=dep)


def _coupled_backward(b: _Builder, c: StageCosts, fw: StageCosts, t: int, j: int, samples: float,
                      after: Sequence[str], recompute: bool = False) -> str:
    """Backward of micro-batch j from the last stage to the first; `recompute`: each stage re-runs its forward."""
    dep = list(after)
    for k in reversed(range(c.num_stages)):
        if k < c.num_stages - 1 and b.crosses(k, k + 1):
            dep = [b.copy(t, j, k + 1, k, b.activation(k, samples), dep)]
        if recompute:
            dep = [b.add("FW", t, j, k, fw.forward[k], after=dep, tag="recompute")]
        dep = [b.add("BW", t, j, k, b.with_overhead(c, k, c.backward[k]), after=dep)]
    return dep[0]


def _updates(b: _Builder, c: StageCosts, t: int, j: int, after: Sequence[str], chained: bool) -> list[str]:
    """Each stage's update once the batch's backward is done; `chained`: one optimizer, one stage at a time."""
    names, dep = [], list(after)
    for k in range(c.num_stages):
        name = b.add("UP", t, j, k, c.update[k], after=dep)
        names.append(name)
        if chained:
            dep = [name]
    return names


@_schedule("naive")
def naive(plan: Plan) -> Schedule:
    b = _Builder(plan)
    c = plan.costs.at(plan.batch)
    dep: list[str] = []
    for t in range(plan.batches):
        loss = _coupled_forward(b, c, t, 0, plan.batch, dep)
        last_bw = _coupled_backward(b, c, c, t, 0, plan.batch, [loss])
        dep = _updates(b, c, t, 0, [last_bw], chained=True)[-1:]
        b.schedule.completions.append(dep)
    return b.schedule


def _recomputes(checkpoint: str, j: int, m: int) -> bool:
    return checkpoint == "always" or (checkpoint == "except_last" and j < m - 1)


@_schedule("gpipe")
def gpipe(plan: Plan) -> Schedule:
    b = _Builder(plan)
    m = plan.micro_batches
    micro, full = plan.costs.at(max(1, plan.batch // m)), plan.costs.at(plan.batch)
    samples = plan.batch / m
    for t in range(plan.batches):
        losses = [_coupled_forward(b, micro, t, j, samples, ()) for j in range(m)]
        for j in range(m):
            _coupled_backward(b, micro, micro, t, j, samples, [losses[j]], _recomputes(plan.checkpoint, j, m))
        # each device updates after its own backwards (queue order); one thread: one optimizer
        b.schedule.completions.append(_updates(b, full, t, 0, (), chained=plan.one_thread))
    return b.schedule


@_schedule("1f1b")
def one_f_one_b(plan: Plan) -> Schedule:
    b = _Builder(plan)
    m, n, last = plan.micro_batches, plan.devices, plan.num_stages - 1
    micro, full = plan.costs.at(max(1, plan.batch // m)), plan.costs.at(plan.batch)
    samples = plan.batch / m
    for t in range(plan.batches):
        for d in range(n):
            warmup = min(m, n - d - 1)
            ops = [("F", j) for j in range(warmup)]
            for i in range(m - warmup):
                ops += [("F", warmup + i), ("B", i)]
            ops += [("B", j) for j in range(m - warmup, m)]
            stages = plan.stages_of(d)
            for op, j in ops:
                if op == "F":
                    for k in stages:
                        dep = [f"FW:t{t}:j{j}:k{k - 1}"] if k > 0 else []
                        if k > 0 and b.crosses(k - 1, k):
                            dep = [b.copy(t, j, k - 1, k, b.activation(k - 1, samples), dep)]
                        b.add("FW", t, j, k, b.with_overhead(micro, k, micro.forward[k]), after=dep)
                    if last in stages:
                        b.add("LOSS", t, j, last, sum(micro.loss), after=[f"FW:t{t}:j{j}:k{last}"])
                else:
                    for k in reversed(stages):
                        dep = [f"BW:t{t}:j{j}:k{k + 1}"] if k < last else [f"LOSS:t{t}:j{j}:k{last}"]
                        if k < last and b.crosses(k, k + 1):
                            dep = [b.copy(t, j, k + 1, k, b.activation(k, samples), dep)]
                        b.add("BW", t, j, k, b.with_overhead(micro, k, micro.backward[k]), after=dep)
            for k in stages:
                b.add("UP", t, 0, k, full.update[k])
        b.schedule.completions.append([f"UP:t{t}:j0:k{k}" for k in range(plan.num_stages)])
    # appended device by device: each resource still gets its tasks in its own device's op order,
    # and a link's copies in the order both its sender and its receiver issue them (micro-batch order)
    return b.schedule


def _decoupled(plan: Plan, chunks: int) -> Schedule:
    """Stage steps through bounded queues; `chunks` > 1: forwards per micro-batch (SCPL + GPipe)."""
    b = _Builder(plan)
    c = plan.costs.at(plan.batch)
    depth = plan.queue_depth * chunks  # the executor's queues hold queue_depth batches of micro-batches
    firsts: dict[tuple[int, int], str] = {}  # (micro-batch index, device) -> its first task
    for t in range(plan.batches):
        for j in range(chunks):
            i = t * chunks + j
            for d in range(plan.devices):
                stages = plan.stages_of(d)
                after = [f"COPY:t{t}:j{j}:k{stages[0] - 1}->{stages[0]}"] if d > 0 else []
                # a full queue: this device may start micro-batch i once the next one took i - 1 - depth
                room = (i - 1 - depth, d + 1)
                after_start = [firsts[room]] if d + 1 < plan.devices and room[0] >= 0 else []
                dep: list[str] = []
                for n, k in enumerate(stages):
                    first = n == 0  # the device's queue rules hold for its first stage
                    dep = [b.add("FW", t, j, k, c.forward[k] / chunks, after=after if first else (),
                                 after_start=after_start if first else ())]
                    if first:
                        firsts[(i, d)] = dep[0]
                    if j == chunks - 1:
                        dep = [b.add("LOSS", t, j, k, c.loss[k]), b.add("BW", t, j, k, c.backward[k]),
                               b.add("UP", t, j, k, c.update[k])][-1:]
                if d + 1 < plan.devices:
                    b.copy(t, j, stages[-1], stages[-1] + 1, b.activation(stages[-1], plan.batch / chunks), dep)
        b.schedule.completions.append([f"UP:t{t}:j{chunks - 1}:k{plan.num_stages - 1}"])
    return b.schedule


@_schedule("decoupled")
def decoupled(plan: Plan) -> Schedule:
    return _decoupled(plan, 1)


@_schedule("decoupled_microbatch")
def decoupled_microbatch(plan: Plan) -> Schedule:
    return _decoupled(plan, plan.micro_batches)


def _buckets(parameter_bytes: Sequence[float], cap: float) -> list[tuple[int, float]]:
    """(stage whose backward completes the bucket, bytes), in the order the backward fills them."""
    out: list[tuple[int, float]] = []
    pending = 0.0
    for k in reversed(range(len(parameter_bytes))):
        pending += parameter_bytes[k]
        if pending >= cap or k == 0:
            full = max(1, math.ceil(pending / cap))
            out += [(k, pending / full)] * full
            pending = 0.0
    return [bucket for bucket in out if bucket[1] > 0]


@_schedule("data_parallel")
def data_parallel(plan: Plan) -> Schedule:
    """DDP on `plan.replicas` devices; lanes are the replicas (each drawn as one row)."""
    n = plan.replicas
    b = _Builder(plan)
    b.schedule.lanes = list(range(n))
    c = plan.costs.at(max(1, plan.batch // n))
    stages = range(c.num_stages)
    buckets = _buckets(plan.parameter_bytes or (0.0,) * c.num_stages, plan.bucket_bytes)
    for t in range(plan.batches):
        for d in range(n):
            for k in stages:
                b.add("FW", t, d, k, b.with_overhead(c, k, c.forward[k]), device=d)
            b.add("LOSS", t, d, c.num_stages - 1, sum(c.loss), device=d)
            for k in reversed(stages):
                b.add("BW", t, d, k, b.with_overhead(c, k, c.backward[k]), device=d)
        reduced: list[str] = []
        if n > 1:
            for i, (k, nbytes) in enumerate(buckets):
                name = f"ALLREDUCE:t{t}:b{i}"
                b.schedule.tasks.append(Task(name, "ring", plan.link.all_reduce_s(nbytes, n),
                                             tuple(f"BW:t{t}:j{d}:k{k}" for d in range(n)), phase="COPY", batch=t))
                reduced = [name]
        ups = [b.add("UP", t, d, 0, sum(c.update), device=d, after=reduced) for d in range(n)]
        b.schedule.completions.append(ups)
    # a replica's tasks carry stage k for their costs; on its timeline row they are the device's
    b.schedule.tasks = [_on_lane(task) for task in b.schedule.tasks]
    return b.schedule


def _on_lane(task: Task) -> Task:
    if not task.resource.startswith("device"):
        return task
    return Task(task.name, task.resource, task.duration, task.after, task.after_start,
                stage=int(task.resource[len("device"):]), phase=task.phase, batch=task.batch, micro=task.micro)
