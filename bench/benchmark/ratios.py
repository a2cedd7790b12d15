"""`make bench`: speed targets measured as ratios in one run, never in unit tests.

Interleaved rounds: every configuration runs once per round in a fresh process
(thread budget set before torch is imported), rounds repeat, and each ratio is
taken between medians.  Pipelined configurations also report their *ideal*
speedup from measured per-device busy times (all stage work / the busiest
device's work) and *efficiency* = measured speedup / ideal.

Writes results/bench/bench.json: [{"name", "ratio", "target", "detail"}, ...]
and prints the same as a table.  Always exits 0: a missed target is a finding.

`python -m bench.benchmark --only NAME [NAME ...]` runs only those groups of
entries (`GROUPS`; an unknown name: exit 2 listing them) and merges what they
measure into bench.json, replacing entries of the same name and keeping the rest.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from bench import REPO_ROOT
from bench.benchmark.distributed import STEP_RATE_METHODS, cell_rss_entry, step_rate_entry
from bench.benchmark.dry_run_speed import dry_run_entry
from bench.benchmark.executors import CONFIGS as EXECUTOR_CONFIGS
from bench.benchmark.executors import executor_ratios
from bench.benchmark.predict_accuracy import predict_entry
from bench.benchmark.predict_speed import predict_speed_entry
from bench.benchmark.training import training_entries
from bench.execution.threads import available_cores, thread_env
from bench.grid import Cell, CellSettings
from bench.run.runner import run_cell_subprocess

__all__ = ["main", "CONFIGS", "GROUPS"]

ROUNDS = int(os.environ.get("SCPLBENCH_BENCH_ROUNDS", "3"))
# count_train_memory off: the count is one more step on a copy, time no ratio here reads
SETTINGS = CellSettings(warmup_steps=2, steps=6, eval_batches=1, eval_batch_size=64, timeout_s=900,
                        count_train_memory=False)
# The LSTM at batch 32 on texts cut to 128 tokens: at batch 128 over the IMDB twin's ~348 tokens one
# BP step takes 161 s on one core (40 s at batch 32), more than a cell's 900 s over 8 steps
LSTM_TEXT = dict(max_len=128)


def _cell(method: str, model: str, dataset: str, batch: int, devices: int, threads: int, settings: dict | None = None,
          **options) -> Cell:
    cell_settings = SETTINGS.replace(threads_per_device=threads, device_kind="cpu", method_options=options,
                                     **(settings or {}))
    return Cell("bench", method, model, dataset, batch, devices, 0, cell_settings)


# name -> cell; thread counts are explicit so the comparison is resource-matched
CONFIGS = {
    "vgg_bp_1dev": _cell("bp", "vgg8", "cifar10@synthetic", 128, 1, 1),
    "vgg_bp_1dev_2threads": _cell("bp", "vgg8", "cifar10@synthetic", 128, 1, 2),
    "vgg_scpl_1dev": _cell("scpl", "vgg8", "cifar10@synthetic", 128, 1, 1),
    "vgg_scpl_2dev": _cell("scpl", "vgg8", "cifar10@synthetic", 128, 2, 1),
    "lstm_bp_1dev": _cell("bp", "lstm", "imdb@synthetic", 32, 1, 1, LSTM_TEXT),
    "lstm_scpl_2dev": _cell("scpl", "lstm", "imdb@synthetic", 32, 2, 1, LSTM_TEXT),
    # GPipe (torch.distributed.pipelining, one process per device), SCPL + GPipe and DDP beside them
    "vgg_gpipe_dist_2dev_c4": _cell("gpipe_dist", "vgg8", "cifar10@synthetic", 128, 2, 1, chunks=4),
    "vgg_gpipe_dist_2dev_c8": _cell("gpipe_dist", "vgg8", "cifar10@synthetic", 128, 2, 1, chunks=8),
    "vgg_scpl_gpipe_2dev_c4": _cell("scpl_gpipe", "vgg8", "cifar10@synthetic", 128, 2, 1, chunks=4),
    "vgg_ddp_2dev": _cell("ddp", "vgg8", "cifar10@synthetic", 128, 2, 1),
}
CONFIGS.update(EXECUTOR_CONFIGS)  # SCPL on 2 devices, threads vs processes (bench/benchmark/executors.py)
BARE = ("vgg8", "cifar10@synthetic", 128)


def _bare_loop() -> float:
    model, dataset, batch = BARE
    env = thread_env(1, dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    cmd = [sys.executable, "-m", "bench.benchmark.bare_loop", model, dataset, str(batch),
           str(SETTINGS.warmup_steps), str(SETTINGS.steps), "0"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["step_time_median_s"]


def _pipeline_ideal(row) -> float:
    """All stage work / the busiest device's work, from the pipelined run's own busy times."""
    busy = row.device_busy_s
    return sum(busy) / max(busy)


def measure(rounds: int = ROUNDS, configs: dict = CONFIGS, bare: bool = True) -> dict:
    samples: dict[str, list] = {name: [] for name in configs}
    samples["bare_scpl_1dev"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, cell in configs.items():
                row = run_cell_subprocess(cell, None, Path(tmp))
                if row.status != "ok":
                    raise RuntimeError(f"{name} failed: {row.error}")
                samples[name].append(row)
                print(f"round {r + 1}/{rounds} {name}: {(row.step_time_median_s or 0) * 1000:.0f} ms/step", flush=True)
            if bare:
                samples["bare_scpl_1dev"].append(_bare_loop())
    return samples


def _median_step(rows) -> float:
    return statistics.median(r.step_time_median_s for r in rows)


def ratios(samples: dict) -> list[dict]:
    out = []
    t = {name: _median_step(rows) for name, rows in samples.items() if name != "bare_scpl_1dev"}
    for prefix, label in (("vgg", "VGG8 cifar10@synthetic b128"), ("lstm", "LSTM imdb@synthetic b32, 128 tokens")):
        speedup = t[f"{prefix}_bp_1dev"] / t[f"{prefix}_scpl_2dev"]
        rows = samples[f"{prefix}_scpl_2dev"]
        ideal = statistics.median(_pipeline_ideal(r) for r in rows)
        balance = rows[0].balance
        out.append({
            "name": f"{prefix}_scpl_2dev_vs_bp_1dev_efficiency", "ratio": speedup / ideal, "target": 0.95,
            "detail": f"{label}: speedup {speedup:.2f}x over BP on 1 device, ideal {ideal:.2f}x from per-device busy "
                      f"times (balance {balance}, stage costs {[round(c, 3) for c in rows[0].stage_costs_s]} s)",
        })
        out.append({
            "name": f"{prefix}_scpl_2dev_vs_bp_1dev_speedup", "ratio": speedup, "target": None,
            "detail": f"{label}: BP {t[f'{prefix}_bp_1dev'] * 1000:.0f} ms/step, SCPL 2 devices "
                      f"{t[f'{prefix}_scpl_2dev'] * 1000:.0f} ms/step",
        })
    out.append({
        "name": "vgg_scpl_2dev_vs_bp_2threads", "ratio": t["vgg_bp_1dev_2threads"] / t["vgg_scpl_2dev"], "target": None,
        "detail": "BP using the same 2 cores intra-op vs SCPL on 2 CPU devices (1 thread each)",
    })
    out.append({
        "name": "vgg_scpl_1dev_vs_bp_1dev", "ratio": t["vgg_bp_1dev"] / t["vgg_scpl_1dev"], "target": 0.92,
        "detail": f"BP {t['vgg_bp_1dev'] * 1000:.0f} ms/step vs SCPL (projector m) {t['vgg_scpl_1dev'] * 1000:.0f} ms/step, 1 thread",
    })
    out += gpipe_ratios(samples, t)
    out += executor_ratios(samples)
    bare = statistics.median(samples["bare_scpl_1dev"])
    out.append({
        "name": "harness_overhead_scpl_1dev", "ratio": bare / t["vgg_scpl_1dev"], "target": 0.98,
        "detail": f"bare loop {bare * 1000:.1f} ms/step vs harness {t['vgg_scpl_1dev'] * 1000:.1f} ms/step "
                  "(ratio >= 0.98 means overhead <= 2 %)",
    })
    return out


def gpipe_ideal(stage_costs: list[float], balance: list[int], chunks: int) -> float:
    """Balance-ideal speedup x the GPipe bubble factor m / (m + N - 1).

    The balance ideal is all stage work over the busiest device's work, from the
    per-stage costs measured to choose the balance (forward + backward).
    """
    per_device, first = [], 0
    for count in balance:
        per_device.append(sum(stage_costs[first:first + count]))
        first += count
    devices = len(balance)
    return sum(stage_costs) / max(per_device) * chunks / (chunks + devices - 1)


def gpipe_ratios(samples: dict, t: dict) -> list[dict]:
    """GPipe (distributed backend) vs BP on 1 device, with ideal and efficiency; SCPL + GPipe and DDP beside."""
    out = []
    bp = t["vgg_bp_1dev"]
    for chunks in (4, 8):
        name = f"vgg_gpipe_dist_2dev_c{chunks}"
        row = samples[name][0]
        speedup = bp / t[name]
        ideal = statistics.median(gpipe_ideal(r.stage_costs_s, r.balance, chunks) for r in samples[name])
        out.append({
            "name": f"{name}_vs_bp_1dev_efficiency", "ratio": speedup / ideal, "target": 0.9,
            "detail": f"VGG8 b128, 2 processes x 1 thread (gloo), {chunks} micro-batches: speedup {speedup:.2f}x over "
                      f"BP on 1 device ({bp * 1000:.0f} vs {t[name] * 1000:.0f} ms/step), ideal {ideal:.2f}x = "
                      f"balance ideal x m/(m+N-1) (balance {row.balance}, stage costs "
                      f"{[round(c, 3) for c in row.stage_costs_s]} s)",
        })
    rows = samples["vgg_scpl_gpipe_2dev_c4"]
    speedup = bp / t["vgg_scpl_gpipe_2dev_c4"]
    ideal = statistics.median(_pipeline_ideal(r) for r in rows)
    out.append({
        "name": "vgg_scpl_gpipe_2dev_c4_vs_bp_1dev_speedup", "ratio": speedup, "target": None,
        "detail": f"SCPL + GPipe, 4 micro-batches, 2 devices: {t['vgg_scpl_gpipe_2dev_c4'] * 1000:.0f} ms/step; "
                  f"plain SCPL 2 devices {t['vgg_scpl_2dev'] * 1000:.0f} ms/step; ideal {ideal:.2f}x, "
                  f"efficiency {speedup / ideal:.2f}",
    })
    out.append({
        "name": "vgg_ddp_2dev_vs_bp_1dev_speedup", "ratio": bp / t["vgg_ddp_2dev"], "target": None,
        "detail": f"data parallelism, 2 processes x 1 thread, same global batch: {t['vgg_ddp_2dev'] * 1000:.0f} ms/step",
    })
    return out


def machine_facts() -> str:
    import torch

    return (f"{platform.machine()} {available_cores()} cores, torch {torch.__version__}, "
            f"python {platform.python_version()}, {ROUNDS} interleaved rounds, medians")


def _executors() -> list[dict]:
    """SCPL on 2 devices, processes vs threads, alone (the same cells as in the full rounds)."""
    return executor_ratios(measure(configs=EXECUTOR_CONFIGS, bare=False))


def _one(entry: Callable[..., dict], *args) -> list[dict]:
    return [entry(*args)]


# name -> what it measures (a list of entries); `make bench` runs them all, `--only` some
GROUPS: dict[str, Callable[[], list[dict]]] = {
    "speed": lambda: ratios(measure()),
    "executors": _executors,
    "training": lambda: training_entries(ROUNDS),
    **{f"training_step_rate_{k}": functools.partial(_one, step_rate_entry, k, ROUNDS) for k in STEP_RATE_METHODS},
    "cell_rss": lambda: [cell_rss_entry()],
    "dry_run": lambda: [dry_run_entry()],
    "predict": lambda: [predict_entry()],  # bench.predict vs the predict_check grid's two-device cells
    "predict_speed": lambda: [predict_speed_entry()],  # bench.predict on a 100-cell folder
}
FULL = ("speed", "training", *(f"training_step_rate_{k}" for k in STEP_RATE_METHODS), "cell_rss", "dry_run",
        "predict", "predict_speed")  # "executors" is part of "speed"


def _merged(path: Path, entries: list[dict]) -> list[dict]:
    """bench.json's entries with `entries` in place of those of the same name (appended when new)."""
    old = json.loads(path.read_text()) if path.exists() else []
    new = {e["name"]: e for e in entries}
    kept = [new.pop(e["name"], e) for e in old]
    return kept + list(new.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark", description="make bench: speed targets as ratios")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these groups: {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only or [] if n not in GROUPS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    entries = [e for name in (args.only or FULL) for e in GROUPS[name]()]
    path = REPO_ROOT / "results" / "bench" / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    for e in entries:
        e["detail"] = f"{e['detail']}; {facts}"
    path.write_text(json.dumps(_merged(path, entries) if args.only else entries, indent=2))
    print(f"\n{facts}\n")
    print(f"{'name':45s} {'ratio':>7s} {'target':>7s}  verdict")
    for e in entries:
        target = e["target"]
        verdict = "" if target is None else ("met" if e["ratio"] >= target else f"MISSED by {target - e['ratio']:.2f}")
        print(f"{e['name']:45s} {e['ratio']:7.3f} {'-' if target is None else f'{target:.2f}':>7s}  {verdict}")
    print(f"\nwritten to {path}")
    return 0
