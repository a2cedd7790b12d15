"""Time-to-accuracy: when a training run first reaches an accuracy, and its speedup over BP.

Why: a speedup per epoch says nothing about whether a method gets anywhere in
that epoch.  The number a user wants is the wall-clock time to a given
accuracy, which none of the seed papers reports.  From the curves of training
runs (`curves.parquet`, one row per cell x epoch; bench/store/curves.py):

- targets: the grid's `tta_targets` (absolute accuracies, from settings_json)
  and, by default, 90 %, 95 % and 99 % of BP's final accuracy on the same
  model, dataset and batch size (BP on 1 device, mean over its trials, from the
  result rows of the same folder; for the validation targets BP's final
  validation accuracy).  Without such a BP run the relative targets are left
  out and a note says so.
- timing: accuracy is only known at evaluated epochs, so a target is timed at
  the `wall_s` (training wall-clock, evaluation excluded) of the FIRST EVALUATED
  epoch whose accuracy is at or above it.  This is an upper bound: the run
  crossed the target somewhere after the previous evaluation (`lower_s`, kept
  in the CSV), so its resolution is `eval_every` epochs.
- a target never reached is "not reached" (CSV: `reached` false, times empty),
  never a number; a mean over trials exists only when every trial reached it.
- speedup = BP-on-1-device's mean time to the target / the row's mean time, at
  the same model, dataset, batch size and time key (bench/report/baseline.py).
- a BP baseline that did not learn (its row's `health`, bench/report/health_report.py)
  is no baseline: targets relative to its final accuracy are not computed (a note
  says why) and no time is divided by its time; the table says "BP did not learn".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from bench.report.baseline import baseline_rows, is_baseline, time_key
from bench.report.health_report import (
    DID_NOT_LEARN_MARK,
    baseline_did_not_learn,
    did_not_learn,
    health_block,
    under_block,
)
from bench.report.method_facts import method_label, report_rank

__all__ = ["BP_FRACTIONS", "METRICS", "Target", "load_curves", "curves_with_rows", "first_reached", "targets_for",
           "tta_frame", "tta_table", "tta_speedup_frame", "tta_speedup_table", "write_tta"]

BP_FRACTIONS = (0.90, 0.95, 0.99)
METRICS = {"test": "test_acc", "val": "val_acc"}  # curve column of each metric
_PAIR = ["model", "dataset", "batch_size"]
_RUN_COLUMNS = ["method", "model", "dataset", "batch_size", "devices", "trial"]


@dataclass(frozen=True)
class Target:
    """One accuracy to reach: its label in tables, the absolute value, where it came from."""

    label: str  # "acc 80.0 %" or "95 % of BP"
    value: float  # absolute accuracy in [0, 1]
    kind: str  # "absolute" | "bp_fraction"


def load_curves(results_dir: Path) -> pd.DataFrame:
    """The curve rows of a folder: bench/store/curves.py's reader if present, else curves.parquet as is."""
    try:
        from bench.store.curves import read_curves
    except ImportError:  # an older checkout without the curves store
        path = Path(results_dir) / "curves.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()
    return read_curves(Path(results_dir))


def curves_with_rows(curves: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Curve rows with their result row's labelled method, settings and device columns (joined on cell_id).

    The result rows carry the variant labels (bench/report/variants.py) and what the BP
    baseline must match; a curve without a result row keeps its own columns.
    """
    if curves.empty:
        return curves
    curves = curves.copy()
    extra = [c for c in ("method", "settings_json", "device_kind", "threads_per_device", "status", "health")
             if c in frame.columns]
    if "cell_id" in frame.columns and extra:
        rows = frame.drop_duplicates("cell_id").set_index("cell_id")[extra]
        for column in extra:
            mapped = curves["cell_id"].map(rows[column])
            curves[column] = mapped.where(mapped.notna(), curves[column]) if column in curves else mapped
    for column in ("settings_json", "device_kind", "threads_per_device", "status"):
        if column not in curves:
            curves[column] = None
    return curves


def first_reached(curve: pd.DataFrame, column: str, target: float) -> dict:
    """When `curve` (one run's rows) first has `column` >= target: the upper bound `time_s` and its epoch.

    `lower_s` is the wall_s of the evaluation before it (0 for the first), so the
    crossing lies in (lower_s, time_s].  Not reached: reached False, times NaN.
    """
    evaluated = curve[curve[column].notna()].sort_values("epoch")
    hits = evaluated[evaluated[column] >= target - 1e-12]
    if hits.empty:
        return {"reached": False, "time_s": np.nan, "epoch": np.nan, "lower_s": np.nan}
    hit = hits.iloc[0]
    before = evaluated[evaluated["epoch"] < hit["epoch"]]
    return {"reached": True, "time_s": float(hit["wall_s"]), "epoch": int(hit["epoch"]),
            "lower_s": float(before["wall_s"].iloc[-1]) if not before.empty else 0.0}


def _absolute_targets(settings: Sequence[Optional[str]]) -> list[float]:
    values: set[float] = set()
    for text in settings:
        if isinstance(text, str):
            listed = json.loads(text).get("tta_targets") or []
            values |= {float(v) for v in (listed if isinstance(listed, list) else [listed])}
    return sorted(values)


def _bp_final(frame: pd.DataFrame, curves: pd.DataFrame, pair: tuple, metric: str) -> Optional[float]:
    """BP on 1 device's final accuracy for `pair`: mean over its ok result rows, else over its curves' last evaluation."""
    column = METRICS[metric]

    def bp_rows(data: pd.DataFrame) -> pd.DataFrame:
        if data.empty or not set(_PAIR) <= set(data.columns):
            return data.iloc[0:0]
        mask = pd.Series(True, index=data.index)
        for key, value in zip(_PAIR, pair):
            mask &= data[key] == value
        return baseline_rows(data[mask])  # the plain BP run, when there are BP variants too

    rows = bp_rows(frame[frame["status"] == "ok"] if "status" in frame else frame)
    if column in rows and rows[column].notna().any():
        return float(rows[column].mean())
    runs = bp_rows(curves)
    if runs.empty or column not in runs:
        return None
    last = [r[column].dropna().iloc[-1] for _, r in runs.sort_values("epoch").groupby("cell_id")
            if r[column].notna().any()]
    return float(np.mean(last)) if last else None


def targets_for(frame: pd.DataFrame, curves: pd.DataFrame, pair: tuple, metric: str) -> tuple[list[Target], str]:
    """The targets of one model/dataset/batch pair and metric, and a note ("" or why relative ones are missing)."""
    part = curves
    for key, value in zip(_PAIR, pair):
        part = part[part[key] == value]
    targets = [Target(f"acc {100 * v:.1f} %", v, "absolute") for v in _absolute_targets(part["settings_json"])]
    final = _bp_final(frame, curves, pair, metric)
    model, dataset, batch = pair
    if final is None:
        return targets, (f"no BP run on 1 device for {model} on {dataset} at batch {batch}: targets relative "
                         f"to BP's final {metric} accuracy not computed")
    if baseline_did_not_learn(frame, zip(_PAIR, pair)):
        return targets, (f"BP on 1 device did not learn {model} on {dataset} at batch {batch} (training health): "
                         f"targets relative to its final {metric} accuracy not computed")
    targets += [Target(f"{100 * f:.0f} % of BP", f * final, "bp_fraction") for f in BP_FRACTIONS]
    return targets, ""


def tta_frame(frame: pd.DataFrame, curves: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per run x metric x target: reached, time_s (upper bound), epoch, lower_s; and the notes.

    `curves` as from `curves_with_rows`; `frame` the (labelled) result rows.
    """
    if curves.empty:
        return pd.DataFrame(), []
    records, notes = [], []
    for pair, part in curves.groupby(_PAIR, sort=True):
        for metric, column in METRICS.items():
            if column not in part or part[column].isna().all():
                continue
            targets, note = targets_for(frame, curves, pair, metric)
            if note:
                notes.append(note)
            for cell_id, run in part.groupby("cell_id", sort=False):
                first = run.iloc[0]
                base = {"cell_id": cell_id, **{c: first[c] for c in _RUN_COLUMNS},
                        "_time_key": time_key(first), "epochs_run": int(run["epoch"].max()),
                        "did_not_learn": did_not_learn(first.get("health"))}
                for target in targets:
                    records.append({**base, "metric": metric, "target": target.label, "target_kind": target.kind,
                                    "target_acc": target.value, **first_reached(run, column, target.value)})
    out = pd.DataFrame(records)
    if not out.empty:
        out["epoch"] = out["epoch"].astype("Int64")  # empty when not reached, never a made-up number
    return out, notes


def _seconds(value: float) -> str:
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"


def tta_table(tta: pd.DataFrame) -> pd.DataFrame:
    """Rows "method (N devices) trial T", columns the targets, cells "12.3 s (ep 4)" or "not reached (E ep)".

    `tta` holds the rows of one model/dataset/batch and metric.
    """
    columns = list(dict.fromkeys(tta["target"]))
    runs = tta.drop_duplicates("cell_id").sort_values(["method", "devices", "trial"],
                                                      key=lambda s: s.map(report_rank) if s.name == "method" else s)
    table = {}
    for run in runs.itertuples():
        mine = tta[tta["cell_id"] == run.cell_id].set_index("target")
        table[f"{method_label(run.method, run.devices)} trial {run.trial}"] = [
            f"{_seconds(mine.at[t, 'time_s'])} (ep {int(mine.at[t, 'epoch'])})" if mine.at[t, "reached"]
            else f"not reached ({run.epochs_run} ep)" for t in columns]
    return pd.DataFrame.from_dict(table, orient="index", columns=columns)


def tta_speedup_frame(tta: pd.DataFrame) -> pd.DataFrame:
    """Per method x devices x target: mean time over trials (only when all reached), BP's, and the speedup."""
    if tta.empty:
        return pd.DataFrame()
    keys = _PAIR + ["metric", "target", "method", "devices", "_time_key"]
    grouped = tta.groupby(keys, sort=False)
    stats = grouped.agg(target_acc=("target_acc", "first"), trials=("reached", "size"),
                        trials_reached=("reached", "sum"), tta_mean_s=("time_s", "mean"),
                        tta_std_s=("time_s", "std"), did_not_learn=("did_not_learn", "any")).reset_index()
    stats.loc[stats["trials_reached"] < stats["trials"], ["tta_mean_s", "tta_std_s"]] = np.nan
    bp = baseline_rows(stats)
    bases = []
    for _, row in stats.iterrows():
        mine = bp
        for key in _PAIR + ["metric", "target"]:
            mine = mine[mine[key] == row[key]]
        same = mine[mine["_time_key"] == row["_time_key"]]
        chosen = same if not same.empty else (mine if mine["_time_key"].nunique() == 1 else mine.iloc[0:0])
        if chosen.empty:
            bases.append((np.nan, False, False))
        else:
            reached = bool((chosen["trials_reached"] == chosen["trials"]).all())
            unlearned = bool(chosen["did_not_learn"].any())  # no baseline: its time is not divided into
            bases.append((float(chosen["tta_mean_s"].mean()) if reached and not unlearned else np.nan, True, unlearned))
    stats["bp_tta_s"] = [b for b, _, _ in bases]
    stats["has_bp"] = [h for _, h, _ in bases]
    stats["bp_did_not_learn"] = [u for _, _, u in bases]
    stats["speedup"] = stats["bp_tta_s"] / stats["tta_mean_s"]
    stats["trials_reached"] = stats["trials_reached"].astype(int)
    return stats.drop(columns="_time_key")


def tta_speedup_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows "method (N devices)", columns the targets: "1.85x", BP "1x (time)", or why there is no number."""
    columns = list(dict.fromkeys(stats["target"]))
    rows = sorted({(m, d) for m, d in zip(stats["method"], stats["devices"])}, key=lambda md: (report_rank(md[0]), md[1]))
    table = {}
    for method, devices in rows:
        cells = []
        for target in columns:
            mine = stats[(stats["method"] == method) & (stats["devices"] == devices) & (stats["target"] == target)]
            if mine.empty:
                cells.append("–")
                continue
            r = mine.iloc[0]
            if r["trials_reached"] < r["trials"]:
                cells.append(f"not reached by {r['trials'] - r['trials_reached']}/{r['trials']} trials")
            elif is_baseline(method, devices):
                mark = f"; {DID_NOT_LEARN_MARK}" if r["did_not_learn"] else ""
                cells.append(f"1x ({_seconds(r['tta_mean_s'])}{mark})")
            elif not r["has_bp"]:
                cells.append(f"({_seconds(r['tta_mean_s'])}; no BP baseline)")
            elif r["bp_did_not_learn"]:
                cells.append(f"({_seconds(r['tta_mean_s'])}; BP {DID_NOT_LEARN_MARK})")
            elif pd.isna(r["bp_tta_s"]):
                cells.append(f"({_seconds(r['tta_mean_s'])}; BP did not reach it)")
            else:
                cells.append(f"{r['speedup']:.2f}x")
        table[method_label(method, devices)] = cells
    return pd.DataFrame.from_dict(table, orient="index", columns=columns)


_HOW = ("Times are training wall-clock (evaluation excluded) at the first evaluated epoch at or above the "
        "target: an upper bound, resolution eval_every epochs (the CSV's lower_s is the evaluation before).")


def write_tta(results_dir: Path, frame: pd.DataFrame,
              curves: pd.DataFrame) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """Write tta.md/.csv and tta_speedup.md/.csv; return (heading, markdown) sections and the per-run frame.

    Nothing is written without curves (no training runs): ([], empty frame).
    """
    results_dir = Path(results_dir)
    from bench.report.write import markdown_table  # write imports this module

    tta, notes = tta_frame(frame, curves)
    if tta.empty:
        return [], tta
    tta.drop(columns="_time_key").to_csv(results_dir / "tta.csv", index=False)
    stats = tta_speedup_frame(tta)
    stats.to_csv(results_dir / "tta_speedup.csv", index=False)
    note_text = "".join(f"\nNote: {n}.\n" for n in dict.fromkeys(notes))
    per_run, speedups = [], []
    for (model, dataset, batch, metric), part in tta.groupby(_PAIR + ["metric"], sort=True):
        what = f"{model} on {dataset}, batch {batch}"
        per_run.append(f"**Time to {metric} accuracy: {what}.** {_HOW}\n\n"
                       + markdown_table(tta_table(part), "run") + "\n")
    for (model, dataset, batch, metric), part in stats.groupby(_PAIR + ["metric"], sort=True):
        speedups.append((f"Time-to-accuracy speedup: {model} on {dataset}, batch {batch} ({metric})",
                         f"**Speedup in time to {metric} accuracy over BP on 1 device: {model} on {dataset}, batch "
                         f"{batch}** (BP's mean time over trials / the row's; a mean only when every trial reached the "
                         f"target). {_HOW}\n\n" + markdown_table(tta_speedup_table(part), "method") + "\n"))
    block = health_block(frame[frame["cell_id"].isin(curves["cell_id"])]) if "cell_id" in frame else ""
    (results_dir / "tta.md").write_text(under_block(block, "\n".join(per_run) + note_text))
    (results_dir / "tta_speedup.md").write_text(under_block(block, "\n".join(md for _, md in speedups) + note_text))
    sections = speedups + [("Time to accuracy, every run", "\n".join(per_run) + note_text)]
    return sections, tta
