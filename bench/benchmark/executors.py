"""Decoupled stages in processes vs in threads: the cost of the process executor, as a ratio.

SCPL on 2 CPU devices (one core each), the same cell run with `executor:
threads` (bench/execution/pipeline.py) and `executor: processes` (one rank per
device for the whole cell, bench/execution/rank_loops.py).  ratio = threads' median step /
processes' median step; target >= 0.95 (the hand-over through gloo costs at
most 5 %).

Two ways to measure:
- `CONFIGS` + `executor_ratios(samples)`: cells for `make bench`'s interleaved
  rounds (bench/benchmark/ratios.py);
- `python -m bench.benchmark.executors`: both executors on the same prepared
  batches, interleaved rounds, no cell machinery (ConvNet, batch 32 by default:
  quick): the threads in this process, the processes as ranks that each build
  the method and run their stage group's loop (`_ranks_job`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Optional

__all__ = ["CONFIGS", "executor_ratios", "measure_direct", "TARGET"]

TARGET = 0.95


def _cell(executor: str, model: str = "vgg8", dataset: str = "cifar10@synthetic", batch: int = 128):
    from bench.grid import Cell, CellSettings

    settings = CellSettings(warmup_steps=2, steps=6, eval_batches=1, eval_batch_size=64, timeout_s=900,
                            threads_per_device=1, device_kind="cpu", executor=executor)
    return Cell("bench", "scpl", model, dataset, batch, 2, 0, settings)


CONFIGS = {"vgg_scpl_2dev_threads": _cell("threads"), "vgg_scpl_2dev_processes": _cell("processes")}


def executor_ratios(samples: dict) -> list[dict]:
    """The processes-vs-threads entry of bench.json from rows of `CONFIGS` (name -> rows over rounds)."""
    threads = statistics.median(r.step_time_median_s for r in samples["vgg_scpl_2dev_threads"])
    processes = statistics.median(r.step_time_median_s for r in samples["vgg_scpl_2dev_processes"])
    return [{
        "name": "vgg_scpl_2dev_processes_vs_threads", "ratio": threads / processes, "target": TARGET,
        "detail": f"SCPL VGG8 b128, 2 CPU devices: threads {threads * 1000:.0f} ms/step, "
                  f"processes (gloo send/recv) {processes * 1000:.0f} ms/step",
    }]


def _median_step(record) -> float:
    from bench.cell.timing import step_stats

    return step_stats(record).median_s


def _method(model: str, dataset: str):
    import torch

    from data import get_spec
    from methods import MethodConfig, create_method
    from models.build import build_model

    torch.manual_seed(0)
    return create_method("scpl", build_model(model, get_spec(dataset)), MethodConfig())


def _batches(dataset: str, batch: int, count: int) -> list:
    from data import get_spec, load_dataset
    from data.prepared import prepare_batches

    spec = get_spec(dataset)
    train = load_dataset(dataset, split="train", seed=0, val_fraction=0.0)
    return prepare_batches(train, batch, count, 0, 1, spec.modality, spec)


def _ranks_job(rank: int, world: int, device, model: str, dataset: str, batch: int, warmup: int, steps: int,
               balance: list, queue_depth: int):
    """One rank of the process executor: its stage group trained on rank 0's batches; rank 0's record."""
    import torch.distributed as dist

    from bench.cell.timing import time_after_warmup, warmup_split
    from bench.execution.rank_context import pipeline_context
    from bench.execution.rank_loops import StageGroupLoop

    loop = StageGroupLoop(_method(model, dataset), pipeline_context(rank, world, device, balance), queue_depth)
    batches = _batches(dataset, batch, warmup + steps) if rank == 0 else None
    summary = time_after_warmup(loop.run, batches, warmup, steps)  # as a cell times
    gathered: Optional[list] = [None] * world if rank == 0 else None
    dist.gather_object(summary, gathered, dst=0)
    return loop.record(gathered, warmup_split(warmup).fill) if gathered is not None else None


def measure_direct(model: str = "convnet", dataset: str = "cifar10@synthetic", batch: int = 32,
                   warmup: int = 2, steps: int = 6, rounds: int = 3, queue_depth: int = 2) -> dict:
    """Median step of SCPL on 2 CPU devices under each executor, interleaved rounds, same batches."""
    from bench.cell.timing import time_after_warmup
    from bench.execution import resolve_devices, run_pipelined, stage_devices
    from bench.execution.ranks import run_ranks

    batches = _batches(dataset, batch, warmup + steps)
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    stages = len(_method(model, dataset).stage_steps())
    balance = [stages // 2, stages - stages // 2]
    times: dict[str, list[float]] = {"threads": [], "processes": []}
    for r in range(rounds):
        for name in times:
            if name == "threads":
                method = _method(model, dataset)
                method.place(stage_devices(balance, devices.devices))
                record = time_after_warmup(
                    lambda b, _count, w: run_pipelined(method.stage_steps(), balance, devices, b, w, queue_depth),
                    batches, warmup, steps)
            else:
                record = run_ranks(_ranks_job, devices, (model, dataset, batch, warmup, steps, balance,
                                                         queue_depth))[0]
            times[name].append(_median_step(record))
            print(f"round {r + 1}/{rounds} {name}: {times[name][-1] * 1000:.1f} ms/step", flush=True)
    threads, processes = statistics.median(times["threads"]), statistics.median(times["processes"])
    return {"threads_s": threads, "processes_s": processes, "ratio": threads / processes, "balance": balance}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark.executors", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--dataset", default="cifar10@synthetic")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args(argv)
    out = measure_direct(a.model, a.dataset, a.batch, steps=a.steps, rounds=a.rounds)
    print(f"SCPL {a.model} {a.dataset} b{a.batch}, 2 CPU devices, balance {out['balance']}: threads "
          f"{out['threads_s'] * 1000:.1f} ms/step, processes {out['processes_s'] * 1000:.1f} ms/step, "
          f"ratio {out['ratio']:.3f} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
