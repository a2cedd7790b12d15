"""Tell apart rows of one method that ran with different settings.

Why: a grid may compare SCPL with `local_loss: supcon` and `suncet`, or ContSup's
context modes, through per-cell settings; a table grouped by method alone would
average them into one row.  A method's label gains the settings that differ
among that method's rows (e.g. `contsup[context=R1E]`), and nothing else, so
plain grids keep plain names.  Only rows that finished decide what varies: a
failed variant keeps the good rows' plain name.
"""
from __future__ import annotations

import json

import pandas as pd

from bench.grid import CellSettings

__all__ = ["label_variants"]

# Settings that identify a trial or the run's bookkeeping, never a variant of a method.
_NOT_VARIANTS = {"seed", "timeout_s", "profile", "eval_points", "eval_batches", "eval_batch_size"}


def _flatten(settings: dict) -> dict:
    flat = {}
    for key, value in settings.items():
        if key in _NOT_VARIANTS:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[sub if key == "method_options" else f"{key}.{sub}"] = json.dumps(v, sort_keys=True)
        else:
            flat[key] = json.dumps(value, sort_keys=True)
    return flat


def label_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose `method` column names the varying settings of each method."""
    if frame.empty or "settings_json" not in frame:
        return frame
    frame = frame.copy()
    # Rows written before a setting existed lack it: they ran with its default.
    defaults = CellSettings().as_dict()
    flats = [_flatten({**defaults, **json.loads(s)}) if isinstance(s, str) else {} for s in frame["settings_json"]]
    labels = list(frame["method"])
    ok = list(frame["status"] == "ok") if "status" in frame else [True] * len(frame)
    for method in frame["method"].unique():
        rows = [i for i, m in enumerate(frame["method"]) if m == method]
        # settings that vary among the rows that finished: a failed variant (a diverging learning
        # rate) must not relabel the good row, or its speedup would lose its BP baseline
        deciding = [i for i in rows if ok[i]] or rows
        keys = sorted({k for i in rows for k in flats[i]})
        varying = [k for k in keys if len({flats[i].get(k) for i in deciding}) > 1]
        if not varying:
            continue
        for i in rows:
            parts = ",".join(f"{k}={json.loads(flats[i][k]) if k in flats[i] else '-'}" for k in varying)
            labels[i] = f"{method}[{parts}]"
    frame["method"] = labels
    return frame
