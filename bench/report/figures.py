"""Figures from results.parquet (the SCPL paper's Figures 5-12) and timelines of profiled cells.

Per model/dataset pair:
- `epoch_time_<model>_<dataset>.png|svg`: time per epoch, one panel per batch
  size, bars per device count and method, error bars = std over trials;
- `speedup_<model>_<dataset>.png|svg`: speedup over BP on 1 device at the same
  batch size, against batch size, one line per method and device count,
  error bars = std over trials (each trial against BP's mean);
- `timeline_<model>_<dataset>_b<batch>.png|svg`: the profiled cells of that
  batch size side by side on one time axis (bench.timeline).

Where: `plots/<grid>/` for a results folder `results/<grid>` of this
repository (the layout the Makefile and README use); for a results folder
anywhere else, `<results>/plots/`, so a run in a temporary folder never writes
into the repository.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.report.timeline import TimelinePanel, save_figure, timeline_figure  # noqa: E402
from bench.profiling.trace_events import find_trace_files, load_trace_dir  # noqa: E402
from bench.profiling.trace_metrics import stage_lanes  # noqa: E402

__all__ = ["plots_dir", "with_speedup", "epoch_time_figure", "speedup_figure", "timeline_figures", "write_figures"]

from bench import REPO_ROOT  # noqa: E402


def plots_dir(results_dir: Path) -> Path:
    """`plots/<grid>` for `results/<grid>` of this repository, else `<results>/plots`."""
    results_dir = Path(results_dir).resolve()
    if results_dir.parent == (REPO_ROOT / "results").resolve():
        return REPO_ROOT / "plots" / results_dir.name
    return results_dir / "plots"


def _stem(model: str, dataset: str) -> str:
    return f"{model}_{dataset.replace('@', '-')}"


def _method_label(method: str, devices: int) -> str:
    return f"{method.upper() if method == 'bp' else method} ({devices} dev)"


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Ok rows with a `speedup` column: BP-on-1-device mean epoch time / this row's (same batch size)."""
    ok = frame[(frame["status"] == "ok") & frame["epoch_time_s"].notna()].copy()
    base = ok[(ok["method"] == "bp") & (ok["devices"] == 1)].groupby("batch_size")["epoch_time_s"].mean()
    ok["speedup"] = ok["batch_size"].map(base) / ok["epoch_time_s"]
    return ok


def epoch_time_figure(part: pd.DataFrame, title: str):
    """Bars of epoch time: a panel per batch size, device count on x, one colour per method."""
    ok = part[(part["status"] == "ok") & part["epoch_time_s"].notna()]
    grid = sns.catplot(data=ok, kind="bar", x="devices", y="epoch_time_s", hue="method", col="batch_size",
                       errorbar="sd", capsize=0.1, sharey=False, height=3.2, aspect=0.9)
    grid.set_axis_labels("devices", "time per epoch (s)")
    grid.set_titles("batch {col_name}")
    grid.figure.suptitle(title, y=1.03, fontsize=10)
    return grid.figure


def speedup_figure(part: pd.DataFrame, title: str):
    """Speedup over BP on 1 device against batch size; None when no BP-on-1-device baseline exists."""
    ok = with_speedup(part).dropna(subset=["speedup"])
    if ok.empty:
        return None
    ok["method (devices)"] = [_method_label(m, d) for m, d in zip(ok["method"], ok["devices"])]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=ok, x="batch_size", y="speedup", hue="method (devices)", marker="o", errorbar="sd",
                 err_style="bars", ax=ax)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ok["batch_size"].unique()), [str(b) for b in sorted(ok["batch_size"].unique())])
    ax.set_xlabel("batch size")
    ax.set_ylabel("speedup over BP on 1 device")
    ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def timeline_figures(frame: pd.DataFrame, results_dir: Path, out_dir: Path) -> list[Path]:
    """One timeline figure per model/dataset/batch size with profiled cells (first trial of each)."""
    if "trace_dir" not in frame.columns:
        return []
    profiled = frame[(frame["status"] == "ok") & frame["trace_dir"].notna()]
    written: list[Path] = []
    for (model, dataset, batch), part in profiled.groupby(["model", "dataset", "batch_size"], sort=True):
        panels = []
        first = part.sort_values("trial").drop_duplicates(["method", "devices"])
        for row in first.sort_values(["devices", "method"]).itertuples():
            folder = Path(row.trace_dir)
            folder = folder if folder.is_absolute() else Path(results_dir) / folder
            if not find_trace_files(folder):
                continue  # traces deleted or results copied without them
            lanes = stage_lanes(list(row.balance)) if len(row.balance) and row.method != "gpipe_dist" else None
            panels.append(TimelinePanel(_method_label(row.method, row.devices), load_trace_dir(folder), lanes))
        if panels:
            fig = timeline_figure(panels)
            written += save_figure(fig, out_dir / f"timeline_{_stem(model, dataset)}_b{batch}")
    return written


def write_figures(results_dir: Path, frame: pd.DataFrame, out_dir: Optional[Path] = None) -> list[Path]:
    """Every figure of a results folder; returns the files written."""
    out_dir = Path(out_dir) if out_dir is not None else plots_dir(results_dir)
    written: list[Path] = []
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=True):
        if not ((part["status"] == "ok") & part["epoch_time_s"].notna()).any():
            continue
        kinds = sorted(part["data_kind"].dropna().unique())
        title = f"{model} on {dataset}" + (" (SYNTHETIC data)" if "synthetic" in kinds else "")
        written += save_figure(epoch_time_figure(part, title), out_dir / f"epoch_time_{_stem(model, dataset)}")
        fig = speedup_figure(part, title)
        if fig is not None:
            written += save_figure(fig, out_dir / f"speedup_{_stem(model, dataset)}")
    written += timeline_figures(frame, results_dir, out_dir)
    return written
