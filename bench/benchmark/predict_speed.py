"""`make bench`: how long `python -m bench.predict` takes on a 100-cell results folder (target: 2 s).

Why measure it: a user asks "which method, how many devices, which split" of a
whole grid before booking GPUs, and `--balance all` simulates every contiguous
split of every cell on every device count, so the prediction must stay cheap.

The folder is written by hand (no cell runs): 100 one-device cells of VGG8 on
the CIFAR-10 twin, five methods x five batch sizes x four trials, each with the
per-stage busy times a measured cell has.  Predicted on 2, 4 and 8 devices.
Timed is the prediction itself, as the command reports it ("predicted in X s"),
without the interpreter start and torch import (about 3.4 s here): first on a
fresh folder (the model is described on the meta device, then cached in the
folder), then again on the same folder (sizes cached).
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import REPO_ROOT

__all__ = ["TARGET_S", "write_folder", "predict_seconds", "predict_speed_entry"]

TARGET_S = 2.0
METHODS = ("bp", "scpl", "dascpl", "gpipe_dist", "ddp")
BATCHES = (16, 32, 64, 128, 256)
TRIALS = 4
DEVICES = ("2", "4", "8")
_SETTINGS = {"warmup_steps": 1, "steps": 4, "queue_depth": 2,
             "method_options": {"gpipe_dist": {"chunks": 4, "schedule": "gpipe"}}}


def write_folder(folder: Path) -> int:
    """Write the 100 one-device rows into `folder`; their number."""
    from bench.store.fragments import append_rows
    from bench.store.row import ResultRow

    rows = []
    for method in METHODS:
        for batch in BATCHES:
            for trial in range(TRIALS):
                step = 0.004 * batch * (1.6 if method in ("scpl", "dascpl") else 1.0)
                busy = [step * share for share in (0.3, 0.3, 0.25, 0.15)] if method in ("scpl", "dascpl") else []
                rows.append(ResultRow(
                    cell_id=f"{method}-b{batch}-t{trial}", grid="predict_speed", method=method, model="vgg8",
                    dataset="cifar10@synthetic", batch_size=batch, devices=1, trial=trial, data_kind="synthetic",
                    seed=trial, device_kind="cpu", step_time_median_s=step, stage_busy_s=busy, timed_steps=4,
                    settings_json=json.dumps(_SETTINGS)))
    append_rows(folder, rows)
    return len(rows)


def predict_seconds(folder: Path) -> float:
    """The prediction's own seconds, as `python -m bench.predict` reports them (a fresh interpreter)."""
    proc = subprocess.run([sys.executable, "-m", "bench.predict", str(folder), "--devices", *DEVICES],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    found = re.search(r"predicted in ([0-9.]+) s", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"bench.predict failed: {proc.stderr.strip()[-300:]}")
    return float(found.group(1))


def predict_speed_entry(rounds: int = 3) -> dict:
    """The bench.json entry: ratio = target / median seconds on a fresh folder (>= 1 meets 2 s)."""
    fresh, cached = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            folder = Path(tmp) / f"round{r}"
            cells = write_folder(folder)
            fresh.append(predict_seconds(folder))
            cached.append(predict_seconds(folder))
    median = statistics.median(fresh)
    return {"name": "predict_100_cells", "ratio": TARGET_S / median, "target": 1.0,
            "detail": f"bench.predict of {cells} one-device cells ({len(METHODS)} methods x {len(BATCHES)} batches x "
                      f"{TRIALS} trials, VGG8) on {', '.join(DEVICES)} devices, every split: median "
                      f"{median:.2f} s on a fresh folder ({', '.join(f'{t:.2f}' for t in fresh)} s), "
                      f"{statistics.median(cached):.2f} s with the model's sizes cached; target {TARGET_S:.0f} s, "
                      "interpreter start and torch import excluded"}
