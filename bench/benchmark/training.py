"""Training-run targets as measured ratios (entries in the form of bench/benchmark/ratios.py).

Three questions about whole-epoch training runs (docs/TRAINING.md), each answered
by cells run in fresh processes like every other benchmark:

* throughput: does a training run keep the sampled mode's step rate?  SCPL on 2
  devices, samples/s of the run (epoch boundaries, streaming and all) over
  samples/s of the sampled timed steps.  Target >= 0.95.
* memory: does memory grow with the number of epochs?  Peak RSS of the cell
  process for 1 epoch over 5 epochs of the same cell; >= 1 / 1.05 means the
  5-epoch run peaks at most 5 % higher.
* data: does the loader keep up?  1 - (time blocked on the loader / training
  time) with `data_workers: 2` on CIFAR-10 files in the published pickle
  format (written to a temp folder); >= 0.95 means at most 5 % waiting.

Every ratio is "higher is better", met when ratio >= target, as in ratios.py.
"""
from __future__ import annotations

import pickle
import statistics
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from bench.grid import Cell, CellSettings
from bench.run.runner import run_cell_subprocess

__all__ = ["training_entries", "write_cifar10_files", "throughput_entry", "memory_entry", "data_wait_entry"]

_BASE = CellSettings(device_kind="cpu", threads_per_device=1, balance="even", count_train_memory=False,
                     eval_batch_size=256, max_test_items=256, val_fraction=0.0, timeout_s=1800)


def _cell(method: str, devices: int, batch: int, dataset: str = "cifar10@synthetic", **settings) -> Cell:
    return Cell("bench_training", method, "convnet", dataset, batch, devices, 0, _BASE.replace(**settings))


def _run(cell: Cell, data_root: Optional[str] = None):
    with tempfile.TemporaryDirectory() as work:
        row = run_cell_subprocess(cell, data_root, Path(work), Path(work) / "results")
    if row.status != "ok":
        raise RuntimeError(f"{cell.label}: {row.status}: {row.error}")
    return row


def throughput_entry(rounds: int = 3, batch: int = 32, items: int = 2048) -> dict:
    """SCPL, 2 devices: training-run samples/s over the sampled mode's samples/s (medians over rounds)."""
    # 32 timed steps, as the distributed step-rate entries (bench/benchmark/distributed.py): with 8 the
    # sampled side was the noisy one
    sampled = _cell("scpl", 2, batch, warmup_steps=2, steps=32, max_train_items=items)
    training = _cell("scpl", 2, batch, epochs=2, max_train_items=items)
    s_rates, t_rates = [], []
    for _ in range(rounds):  # interleaved, as ratios.py does
        s_rates.append(_run(sampled).throughput_samples_s)
        t_rates.append(_run(training).throughput_samples_s)
    s, t = statistics.median(s_rates), statistics.median(t_rates)
    return {"name": "training_run_vs_sampled_scpl_2dev", "ratio": t / s, "target": 0.95,
            "detail": f"ConvNet cifar10@synthetic b{batch}, {items} items x 2 epochs: training run {t:.1f} "
                      f"samples/s vs sampled steps {s:.1f} samples/s"}


def memory_entry(batch: int = 32, items: int = 512) -> dict:
    """Peak RSS of the cell process, 1 epoch / 5 epochs of the same SCPL cell (1 device)."""
    peaks = {e: _run(_cell("scpl", 1, batch, epochs=e, max_train_items=items)).peak_mem_bytes for e in (1, 5)}
    return {"name": "training_run_rss_1epoch_over_5epochs", "ratio": peaks[1] / peaks[5], "target": 1 / 1.05,
            "detail": f"peak RSS {peaks[1] / 2**20:.0f} MiB after 1 epoch, {peaks[5] / 2**20:.0f} MiB after 5 "
                      "(ratio >= 0.952 means the 5-epoch run peaks <= 5 % higher)"}


def write_cifar10_files(root: Path, train: int = 5000, test: int = 1000, seed: int = 0) -> Path:
    """CIFAR-10 in its published python-pickle layout (random pixels): 5 training batches and a test batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    parts = [(f"data_batch_{b + 1}", train // 5) for b in range(5)] + [("test_batch", test)]
    for name, count in parts:
        batch = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, count)], b"filenames": [b"x.png"] * count}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return root


def data_wait_entry(batch: int = 64, items: int = 5000) -> dict:
    """1 - data wait fraction of a BP training run on CIFAR-10 files with 2 loader workers."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cifar10_files(Path(tmp), train=items)
        row = _run(_cell("bp", 1, batch, dataset="cifar10", epochs=2, data_workers=2, augment="basic",
                         max_test_items=None), str(root))
    fraction = row.data_wait_fraction
    return {"name": "training_run_data_wait_2workers", "ratio": 1 - fraction, "target": 0.95,
            "detail": f"BP ConvNet b{batch} on {items} CIFAR-10 pickled items, data_workers 2, basic augmentation: "
                      f"{row.data_wait_s:.2f} s of {row.train_wall_s:.2f} s blocked on the loader "
                      f"({100 * fraction:.1f} %)"}


def training_entries(rounds: int = 3) -> list[dict]:
    """All three entries (minutes on 2 CPU cores)."""
    return [throughput_entry(rounds), memory_entry(), data_wait_entry()]


if __name__ == "__main__":
    import json

    print(json.dumps(training_entries(rounds=1), indent=2))
