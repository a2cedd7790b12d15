"""The BP baseline of a speedup: which BP row a row's time is divided into.

Speedup of a row = epoch time of BP on 1 device / the row's epoch time, at the
same model, dataset and batch size, and the same settings that change how long
a step takes: the samples per step (`views`), the model's size
(`model_kwargs`), the kind of device and its intra-op threads.  Settings that
change what is learned but not how long a step takes (learning rate,
temperature, seeds, evaluation, profiling) never split the baseline: a grid
that also ran BP variants with other learning rates, or whose BP variants
failed, still finds its BP row.  Only ok rows are baselines.
"""
from __future__ import annotations

import json

import pandas as pd

__all__ = ["BASELINE_METHOD", "TIME_SETTINGS", "TIME_COLUMNS", "base_method", "is_baseline", "on_baseline",
           "baseline_rows", "time_key", "with_bp_baseline"]

BASELINE_METHOD = "bp"  # the method every speedup is measured against, on 1 device (the SCPL paper's reference)
TIME_SETTINGS = ("views", "model_kwargs")  # settings that change the work of one step
TIME_COLUMNS = ("device_kind", "threads_per_device")  # row columns that change the speed of the work
_PAIR = ["model", "dataset", "batch_size"]


def base_method(label: str) -> str:
    """`bp` of `bp[lr=0.1]` (bench/report/variants.py labels)."""
    return str(label).split("[")[0]


def is_baseline(method: str, devices: int) -> bool:
    """Whether a row of `method` on `devices` is a baseline row: BP (or a BP variant) on 1 device."""
    return base_method(method) == BASELINE_METHOD and devices == 1


def on_baseline(frame: pd.DataFrame) -> pd.Series:
    """Which rows of `frame` are baseline rows (`is_baseline`), as a boolean mask."""
    return (frame["method"].map(base_method) == BASELINE_METHOD) & (frame["devices"] == 1)


def baseline_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The baseline rows of `frame`; only the plain BP rows when there are BP variants (`bp[lr=..]`) too."""
    rows = frame[on_baseline(frame)]
    plain = rows[rows["method"] == BASELINE_METHOD]
    return plain if not plain.empty else rows


def time_key(row) -> str:
    """What must be equal between a row and its BP baseline, as one comparable string."""
    settings = json.loads(row["settings_json"]) if isinstance(row.get("settings_json"), str) else {}
    key = {k: settings.get(k) for k in TIME_SETTINGS}
    key.update({k: (None if pd.isna(row.get(k)) else row.get(k)) for k in TIME_COLUMNS if k in row})
    return json.dumps(key, sort_keys=True, default=str)


def with_bp_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Ok rows with an epoch time, plus `bp_epoch_time_s` (mean over BP's trials) and `speedup`.

    Each row's baseline: the ok BP rows on 1 device of its model, dataset and
    batch size with its time key; when none has that key but the BP rows share
    one key, those (a row may differ from BP in a setting BP does not use).
    NaN when there is no BP row to compare with.
    """
    ok = frame[(frame["status"] == "ok") & frame["epoch_time_s"].notna()].copy()
    if ok.empty:
        ok["bp_epoch_time_s"] = pd.Series(dtype=float)
        ok["speedup"] = pd.Series(dtype=float)
        return ok
    ok["_time_key"] = [time_key(r) for _, r in ok.iterrows()]
    bp = ok[on_baseline(ok)]
    by_key = bp.groupby(_PAIR + ["_time_key"])["epoch_time_s"].mean()
    by_pair = {pair: part for pair, part in bp.groupby(_PAIR)}
    bases = []
    for _, row in ok.iterrows():
        pair = tuple(row[c] for c in _PAIR)
        base = by_key.get(pair + (row["_time_key"],))
        if base is None and pair in by_pair and by_pair[pair]["_time_key"].nunique() == 1:
            base = by_pair[pair]["epoch_time_s"].mean()
        bases.append(float("nan") if base is None else float(base))
    ok["bp_epoch_time_s"] = bases
    ok["speedup"] = ok["bp_epoch_time_s"] / ok["epoch_time_s"]
    return ok.drop(columns="_time_key")
