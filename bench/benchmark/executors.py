"""Decoupled stages in processes vs in threads: the cost of the process executor, as a ratio.

SCPL on 2 CPU devices (one core each), the same cell run with `executor:
threads` (bench/execution/pipeline.py) and `executor: processes`
(bench/execution/distributed_pipeline.py).  ratio = threads' median step /
processes' median step; target >= 0.95 (the hand-over through gloo costs at
most 5 %).

Two ways to measure:
- `CONFIGS` + `executor_ratios(samples)`: cells for `make bench`'s interleaved
  rounds (bench/benchmark/ratios.py), once a cell's `executor` setting is
  wired to the executor choice;
- `python -m bench.benchmark.executors`: both executors driven from this
  process on the same prepared batches, interleaved rounds, no cell
  machinery; works before the wiring (ConvNet, batch 32 by default: quick).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys

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


def measure_direct(model: str = "convnet", dataset: str = "cifar10@synthetic", batch: int = 32,
                   warmup: int = 2, steps: int = 6, rounds: int = 3, queue_depth: int = 2) -> dict:
    """Median step of SCPL on 2 CPU devices under each executor, interleaved rounds, same batches."""
    import torch

    from bench.execution import resolve_devices, run_pipelined, stage_devices
    from bench.execution.distributed_pipeline import run_distributed_pipeline
    from data import get_spec, load_dataset
    from data.prepared import prepare_batches
    from methods import MethodConfig, create_method
    from models.build import build_model

    spec = get_spec(dataset)
    train = load_dataset(dataset, split="train", seed=0, val_fraction=0.0)
    batches = prepare_batches(train, batch, warmup + steps, 0, 1, spec.modality, spec)
    torch.manual_seed(0)
    base = create_method("scpl", build_model(model, spec), MethodConfig())
    devices = resolve_devices(2, "cpu", threads_per_device=1)
    stages = len(base.stage_steps())
    balance = [stages // 2, stages - stages // 2]
    times: dict[str, list[float]] = {"threads": [], "processes": []}
    for r in range(rounds):
        for name in times:
            method = copy.deepcopy(base)
            method.place(stage_devices(balance, devices.devices))
            if name == "threads":
                record = run_pipelined(method.stage_steps(), balance, devices, batches, warmup, queue_depth)
            else:
                record = run_distributed_pipeline(method, balance, devices, batches, warmup, queue_depth)
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
