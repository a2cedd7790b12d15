"""Figures of training runs: learning curves and accuracy against speed.

Per model/dataset pair (and batch size, where a grid has several):
- `curves_<model>_<dataset>[_b<batch>].png|svg`: test accuracy against training
  wall-clock (left) and against epoch (right), one line per method x devices
  (colour = method, as in every figure of bench/report/figures.py; line style =
  devices).  Lines are the mean over trials at each evaluated epoch, the band
  their spread (± one std; none with one trial).  On the wall-clock panel a
  point sits at the trials' mean wall_s of that epoch.
- `acc_speed_<model>_<dataset>[_b<batch>].png|svg`: one point per method x
  devices, y = final test accuracy, x = time per epoch (left) and time to a
  test-accuracy target (right; bench/report/tta.py, "95 % of BP" when there is
  one), error bars = std over trials.  Runs that never reached the target are
  listed under the panel instead of being drawn: "not reached" is not a time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.report.figure_guard import FigureLog  # noqa: E402
from bench.report.method_facts import method_colour, method_label  # noqa: E402

__all__ = ["PREFERRED_TARGET", "curve_stats", "learning_curve_figure", "acc_speed_figure", "write_curves_figures"]

PREFERRED_TARGET = "95 % of BP"
_STYLES = ["-", "--", ":", "-."]


def _stem(model: str, dataset: str) -> str:
    return f"{model}_{dataset.replace('@', '-')}"


def curve_stats(curves: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """Per method x devices x evaluated epoch: mean wall_s, mean and std (0 for one trial) of `column` in %."""
    evaluated = curves[curves[column].notna()] if column in curves else curves.iloc[0:0]
    if evaluated.empty:
        return pd.DataFrame()
    evaluated = evaluated.assign(acc=100 * evaluated[column].astype(float))
    grouped = evaluated.groupby(["method", "devices", "epoch"])
    stats = grouped.agg(wall_s=("wall_s", "mean"), mean=("acc", "mean"), std=("acc", "std"),
                        trials=("acc", "size")).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def learning_curve_figure(curves: pd.DataFrame, title: str):
    """Test accuracy against wall-clock and epoch; None when no epoch was evaluated."""
    stats = curve_stats(curves)
    if stats.empty:
        return None
    device_counts = sorted(stats["devices"].unique())
    minutes = stats["wall_s"].max() >= 120
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for (method, devices), line in stats.groupby(["method", "devices"], sort=True):
        line = line.sort_values("epoch")
        style = _STYLES[device_counts.index(devices) % len(_STYLES)]
        colour = method_colour(method)
        for ax, x in ((axes[0], line["wall_s"] / (60 if minutes else 1)), (axes[1], line["epoch"])):
            ax.plot(x, line["mean"], linestyle=style, marker="o", markersize=3, color=colour,
                    label=method_label(method, devices, short=True))
            ax.fill_between(x, line["mean"] - line["std"], line["mean"] + line["std"], color=colour, alpha=0.2,
                            linewidth=0)
    axes[0].set_xlabel(f"training wall-clock ({'min' if minutes else 's'}, evaluation excluded)")
    axes[1].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    trials = int(stats["trials"].max())
    fig.suptitle(f"{title}: test accuracy, mean over {trials} trial(s), band ± 1 std", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # room for the title: never clipped
    return fig


def _target_times(tta: pd.DataFrame) -> tuple[Optional[str], pd.DataFrame]:
    """The test-accuracy target the right panel uses, and per run its time (NaN = not reached)."""
    test = tta[tta["metric"] == "test"] if not tta.empty else tta
    if test.empty:
        return None, pd.DataFrame()
    targets = list(dict.fromkeys(test["target"]))
    target = PREFERRED_TARGET if PREFERRED_TARGET in targets else targets[0]
    return target, test[test["target"] == target]


def acc_speed_figure(rows: pd.DataFrame, tta: pd.DataFrame, title: str):
    """Final test accuracy against epoch time and time to a target, one point per method x devices; None if empty."""
    ok = rows[(rows["status"] == "ok") & rows["test_acc"].notna() & rows["epoch_time_s"].notna()]
    if ok.empty:
        return None
    target, times = _target_times(tta)
    fig, axes = plt.subplots(1, 2 if target else 1, figsize=(11 if target else 6.5, 4.4), squeeze=False, sharey=True)
    axes = axes[0]
    missed = []
    for (method, devices), part in ok.groupby(["method", "devices"], sort=True):
        acc = 100 * part["test_acc"]
        colour, label = method_colour(method), method_label(method, devices, short=True)
        axes[0].errorbar(part["epoch_time_s"].mean(), acc.mean(), xerr=part["epoch_time_s"].std(), yerr=acc.std(),
                         fmt="o", color=colour, capsize=3, label=label)
        axes[0].annotate(label, (part["epoch_time_s"].mean(), acc.mean()), xytext=(4, 4),
                         textcoords="offset points", fontsize=7)
        if target:
            mine = times[(times["method"] == method) & (times["devices"] == devices)]
            if mine.empty:
                continue
            if not mine["reached"].all():
                missed.append(f"{label}: {int((~mine['reached']).sum())}/{len(mine)} trial(s)")
                continue
            x = mine["time_s"].mean()
            axes[1].errorbar(x, acc.mean(), xerr=mine["time_s"].std(), yerr=acc.std(), fmt="o", color=colour,
                             capsize=3, label=label)
            axes[1].annotate(label, (x, acc.mean()), xytext=(4, 4), textcoords="offset points", fontsize=7)
    axes[0].set_xlabel("time per epoch (s)")
    axes[0].set_ylabel("final test accuracy (%)")
    if target:
        axes[1].set_xlabel(f"time to test accuracy {target} (s, upper bound)")
        if missed:
            axes[1].text(0.0, -0.2, "not reached: " + "; ".join(missed), transform=axes[1].transAxes, fontsize=7,
                         va="top", wrap=True)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
    fig.suptitle(f"{title}: accuracy against speed (mean ± std over trials)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if missed else 0, 1, 0.94))
    return fig


def _title(rows: pd.DataFrame, model: str, dataset: str) -> str:
    synthetic = "data_kind" in rows and (rows["data_kind"] == "synthetic").any()
    return f"{model} on {dataset}" + (" (SYNTHETIC data)" if synthetic else "")


def write_curves_figures(frame: pd.DataFrame, curves: pd.DataFrame, tta: pd.DataFrame, out_dir: Path,
                         log: Optional[FigureLog] = None) -> list[Path]:
    """Learning curves and accuracy-vs-speed figures of every model/dataset (/batch) with curves; files written.

    A figure that fails is recorded in `log` (and on stderr) and the others are still drawn.
    """
    if curves.empty:
        return []
    log = log if log is not None else FigureLog()
    written: list[Path] = []
    measured = frame[frame["epoch_time_kind"] == "measured"] if "epoch_time_kind" in frame else frame.iloc[0:0]
    for (model, dataset), part in curves.groupby(["model", "dataset"], sort=True):
        batches = sorted(part["batch_size"].unique())
        for batch in batches:
            stem = _stem(model, dataset) + (f"_b{batch}" if len(batches) > 1 else "")
            rows = measured[(measured["model"] == model) & (measured["dataset"] == dataset)
                            & (measured["batch_size"] == batch)]
            title = _title(rows, model, dataset) + (f", batch {batch}" if len(batches) > 1 else "")
            written += log.save(Path(out_dir) / f"curves_{stem}",
                                lambda: learning_curve_figure(part[part["batch_size"] == batch], title))
            mine = tta
            if not tta.empty:
                mine = tta[(tta["model"] == model) & (tta["dataset"] == dataset) & (tta["batch_size"] == batch)]
            written += log.save(Path(out_dir) / f"acc_speed_{stem}",
                                lambda: acc_speed_figure(rows, mine, title) if not rows.empty else None)
    return written
