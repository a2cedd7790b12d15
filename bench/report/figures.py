"""Figures from results.parquet (the SCPL paper's Figures 5-12) and timelines of profiled cells.

Per model/dataset pair:
- `epoch_time_<model>_<dataset>.png|svg`: time per epoch in minutes, one panel
  per batch size, bars per device count and method, error bars = std over trials;
- `speedup_<model>_<dataset>.png|svg`: speedup over BP on 1 device at the same
  batch size (bench/report/baseline.py), against batch size, one line per
  method and device count, error bars = std over trials (each trial against
  BP's mean), with the ideals: N for N devices (grey) and the balance-limited
  ideal of each pipelined row (total stage busy / busiest device's busy, from
  the row's stage_busy_s and device_busy_s; dotted, the method's colour);
- `timeline_<model>_<dataset>_b<batch>.png|svg`: the profiled cells of that
  batch size side by side on one time axis (bench.timeline), each panel's title
  with its bubble and overlap fractions.

Training runs (curves.parquet) add learning curves and accuracy against speed
(`curves_*`, `acc_speed_*`: bench/report/curves_figures.py, same colours).

One colour per method in every figure, whatever the grid: the method's own
(`colour` on its class, bench/report/method_facts.py).

Where: `plots/<grid>/` for a results folder `results/<grid>` of this
repository (the layout the Makefile and README use); for a results folder
anywhere else, `<results>/plots/`, so a run in a temporary folder never writes
into the repository.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.profiling.profiler import trace_lanes  # noqa: E402
from bench.profiling.trace_events import find_trace_files, load_trace_dir  # noqa: E402
from bench.report.baseline import base_method, with_bp_baseline  # noqa: E402
from bench.report.figure_guard import FigureLog  # noqa: E402
from bench.report.method_facts import method_colour, method_label, report_rank  # noqa: E402
from bench.report.timeline import TimelinePanel, timeline_figure  # noqa: E402
from methods import UnknownMethodError  # noqa: E402

__all__ = ["plots_dir", "method_colour", "balance_ideal", "fractions_text", "with_speedup", "legend_beside", "epoch_time_figure", "speedup_figure", "timeline_figures", "write_figures"]

from bench import REPO_ROOT  # noqa: E402


def plots_dir(results_dir: Path) -> Path:
    """`plots/<grid>` for `results/<grid>` of this repository, else `<results>/plots`."""
    results_dir = Path(results_dir).resolve()
    if results_dir.parent == (REPO_ROOT / "results").resolve():
        return REPO_ROOT / "plots" / results_dir.name
    return results_dir / "plots"


def _stem(model: str, dataset: str) -> str:
    return f"{model}_{dataset.replace('@', '-')}"


def _palette(methods) -> dict:
    return {m: method_colour(m) for m in methods}


_LEGEND_ROWS = 12  # entries per legend column: more start another column, so it never outgrows the figure


def legend_beside(fig, handles: Sequence[Artist], title: str, top: float = 1.0) -> None:
    """A legend right of the panels, the figure widened by the legend's width so the panels keep theirs.

    `top`: the fraction of the height the panels may use (the rest is the title's).
    """
    legend = fig.legend(handles=handles, title=title, loc="center left", frameon=False, fontsize=8,
                        title_fontsize=8, ncol=max(1, math.ceil(len(handles) / _LEGEND_ROWS)))
    fig.draw_without_rendering()  # the legend's size is known only once drawn
    legend_width = legend.get_window_extent().width / fig.dpi + 0.1
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + legend_width, height)
    panels = width / (width + legend_width)
    legend.set_bbox_to_anchor((panels, 0.5), transform=fig.transFigure)
    fig.tight_layout(rect=(0, 0, panels, top))


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """Ok rows with a `speedup` column: over BP on 1 device (bench/report/baseline.py), NaN without one."""
    return with_bp_baseline(frame)


def balance_ideal(row) -> Optional[float]:
    """Total stage busy time / the busiest device's: the speedup a perfect pipeline with this balance reaches."""
    def values(column: str) -> list:
        v = row.get(column)
        return [] if v is None or (not hasattr(v, "__len__") and pd.isna(v)) else list(v)

    stages, devices = values("stage_busy_s"), values("device_busy_s")
    if len(devices) < 2 or not stages or max(devices) <= 0:
        return None
    return sum(stages) / max(devices)


def epoch_time_figure(part: pd.DataFrame, title: str):
    """Bars of epoch time in minutes: a panel per batch size, device count on x, one colour per method.

    The legend is drawn beside the panels and the figure widened by its width:
    seaborn's own legend squeezes the panels instead, and fails (`left cannot be
    >= right`) when the legend is wider than a figure sized for one x value.
    """
    ok = part[(part["status"] == "ok") & part["epoch_time_s"].notna()].copy()
    ok["epoch_time_min"] = ok["epoch_time_s"] / 60.0
    methods = sorted(ok["method"].unique(), key=lambda m: (report_rank(m), m))
    grid = sns.catplot(data=ok, kind="bar", x="devices", y="epoch_time_min", hue="method", hue_order=methods,
                       palette=_palette(methods), col="batch_size", errorbar="sd", capsize=0.1,
                       sharey=False, height=3.2, aspect=0.9, legend=False)
    grid.set_axis_labels("devices", "time per epoch (min)")
    grid.set_titles("batch {col_name}")
    fig = grid.figure
    fig.suptitle(title, fontsize=10)
    handles = [Patch(facecolor=method_colour(m), label=m) for m in methods]
    legend_beside(fig, handles, "method", top=0.92)  # room for the title: never clipped
    return fig


def speedup_figure(part: pd.DataFrame, title: str):
    """Speedup over BP on 1 device against batch size, with the ideals; None when no BP baseline exists."""
    ok = with_speedup(part).dropna(subset=["speedup"])
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(data=ok, x="batch_size", y="speedup", hue="method", style="devices", markers=True,
                 palette=_palette(ok["method"].unique()), errorbar="sd", err_style="bars", ax=ax)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    for n in sorted(d for d in ok["devices"].unique() if d > 1):
        ax.axhline(n, color="grey", linewidth=0.8, linestyle=":")
        ax.annotate(f"ideal, {n} devices", (1.0, n), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", fontsize=8, color="grey")
    ideals = ok.assign(ideal=[balance_ideal(r) for _, r in ok.iterrows()]).dropna(subset=["ideal"])
    for (method, devices), rows in ideals.groupby(["method", "devices"]):
        means = rows.groupby("batch_size")["ideal"].mean()
        ax.plot(means.index, means.values, linestyle=":", marker="x", color=method_colour(method), linewidth=1,
                label=f"{method} ({devices} dev): balance ideal")
    ax.set_xscale("log", base=2)
    ticks = sorted(ok["batch_size"].unique())
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.set_xlabel("batch size")
    ax.set_ylabel("speedup over BP on 1 device")
    ax.set_title(title, fontsize=10, loc="left", wrap=True)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def fractions_text(row) -> str:
    """`bubble 23 %, overlap 45 %` of a profiled row (empty when it has none)."""
    parts = []
    for name in ("bubble", "overlap"):
        value = row.get(f"{name}_fraction")
        if value is not None and not pd.isna(value):
            parts.append(f"{name} {100 * value:.0f} %")
    return ", ".join(parts)


def _timeline_panels(part: pd.DataFrame, results_dir: Path) -> list[TimelinePanel]:
    """The panels of one batch size's profiled rows (first trial of each method x devices) whose traces exist."""
    panels = []
    first = part.sort_values("trial").drop_duplicates(["method", "devices"])
    for row in first.sort_values(["devices", "method"]).itertuples():
        folder = Path(row.trace_dir)
        folder = folder if folder.is_absolute() else Path(results_dir) / folder
        if not find_trace_files(folder):
            continue  # traces deleted or results copied without them
        try:
            lanes = trace_lanes(base_method(row.method), list(row.balance))  # library ranks: a lane each
        except UnknownMethodError:  # results of a method no longer registered: one row per stage
            lanes = None
        fractions = fractions_text(row._asdict())
        title = method_label(row.method, row.devices, short=True) + (f" ({fractions})" if fractions else "")
        panels.append(TimelinePanel(title, load_trace_dir(folder), lanes))
    return panels


def timeline_figures(frame: pd.DataFrame, results_dir: Path, out_dir: Path,
                     log: Optional[FigureLog] = None) -> list[Path]:
    """One timeline figure per model/dataset/batch size with profiled cells (first trial of each)."""
    if "trace_dir" not in frame.columns:
        return []
    log = log if log is not None else FigureLog()
    profiled = frame[(frame["status"] == "ok") & frame["trace_dir"].notna()]
    written: list[Path] = []
    for (model, dataset, batch), part in profiled.groupby(["model", "dataset", "batch_size"], sort=True):
        def draw(part: pd.DataFrame = part):
            panels = _timeline_panels(part, results_dir)
            return timeline_figure(panels) if panels else None

        written += log.save(out_dir / f"timeline_{_stem(model, dataset)}_b{batch}", draw)
    return written


def write_figures(results_dir: Path, frame: pd.DataFrame, out_dir: Optional[Path] = None,
                  log: Optional[FigureLog] = None) -> list[Path]:
    """Every figure of a results folder; returns the files written.

    A figure that fails is recorded in `log` (and on stderr) and the others are still drawn.
    """
    out_dir = Path(out_dir) if out_dir is not None else plots_dir(results_dir)
    log = log if log is not None else FigureLog()
    written: list[Path] = []
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=True):
        if not ((part["status"] == "ok") & part["epoch_time_s"].notna()).any():
            continue
        kinds = sorted(part["data_kind"].dropna().unique())
        title = f"{model} on {dataset}" + (" (SYNTHETIC data)" if "synthetic" in kinds else "")
        stem = _stem(model, dataset)
        written += log.save(out_dir / f"epoch_time_{stem}", lambda: epoch_time_figure(part, title))
        written += log.save(out_dir / f"speedup_{stem}", lambda: speedup_figure(part, title))
    written += timeline_figures(frame, results_dir, out_dir, log)
    return written
