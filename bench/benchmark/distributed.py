"""Distributed cells as one job (#15), as measured ratios (entries in the form of bench/benchmark/ratios.py).

* step rate: does a distributed training run keep the sampled mode's step rate?
  For DDP, gpipe_dist and SCPL with `executor: processes` on 2 CPU devices:
  (steps per epoch x the sampled cell's median step) / the training run's
  median measured epoch, i.e. the run's step rate over the sampled one.  Before
  the ranks lived for the whole cell every epoch spawned them again, inside its
  measured time (0.35-0.38).  Target >= 0.95.
* cell-process memory: the process that supervises a distributed cell holds no
  batch and no parameter, so its peak RSS does not grow with the training
  items: the same DDP training run on 10,000 and on 40,000 items of the
  CIFAR-10 twin, peak RSS of the cell process (not of its ranks) for 10k over
  40k.  Target >= 0.95.

Each cell runs in a fresh process like every other benchmark; the memory entry
runs the cell through `python -m bench.benchmark.distributed CELL.json`, which
prints that process's own peak RSS (`ru_maxrss` of RUSAGE_SELF: the ranks are
other processes).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import REPO_ROOT
from bench.grid import Cell, CellSettings

__all__ = ["step_rate_entry", "cell_rss_entry", "STEP_RATE_METHODS"]

_BASE = CellSettings(device_kind="cpu", threads_per_device=1, balance="even", count_train_memory=False,
                     eval_batch_size=256, max_test_items=256, val_fraction=0.0, timeout_s=1800, augment="none")

# entry name -> (method, executor setting, method options)
STEP_RATE_METHODS = {
    "ddp": ("ddp", "threads", {}),
    "gpipe_dist": ("gpipe_dist", "threads", {"gpipe_dist": {"chunks": 4}}),
    "scpl_processes": ("scpl", "processes", {}),
}


def _cell(method: str, devices: int, batch: int, **settings) -> Cell:
    return Cell("bench_distributed", method, "convnet", "cifar10@synthetic", batch, devices, 0,
                _BASE.replace(**settings))


def _run(cell: Cell):
    from bench.run.runner import run_cell_subprocess

    with tempfile.TemporaryDirectory() as work:
        row = run_cell_subprocess(cell, None, Path(work), Path(work) / "results")
    if row.status != "ok":
        raise RuntimeError(f"{cell.label}: {row.status}: {row.error}")
    return row


def step_rate_entry(which: str, rounds: int = 3, batch: int = 32, items: int = 2048, epochs: int = 3) -> dict:
    """Training-run step rate over the sampled step rate of one distributed method, 2 CPU devices."""
    method, executor, options = STEP_RATE_METHODS[which]
    common = dict(executor=executor, method_options=options, max_train_items=items)
    # 32 timed steps: with 8, the sampled median of SCPL on processes varied from 158 to 225 ms between
    # rounds while the training run's steps stayed near 200 ms (the denominator was the noisy side)
    sampled = _cell(method, 2, batch, warmup_steps=2, steps=32, **common)
    training = _cell(method, 2, batch, epochs=epochs, **common)
    steps, epochs_s = [], []
    steps_per_epoch = 0
    for _ in range(rounds):  # interleaved, as ratios.py does
        steps.append(_run(sampled).step_time_median_s)
        row = _run(training)
        epochs_s.append(row.epoch_time_s)
        steps_per_epoch = row.steps_per_epoch
    step, epoch = statistics.median(steps), statistics.median(epochs_s)
    return {"name": f"training_run_step_rate_{which}_2dev", "ratio": steps_per_epoch * step / epoch,
            "target": 0.95,
            "detail": f"{which} ConvNet cifar10@synthetic b{batch}, {items} items x {epochs} epochs: "
                      f"median epoch {epoch:.2f} s for {steps_per_epoch} steps vs sampled median step "
                      f"{step * 1000:.1f} ms ({steps_per_epoch * step:.2f} s per epoch at the sampled rate)"}


def _cell_process_peak_rss(cell: Cell) -> int:
    """Run `cell` in a fresh process (thread budget set first); that process's own peak RSS in bytes."""
    from bench.run.cell_process import cell_env

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "cell.json"
        path.write_text(cell.to_json())
        out = subprocess.run([sys.executable, "-m", "bench.benchmark.distributed", str(path), work],
                             cwd=REPO_ROOT, env=cell_env(cell), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cell.label}: exited {out.returncode}: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["status"] != "ok":
        raise RuntimeError(f"{cell.label}: {result['status']}: {result['error']}")
    return int(result["peak_rss_bytes"])


def cell_rss_entry(small: int = 10_000, large: int = 40_000, batch: int = 64) -> dict:
    """Peak RSS of a DDP training run's cell process, `small` over `large` training items."""
    peaks = {n: _cell_process_peak_rss(_cell("ddp", 2, batch, epochs=1, max_train_items=n)) for n in (small, large)}
    return {"name": "distributed_cell_process_rss_10k_over_40k_items", "ratio": peaks[small] / peaks[large],
            "target": 0.95,
            "detail": f"DDP ConvNet b{batch}, 2 CPU ranks, 1 epoch: the cell process peaks at "
                      f"{peaks[small] / 2**20:.0f} MiB with {small} items and {peaks[large] / 2**20:.0f} MiB with "
                      f"{large} (its ranks read the data, it holds none)"}


def _main(argv: list[str]) -> int:
    """`python -m bench.benchmark.distributed CELL.json RESULTS`: run the cell here, print this process's peak RSS."""
    from bench.cell.phases import run_cell

    cell = Cell.from_json(Path(argv[1]).read_text())
    row = run_cell(cell, None, Path(argv[2]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"status": row.status, "error": row.error, "peak_rss_bytes": peak, "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
