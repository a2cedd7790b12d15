"""Tables from results.parquet, in the form of the SCPL paper's Tables 2 and 3.

    python -m bench.report results/<grid>

Speedup of a method = BP's epoch time on 1 device / the method's epoch time, at
the same model, dataset and batch size (BP's absolute time in parentheses).
Written as markdown and CSV next to the parquet.  The caption says whether the
data was synthetic and whether epochs were measured or extrapolated.  Beside
them: `paper_<item>.md/.csv` for each item of the SCPL paper the results cover
(bench/report/paper.py, docs/PAPER.md), for training runs (curves.parquet) the
time to accuracy and its speedup over BP (`tta*.md/.csv`, bench/report/tta.py),
the paper's accuracy table form per dataset (`accuracy_paper_<dataset>.*`,
bench/report/accuracy_tables.py) and `report.html`, one self-contained page of
everything (bench/report/page.py).  `python -m bench.report` prints every table;
a run (`run_matrix.py`) prints only the short summary of bench/report/console.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.accuracy_tables import write_accuracy_tables
from bench.report.baseline import is_baseline, with_bp_baseline
from bench.report.console import console_summary, where_line
from bench.report.figure_guard import FigureLog
from bench.report.health_report import (
    DID_NOT_LEARN_MARK,
    baseline_did_not_learn,
    did_not_learn,
    health_block,
    under_block,
    with_health,
)
from bench.report.method_facts import method_label, report_rank
from bench.report.page import write_page
from bench.report.paper import write_paper_comparisons
from bench.report.tta import curves_with_rows, load_curves, write_tta
from bench.report.variants import label_variants
from bench.store.layout import StoreError
from bench.store.read import read_results

__all__ = ["speedup_table", "accuracy_table", "write_report", "write_report_files", "WrittenReport",
           "markdown_table"]


def _format_seconds(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def speedup_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows "method (N devices)", columns batch size, cells "1.23x" (BP on 1 device: "1x (time)").

    `frame` holds the rows of one model/dataset pair; trials are averaged.  The
    baseline of each row is chosen by bench/report/baseline.py.  A run whose
    `health` says it did not learn keeps its number (a time per epoch is the
    time of the same work, learned or not) with "did not learn" beside it.
    """
    ok = with_bp_baseline(frame)
    grouped = ok.groupby(["method", "devices", "batch_size"])
    epochs, bases = grouped["epoch_time_s"].mean(), grouped["bp_epoch_time_s"].mean()
    unlearned = (grouped["health"].agg(lambda flags: any(did_not_learn(f) for f in flags)) if "health" in ok
                 else pd.Series(dtype=bool))
    batch_sizes = sorted(ok["batch_size"].unique())
    rows = sorted({(m, d) for m, d, _ in epochs.index}, key=lambda md: (report_rank(md[0]), md[1]))
    table = {}
    for method, devices in rows:
        label = method_label(method, devices)
        cells = []
        for b in batch_sizes:
            base = bases.get((method, devices, b))
            mine = epochs.get((method, devices, b))
            mark = f"; {DID_NOT_LEARN_MARK}" if unlearned.get((method, devices, b), False) else ""
            if mine is None or pd.isna(mine):
                cells.append("–")
            elif is_baseline(method, devices):
                cells.append(f"1x ({_format_seconds(mine)}{mark})")
            elif base is None or pd.isna(base):
                cells.append(f"({_format_seconds(mine)}; no BP baseline{mark})")
            else:
                cells.append(f"{base / mine:.2f}x" + (f" ({DID_NOT_LEARN_MARK})" if mark else ""))
        table[label] = cells
    return pd.DataFrame.from_dict(table, orient="index", columns=[f"batch {b}" for b in batch_sizes])


def accuracy_table(frame: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Accuracy `metric` mean ± std over trials, rows method × devices × batch size, columns model/dataset.

    `metric`: "test_acc" (final head), "test_acc_val_selected" or "test_acc_best" (bench/cell/model_selection.py).
    """
    ok = frame[frame["status"] == "ok"].copy()
    if metric not in ok or ok[metric].isna().all():
        return pd.DataFrame()
    ok["column"] = ok["model"] + " / " + ok["dataset"]
    grouped = ok.groupby(["method", "devices", "batch_size", "column"])[metric]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats["text"] = stats.apply(
        lambda r: f"{100 * r['mean']:.2f} ± {100 * (0 if pd.isna(r['std']) else r['std']):.2f} (n={r['count']})", axis=1
    )
    table = stats.pivot(index=["method", "devices", "batch_size"], columns="column", values="text").fillna("–")
    return table.sort_index(key=lambda idx: idx.map(report_rank) if idx.name == "method" else idx)


def exits_tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Early exits (Early Exit, DASCPL): accuracy, time and parameters per exit; accuracy vs depth per policy.

    Means over trials, one row per method / model / dataset / batch size (and exit or policy).
    """
    ok = frame[(frame["status"] == "ok") & frame["exit_acc"].map(lambda a: a is not None and len(a) > 0)]
    keys = ["method", "model", "dataset", "batch_size"]
    per_exit, per_policy = [], []
    for row in ok.itertuples():
        base = {k: getattr(row, k) for k in keys}
        for k, acc in enumerate(row.exit_acc):
            per_exit.append({**base, "exit": k + 1, "accuracy %": 100 * acc,
                             "time ms/sample": 1000 * row.exit_time_s[k] if len(row.exit_time_s) > k else None,
                             "parameters": row.exit_params[k] if len(row.exit_params) > k else None})
        for k, policy in enumerate(row.exit_policy):
            per_policy.append({**base, "policy": policy, "accuracy %": 100 * row.exit_policy_acc[k],
                               "mean depth": row.exit_policy_depth[k],
                               "time ms/sample": 1000 * row.exit_policy_time_s[k]})
    exits = pd.DataFrame(per_exit)
    policies = pd.DataFrame(per_policy)
    if not exits.empty:
        exits = exits.groupby(keys + ["exit"]).mean(numeric_only=True).round(3)
    if not policies.empty:
        policies = policies.groupby(keys + ["policy"], sort=False).mean(numeric_only=True).round(3)
    return exits, policies


def markdown_table(table: pd.DataFrame, index_name: str = "") -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    header = [index_name] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in table.iterrows():
        label = " ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
        lines.append("| " + " | ".join([label] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def _caption(frame: pd.DataFrame, model: str, dataset: str) -> str:
    kinds = sorted(frame["data_kind"].dropna().unique())
    epoch_kinds = sorted(frame["epoch_time_kind"].dropna().unique())
    steps = "/".join(str(int(n)) for n in sorted(frame["timed_steps"].dropna().unique()))
    devices = sorted({n for names in frame["device_names"].dropna() for n in names})
    parts = [f"Speedup of training time per epoch over BP on 1 device at the same batch size; {model} on {dataset}."]
    if "synthetic" in kinds:
        parts.append("SYNTHETIC data (a twin with the real dataset's shapes, not the real dataset).")
    if "extrapolated" in epoch_kinds:
        parts.append(f"Epoch times EXTRAPOLATED from median step time over {steps} timed steps x steps per epoch.")
    threads = "/".join(str(int(n)) for n in sorted(frame["threads_per_device"].dropna().unique()))
    parts.append(f"Devices: {', '.join(devices) or 'n/a'} ({threads or '?'} intra-op thread(s) per device); "
                 f"mean over {frame['trial'].nunique()} trial(s).")
    if frame["oversubscribed"].fillna(False).any():
        parts.append("Some cells used more threads than cores (oversubscribed).")
    return " ".join(parts)


def _unlearned_baseline_note(frame: pd.DataFrame) -> str:
    """A line under a speedup table whose BP baseline did not learn: why the ratios stay, what they mean."""
    batches = [b for b in sorted(frame["batch_size"].unique()) if baseline_did_not_learn(frame, [("batch_size", b)])]
    if not batches:
        return ""
    return (f"\nNote: BP on 1 device did NOT LEARN at batch {', '.join(map(str, batches))} (training health): its "
            "epoch time is still the time of the same work, so these ratios compare time per epoch only; no accuracy "
            "comes with them, and no time to accuracy is measured against it.\n")


def _plots_dir(results_dir: Path) -> Path:
    from bench.report.figures import plots_dir  # matplotlib/seaborn: only when a report is written

    return plots_dir(results_dir)


def _write_all_figures(results_dir: Path, frame: pd.DataFrame, curves: pd.DataFrame,
                       tta: pd.DataFrame) -> tuple[list[Path], FigureLog]:
    """Every figure, each failure recorded instead of raised: figures never cost the tables or the run."""
    log = FigureLog()

    def speed_figures() -> list[Path]:
        from bench.report.figures import write_figures

        return write_figures(results_dir, frame, log=log)

    def curve_figures() -> list[Path]:
        from bench.report.curves_figures import write_curves_figures

        return write_curves_figures(frame, curves, tta, _plots_dir(results_dir), log=log)

    figures = log.attempt("speed figures", speed_figures)  # what fails outside any one figure (an import)
    figures += log.attempt("training-curve figures", curve_figures)
    return figures, log


def _predicted_section(results_dir: Path, frame: pd.DataFrame, sections: list, log: FigureLog) -> list[Path]:
    """bench.predict beside what was measured (bench/report/predicted.py); a failure is logged, never raised."""
    from bench.report.predicted import predicted_vs_measured

    def draw() -> list[Path]:
        text, drawn = predicted_vs_measured(results_dir, frame, _plots_dir(results_dir), log)
        if text:
            sections.append(("Predicted vs measured", text))
        return drawn

    return log.attempt("predicted vs measured", draw)


@dataclass(frozen=True)
class WrittenReport:
    """What `write_report_files` wrote: every table as markdown, and the short summary a run ends with."""

    markdown: str  # what `python -m bench.report` prints
    console: str  # speedup tables, health, where the rest is (bench/report/console.py)


def write_report(results_dir: Path) -> str:
    """Write every table (.md and .csv), the paper comparisons, the figures and report.html; return the markdown."""
    return write_report_files(results_dir).markdown


def write_report_files(results_dir: Path) -> WrittenReport:
    """Write every table (.md and .csv), the paper comparisons, the figures and report.html.

    Returns the whole markdown and the console summary (bench/report/console.py).
    """
    results_dir = Path(results_dir)
    frame = label_variants(read_results(results_dir))
    if frame.empty:
        return WrittenReport(f"no results in {results_dir}", f"no results in {results_dir}")
    out, sections = [], []
    speedups, accuracy_comparisons, notes = [], [], []
    try:
        stored_curves = load_curves(results_dir)
    except (StoreError, OSError, ValueError) as exc:  # a broken curves file must not cost the other tables
        stored_curves = pd.DataFrame()
        out.append(f"training curves not read: {exc}")
        notes.append(out[-1])
    # every run's training health (bench/report/health_report.py): one block on top, one per table file
    frame = with_health(frame, stored_curves)
    health = health_block(frame)
    if health:
        out.insert(0, health)
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=True):
        table = speedup_table(part)
        if table.empty:
            continue
        stem = f"speedup_{model}_{dataset.replace('@', '-')}"
        table.to_csv(results_dir / f"{stem}.csv")
        text = (f"**{_caption(part[part['status'] == 'ok'], model, dataset)}**\n\n{markdown_table(table, 'method')}\n"
                + _unlearned_baseline_note(part))
        (results_dir / f"{stem}.md").write_text(under_block(health_block(part), text))
        out.append(text)
        speedups.append(text)
        sections.append((f"Speedup: {model} on {dataset}", text))
    curves = curves_with_rows(stored_curves, frame)
    tta_sections, tta = write_tta(results_dir, frame, curves)
    for heading, text in tta_sections:
        sections.append((heading, text))  # beside the per-epoch speedup tables
        if heading.startswith("Time-to-accuracy speedup"):
            out.append(text)
    if tta_sections:
        out.append(f"time to accuracy of every run: {results_dir / 'tta.md'}")
    acc = accuracy_table(frame)
    if not acc.empty:
        acc.to_csv(results_dir / "accuracy.csv")
        text = "**Test accuracy (%) of the final head, mean ± std over trials.**\n\n" + markdown_table(acc, "method devices batch") + "\n"
        selected = frame["eval_steps"].map(lambda s: s is not None and len(s) > 1) if "eval_steps" in frame else None
        if selected is not None and selected.any():
            for metric, title in (
                ("test_acc_val_selected", "Test accuracy (%) of the checkpoint with the best validation accuracy"),
                ("test_acc_best", "Best test accuracy (%) over checkpoints: selected on the test set as the "
                                  "references do, optimistic"),
            ):
                table = accuracy_table(frame[selected], metric)
                table.to_csv(results_dir / f"accuracy_{metric}.csv")
                text += f"\n**{title}, mean ± std over trials.**\n\n" + markdown_table(table, "method devices batch") + "\n"
        (results_dir / "accuracy.md").write_text(under_block(health, text))
        out.append(text)
        sections.append(("Accuracy", text))
    for heading, text in write_accuracy_tables(results_dir, frame):
        out.append(text)
        sections.append((heading, text))
    exits, policies = exits_tables(frame)
    if not exits.empty:
        text = ("**Early exits: accuracy, time to the exit's prediction and parameters used, per exit.**\n\n"
                + markdown_table(exits, " ".join(exits.index.names)) + "\n")
        exits.to_csv(results_dir / "exits.csv")
        if not policies.empty:
            policies.to_csv(results_dir / "exit_policies.csv")
            text += ("\n**Exit policies: accuracy vs mean depth and time per sample.**\n\n"
                     + markdown_table(policies, " ".join(policies.index.names)) + "\n")
        (results_dir / "exits.md").write_text(text)
        out.append(text)
        sections.append(("Early exits", text))
    for comparison in write_paper_comparisons(results_dir, frame):
        out.append(comparison.markdown)
        if comparison.item.kind == "accuracy":
            accuracy_comparisons.append(comparison.markdown)
        sections.append((f"Paper beside measured: {comparison.item.title}", comparison.markdown))
    failed = frame[frame["status"] != "ok"]
    if not failed.empty:
        out.append(f"{len(failed)} cell(s) did not finish: " + "; ".join(
            f"{r.method}/{r.model}/b{r.batch_size}/d{r.devices}: {r.status}" for r in failed.itertuples()))
    figures, log = _write_all_figures(results_dir, frame, curves, tta)
    figures += _predicted_section(results_dir, frame, sections, log)
    if figures:
        out.append(f"{len(figures)} figure file(s) in {_plots_dir(results_dir)} (docs/PROFILING.md)")
    if log.failures:
        out.append(log.markdown())
        notes.append(log.markdown())
    page = write_page(results_dir, frame, sections, figures, figure_failures=[str(f) for f in log.failures],
                      health=health)
    out.append(f"report page: {page}")
    where = where_line(results_dir, page, figures, _plots_dir(results_dir))
    return WrittenReport("\n".join(out), console_summary(speedups, accuracy_comparisons, frame, notes, where, health))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.report results/<grid>", file=sys.stderr)
        return 2
    results_dir = Path(argv[1])
    # results.parquet, or the per-attempt parquet fragments bench/store writes beside it
    if not results_dir.is_dir() or not any(results_dir.rglob("*.parquet")):
        print(f"error: no results in {results_dir} (results.parquet not found); "
              f"run `python run_matrix.py --grid NAME` first", file=sys.stderr)
        return 2
    from bench.store.layout import StoreError

    try:
        print(write_report(results_dir))
    except StoreError as exc:  # a corrupt results file: its name and what to do, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
