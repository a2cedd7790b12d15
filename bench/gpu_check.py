"""`make gpu-check`: the CUDA path of every executor, run briefly and checked, on whatever GPUs exist.

Why a separate check: the unit tests run on CPU only, so nothing else proves
that the CUDA lines (NCCL process groups, per-rank `set_device`, pinned
batches, CUDA traces, per-device peak memory) work.  This builds small cells
in code (ConvNet on the CIFAR-10 twin), runs each in its own process as a grid
would, and asserts on the rows and traces:

- every row is `ok` with a positive step time, `device_kind == "cuda"`;
- per-device peak memory is filled: one positive `cuda_max_allocated` value per device;
- the trace holds CUDA kernels that ran inside the phase labels (`stage{k}/...`,
  `Forward i` ...) on every GPU the cell used;
- multi-process cells on 2+ GPUs ran NCCL kernels (their trace names `nccl`);
- pipelines on 2+ GPUs choose their split by timing their stages on the GPU (`balance: auto`)
  and count a step's training memory; one-epoch training runs of SCPL with processes,
  `gpipe_dist` and DDP (pinned batches read ahead in the ranks, evaluation, a checkpoint);
- the three distributed methods (DDP, gpipe_dist, SCPL with `executor: processes`) also run
  as a cluster job starts them: torchrun on this node, `python -m bench.run.rank_cell`, NCCL,
  rank 0 storing the row (with one GPU only DDP, as one rank: NCCL refuses two ranks on one GPU);
- runs that must train alike end at the same final loss (to float tolerance): SCPL with
  `executor: processes` as with threads, each torchrun row as the same cell run by its cell process;
and, in this process: a batch prepared by DataLoader workers is pinned, and every rank
of a process group gets the NCCL backend on its own GPU.

Prints one table (method, devices, status, step ms, peak MB per device,
kernels in trace) and exits 1 if any check failed.  Without CUDA it prints
"no CUDA device: nothing to check" and exits 0, so CI may call it anywhere.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # imported inside the functions that run: `make gpu-check` without CUDA stays light
    from bench.grid import Cell
    from bench.store.row import ResultRow

__all__ = ["main", "plan_cells", "plan_torchrun_cells", "CheckedCell", "NO_CUDA_MESSAGE", "trace_kernels"]

NO_CUDA_MESSAGE = "no CUDA device: nothing to check"
MODEL, DATASET, BATCH = "convnet", "cifar10@synthetic", 32
MAX_STAGES = 4  # ConvNet's stages: the most devices a staged cell can use


@dataclass
class CheckedCell:
    label: str
    cell: Cell
    needs_nccl: bool = False  # a multi-process cell on 2+ GPUs
    torchrun: bool = False  # started by torchrun (bench.run.rank_cell), not started by the cell process
    problems: list[str] = field(default_factory=list)
    row: Optional[ResultRow] = None
    kernels: int = 0
    labelled_kernels: int = 0


def _settings(**changes):
    from bench.grid import CellSettings

    values: dict[str, Any] = dict(warmup_steps=2, steps=4, eval_batches=1, eval_batch_size=64, device_kind="cuda",
                  threads_per_device=1, timeout_s=600.0, balance="even", count_train_memory=False,
                  profile={"wait": 0, "warmup": 1, "active": 2})
    values.update(changes)
    return CellSettings(**values)


def _cell(method: str, devices: int, batch: int = BATCH, **settings):
    from bench.grid import Cell

    return Cell("gpu-check", method, MODEL, DATASET, batch, devices, 0, _settings(**settings))


# Pipelines on 2+ GPUs also choose their split by timing the stages on their first GPU and count one
# step's training memory: both run a copy of the whole network on one device, which a pipeline rank
# (its other stages left on the CPU) must arrange
PIPELINE: dict[str, Any] = dict(balance="auto", count_train_memory=True)
# A short training run: epochs of pinned batches read ahead in the ranks, evaluation and a checkpoint
TRAINING_RUN: dict[str, Any] = dict(epochs=1, max_train_items=320, max_test_items=128, val_fraction=0.0, profile=None)


def plan_cells(gpus: int) -> list[CheckedCell]:
    """The cells to run on a machine with `gpus` GPUs (at least 1)."""
    staged = min(gpus, MAX_STAGES)  # a staged network cannot use more devices than it has stages
    plan = [CheckedCell("bp", _cell("bp", 1)), CheckedCell("scpl", _cell("scpl", 1))]
    if staged >= 2:
        plan += [
            CheckedCell("bp (naive model parallel)", _cell("bp", staged)),
            CheckedCell("scpl threads", _cell("scpl", staged, executor="threads", **PIPELINE)),
            CheckedCell("scpl processes", _cell("scpl", staged, executor="processes", **PIPELINE), needs_nccl=True),
            CheckedCell("gpipe", _cell("gpipe", staged, method_options={"chunks": 4}, **PIPELINE)),
            CheckedCell("gpipe_dist", _cell("gpipe_dist", staged, method_options={"chunks": 4}, **PIPELINE),
                        needs_nccl=True),
            CheckedCell("scpl processes, 1 epoch", _cell("scpl", staged, executor="processes", **TRAINING_RUN)),
            CheckedCell("gpipe_dist, 1 epoch", _cell("gpipe_dist", staged, method_options={"chunks": 4},
                                                      **TRAINING_RUN)),
        ]
    for count in range(1, gpus + 1):
        batch = count * math.ceil(BATCH / count)  # DDP splits the batch evenly over its ranks
        plan.append(CheckedCell("ddp", _cell("ddp", count, batch=batch), needs_nccl=count > 1))
    plan.append(CheckedCell("ddp, 1 epoch", _cell("ddp", gpus, batch=gpus * math.ceil(BATCH / gpus), **TRAINING_RUN)))
    return plan


def plan_torchrun_cells(gpus: int) -> list[CheckedCell]:
    """The distributed methods started by torchrun on this node, the entry a Slurm job's node runs.

    One GPU: DDP with one rank only. NCCL refuses a communicator with two ranks on one GPU
    ("Duplicate GPU detected"), and a pipeline of one rank is no pipeline (decoupled stages on
    one device run sequentially, not as ranks).
    """
    if gpus < 2:
        return [CheckedCell("ddp (torchrun)", _cell("ddp", 1), torchrun=True)]
    staged = min(gpus, MAX_STAGES)
    return [
        CheckedCell(label, cell, needs_nccl=True, torchrun=True) for label, cell in (
            ("ddp (torchrun)", _cell("ddp", gpus, batch=gpus * math.ceil(BATCH / gpus))),
            ("gpipe_dist (torchrun)", _cell("gpipe_dist", staged, method_options={"chunks": 4}, **PIPELINE)),
            ("scpl processes (torchrun)", _cell("scpl", staged, executor="processes", **PIPELINE)))
    ]


def run_under_torchrun(item: CheckedCell, results_dir: Path, workdir: Path) -> ResultRow:
    """`item`'s cell as one node of a cluster job runs it: torchrun, c10d rendezvous here, rank 0 stores the row.

    `results_dir` is its own: the same cell run by the cell process writes the same trace folder.
    """
    from bench.execution.ranks import free_port
    from bench.run.cell_grid import write_cell_grid
    from bench.run.multinode import run_torchrun, torchrun_command

    cell = item.cell
    grid_file = write_cell_grid(cell, workdir / "cells")
    command = torchrun_command(1, cell.devices, f"127.0.0.1:{free_port()}", f"gpu-check-{cell.cell_id}", grid_file,
                               cell.cell_id, results_dir)
    row = run_torchrun(command, cell, results_dir)
    assert row is not None  # the only node reports
    return row


def trace_kernels(trace_dir: Path) -> tuple[int, int, set, bool]:
    """(kernels, kernels inside a phase label, GPUs with such kernels, any NCCL kernel) over a cell's traces.

    On CUDA a kernel event has pid = the GPU; the labels' GPU-side copies
    (`gpu_user_annotation`) sit on the same pid, so a kernel is "under a label"
    when it starts inside one of them on its GPU.
    """
    from bench.profiling.trace_events import find_trace_files, parse_label

    kernels = labelled = 0
    gpus_with_labelled: set = set()
    nccl = False
    for path in find_trace_files(trace_dir):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            events = [e for e in json.load(f).get("traceEvents", []) if e.get("ph") == "X"]
        labels: dict = {}
        for e in events:
            if e.get("cat") == "gpu_user_annotation" and parse_label(e.get("name", ""), 0) is not None:
                labels.setdefault(e.get("pid"), []).append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))))
        for e in events:
            if e.get("cat") != "kernel":
                continue
            kernels += 1
            nccl = nccl or "nccl" in e.get("name", "").lower()
            ts = float(e["ts"])
            if any(a <= ts <= b for a, b in labels.get(e.get("pid"), ())):
                labelled += 1
                gpus_with_labelled.add(e.get("pid"))
    return kernels, labelled, gpus_with_labelled, nccl


def check_row(item: CheckedCell, results_dir: Path) -> None:
    row, devices = item.row, item.cell.devices
    assert row is not None  # checked only after the cell ran
    if row.status != "ok":
        last_line = (row.error or "").strip().splitlines()[-1:] or [""]
        item.problems.append(f"status {row.status}: {last_line[0]}")
        return
    if row.device_kind != "cuda":
        item.problems.append(f"ran on {row.device_kind}, not cuda")
    if not row.step_time_median_s or row.step_time_median_s <= 0:
        item.problems.append("no step time")
    peaks = list(row.peak_mem_per_device or [])
    if row.peak_mem_kind != "cuda_max_allocated" or len(peaks) != devices or not all(p and p > 0 for p in peaks):
        item.problems.append(f"peak memory per device not filled: {row.peak_mem_kind} {peaks}")
    if item.cell.settings.profile is None:
        return  # a training run: its trace is not what it checks
    if not row.trace_dir:
        item.problems.append("no trace")
        return
    trace_dir = Path(row.trace_dir)
    trace_dir = trace_dir if trace_dir.is_absolute() else results_dir / trace_dir
    try:
        item.kernels, item.labelled_kernels, gpus, nccl = trace_kernels(trace_dir)
    except (OSError, ValueError) as exc:
        item.problems.append(f"trace unreadable: {exc}")
        return
    if item.labelled_kernels == 0:
        item.problems.append(f"no CUDA kernel under a phase label ({item.kernels} kernels in the trace)")
    elif len(gpus) < devices:
        item.problems.append(f"labelled kernels on {len(gpus)} of {devices} GPUs")
    if item.needs_nccl and not nccl:
        item.problems.append("no NCCL kernel in the trace")


# -- checks in this process ----------------------------------------------------------------------

def _nccl_rank(rank, world, device):
    import torch
    import torch.distributed as dist

    value = torch.ones(1, device=device) * (rank + 1)
    dist.all_reduce(value)
    return {"backend": dist.get_backend(), "device": str(device), "current": torch.cuda.current_device(),
            "sum": float(value)}


def check_nccl(gpus: int) -> list[str]:
    """Every rank of `run_ranks` on CUDA: NCCL backend, its own GPU as the current device, a working all-reduce."""
    from bench.execution import resolve_devices
    from bench.execution.ranks import run_ranks

    problems = []
    results = run_ranks(_nccl_rank, resolve_devices(gpus, "cuda", 1), timeout_s=300)
    for rank, r in enumerate(results):
        if r["backend"] != "nccl":
            problems.append(f"rank {rank}: backend {r['backend']}, not nccl")
        if r["current"] != rank or r["device"] != f"cuda:{rank}":
            problems.append(f"rank {rank}: device {r['device']}, current device {r['current']}")
        if r["sum"] != gpus * (gpus + 1) / 2:
            problems.append(f"rank {rank}: all_reduce gave {r['sum']}")
    return problems


def check_pinned() -> list[str]:
    """Batches prepared by DataLoader workers are pinned when CUDA exists (asynchronous host-to-GPU copies)."""
    from data import get_spec, load_dataset
    from data.prepared import prepare_batches

    spec = get_spec(DATASET)
    train = load_dataset(DATASET, split="train", seed=0, val_fraction=0.0)
    x, y = prepare_batches(train, BATCH, 1, 0, 1, spec.modality, spec, workers=1)[0]
    return [] if x.is_pinned() and y.is_pinned() else ["batches prepared with data_workers > 0 are not pinned"]


LOSS_TOLERANCE = 1e-3  # relative: CUDA kernels are not bit-reproducible across processes and devices


def check_same_training(plan: list[CheckedCell]) -> list[str]:
    """Runs that must train alike on CUDA end at the same final loss (within `LOSS_TOLERANCE`).

    SCPL with `executor: processes` against SCPL with threads on the same GPUs (one stage loop,
    two hand-overs), and each cell under torchrun against the same cell whose ranks its cell
    process starts (one rank program, two launchers). On CPU both pairs are equal bit for bit
    (tests/test_process_stage_groups.py, tests/test_two_nodes.py).
    """
    def loss(item: CheckedCell) -> Optional[float]:
        return item.row.final_train_loss if item.row is not None and item.row.status == "ok" else None

    local = {item.cell.cell_id: item for item in plan if not item.torchrun}
    pairs = [(local[i.cell.cell_id], i) for i in plan if i.torchrun and i.cell.cell_id in local]
    threads = next((i for i in plan if i.label == "scpl threads"), None)
    if threads is not None:
        same = threads.cell.settings.replace(executor="processes")  # the same cell but for its hand-over
        pairs += [(threads, i) for i in plan if i.cell.method == "scpl" and i.cell.settings == same
                  and i.cell.devices == threads.cell.devices]
    problems = []
    for a, b in pairs:
        la, lb = loss(a), loss(b)
        if la is None or lb is None:
            continue  # a failed row is reported with its cell
        if not math.isclose(la, lb, rel_tol=LOSS_TOLERANCE):
            problems.append(f"{b.label} on {b.cell.devices} GPUs ends at loss {lb:.6g}, {a.label} at {la:.6g}")
    return problems


# -- the table -----------------------------------------------------------------------------------

def _table(plan: list[CheckedCell]) -> str:
    lines = [f"{'method':<28} {'devices':>7} {'status':<8} {'step ms':>8} {'peak MB per device':<26} {'kernels':>14}"]
    for item in plan:
        row = item.row
        status = "ok" if row is not None and row.status == "ok" and not item.problems else \
            (row.status if row is not None and row.status != "ok" else "FAILED")
        step = f"{row.step_time_median_s * 1000:.1f}" if row is not None and row.step_time_median_s else "-"
        peaks = " ".join(f"{p / 2**20:.0f}" for p in (row.peak_mem_per_device or [])) if row is not None else "-"
        kernels = f"{item.labelled_kernels}/{item.kernels}"
        lines.append(f"{item.label:<28} {item.cell.devices:>7} {status:<8} {step:>8} {peaks or '-':<26} {kernels:>14}")
    lines.append("kernels = under a phase label / all in the trace")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="keep rows and traces in this folder")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE)
        return 0
    from bench.run.runner import run_cell_subprocess

    gpus = torch.cuda.device_count()
    print(f"{gpus} GPU(s): " + ", ".join(torch.cuda.get_device_name(i) for i in range(gpus)), flush=True)
    plan = plan_cells(gpus) + plan_torchrun_cells(gpus)
    other: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        results_dir = args.keep or Path(tmp) / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        for item in plan:
            print(f"running {item.label} on {item.cell.devices} GPU(s) ...", flush=True)
            where = results_dir / "torchrun" if item.torchrun else results_dir
            try:
                if item.torchrun:
                    item.row = run_under_torchrun(item, where, Path(tmp))
                else:
                    item.row = run_cell_subprocess(item.cell, None, Path(tmp), where)
            except Exception as exc:  # noqa: BLE001 - a cell that cannot even start is a finding too
                item.problems.append(f"did not run: {type(exc).__name__}: {exc}")
                continue
            check_row(item, where)
        for name, check in (("pinned batches", check_pinned), ("nccl process group", lambda: check_nccl(gpus)),
                            ("same training", lambda: check_same_training(plan))):
            print(f"checking {name} ...", flush=True)
            try:
                other += [f"{name}: {p}" for p in check()]
            except Exception as exc:  # noqa: BLE001 - a failed check is a finding, the others still run
                other.append(f"{name}: {type(exc).__name__}: {exc}")
    print(_table(plan))
    problems = [f"{item.label} on {item.cell.devices} GPU(s): {p}" for item in plan for p in item.problems] + other
    for line in problems:
        print("FAIL", line)
    print("gpu-check: all checks passed" if not problems else f"gpu-check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
