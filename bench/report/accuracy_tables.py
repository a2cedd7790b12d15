"""Accuracy in the form of the SCPL paper's Tables 4-8: one table per dataset, methods x models.

Rows in the paper's order (BP, Early Exit, AL, SCPL), then the methods the paper
does not have (DASCPL, ContSup, ...); columns the models; cells mean ± std of
the test accuracy over trials, in %.  Marks, as the paper uses them:

- bold: the best method that does not compute BP's gradient (BP, GPipe and DDP
  do) and every such method not significantly different from it: Welch's
  t-test (`scipy.stats.ttest_ind(equal_var=False)`), p >= 0.05.  A test needs
  two trials on each side; with fewer only the best is bold and a note says so.
- dagger: the method's mean is above BP's (BP on 1 device, same model).

Written as markdown (`accuracy_paper_<dataset>.md`), LaTeX ready to paste
(`.tex`: booktabs, \\textbf, $\\dagger$) and CSV of numbers (mean, std, n, bold,
dagger, p-value), for the final head's `test_acc` and, when the rows have it,
`test_acc_val_selected` (`..._val_selected.*`, bench/cell/model_selection.py).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bench.report.baseline import baseline_rows
from bench.report.health_report import health_block, under_block
from bench.report.method_facts import display_name, paper_rank, uses_bp_gradient

__all__ = ["ALPHA", "METRICS", "accuracy_stats", "mark_significance",
           "markdown_accuracy", "latex_escape", "latex_accuracy", "write_accuracy_tables"]

ALPHA = 0.05
METRICS = {"test_acc": ("", "test accuracy of the final head"),
           "test_acc_val_selected": ("_val_selected", "test accuracy of the checkpoint with the best validation "
                                                      "accuracy")}
def accuracy_stats(rows: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Mean, std (in %), n and the trials' values per model x method x devices (x batch size where it varies).

    `rows` are the result rows of one dataset; only ok rows with the metric count.
    """
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()] if metric in rows else rows.iloc[0:0]
    if ok.empty:
        return pd.DataFrame()
    per_batch = ok.groupby(["model", "method", "devices"])["batch_size"].nunique().max() > 1
    keys = ["model", "method", "devices"] + (["batch_size"] if per_batch else [])
    records = []
    for key, part in ok.groupby(keys, sort=False):
        values = 100 * part[metric].to_numpy(dtype=float)
        record = dict(zip(keys, key))
        record.update(batch_size=int(part["batch_size"].iloc[0]) if not per_batch else record["batch_size"],
                      mean=float(values.mean()), std=float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                      n=len(values), values=list(values))
        records.append(record)
    out = pd.DataFrame(records)
    several_devices = out["devices"].nunique() > 1
    out["label"] = [display_name(r.method) + (f" ({r.devices} dev)" if several_devices else "")
                    + (f" b{r.batch_size}" if per_batch else "") for r in out.itertuples()]
    out["_rank"] = out["method"].map(paper_rank)
    out = out.sort_values(["_rank", "method", "devices", "batch_size"]).drop(columns="_rank")
    return out.reset_index(drop=True)


def _welch_p(a: list, b: list) -> float:
    """Welch's two-sided p-value; two constant samples are equal (p = 1) or certainly apart (p = 0)."""
    p = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
    if math.isnan(p):
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(p)


def mark_significance(stats: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Add bold, dagger, p_value (vs the column's best) and bp_mean; per model (and batch size); with notes."""
    stats = stats.copy()
    stats["bold"], stats["dagger"] = False, False
    stats["p_value"], stats["bp_mean"] = np.nan, np.nan
    untested = False
    per_batch = stats.groupby(["model", "method", "devices"]).size().max() > 1  # batch is part of the row key
    groups = ["model"] + (["batch_size"] if per_batch else [])
    for _, part in stats.groupby(groups, sort=False):
        bp = baseline_rows(part)
        bp_mean = float(np.mean([v for vs in bp["values"] for v in vs])) if not bp.empty else np.nan
        stats.loc[part.index, "bp_mean"] = bp_mean
        rivals = part[~part["method"].map(uses_bp_gradient).astype(bool)]  # BP's gradient: never bold
        if not math.isnan(bp_mean):
            stats.loc[rivals.index, "dagger"] = rivals["mean"] > bp_mean + 1e-9
        if rivals.empty:
            continue
        best = rivals.loc[rivals["mean"].idxmax()]
        for index, row in rivals.iterrows():
            if index == best.name:
                stats.loc[index, "bold"] = True
            elif row["n"] >= 2 and best["n"] >= 2:
                p = _welch_p(best["values"], row["values"])
                stats.loc[index, ["p_value", "bold"]] = [p, p >= ALPHA]
            else:
                untested = True
                stats.loc[index, "bold"] = bool(row["mean"] == best["mean"])
    notes = [f"Bold: the best method that does not compute BP's gradient and those not significantly different "
             f"from it (Welch's t-test, p ≥ {ALPHA}); † mean above BP's on 1 device."]
    if per_batch:
        notes.append("Bold and † compare rows of the same model and batch size.")
    if untested:
        notes.append("Some methods have fewer than 2 trials (or are compared with one that has): no significance "
                     "test for them, only the best is bold.")
    return stats, notes


def _cell(row: Optional[pd.Series], max_n: int, latex: bool) -> str:
    if row is None:
        return "--" if latex else "–"
    pm = " $\\pm$ " if latex else " ± "
    text = f"{row['mean']:.2f}" + ("" if math.isnan(row["std"]) else f"{pm}{row['std']:.2f}")
    if row["n"] < max_n:
        text += f" (n={row['n']})"
    if row["bold"]:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    if row["dagger"]:
        text += "$^\\dagger$" if latex else " †"
    return text


def _grid(stats: pd.DataFrame, latex: bool) -> tuple[list[str], list[tuple[str, list[str]]]]:
    models = list(dict.fromkeys(sorted(stats["model"])))
    max_n = int(stats["n"].max())
    rows = []
    for label in dict.fromkeys(stats["label"]):
        mine = stats[stats["label"] == label].set_index("model")
        rows.append((label, [_cell(mine.loc[m] if m in mine.index else None, max_n, latex) for m in models]))
    return models, rows


def markdown_accuracy(stats: pd.DataFrame, caption: str, notes: list[str]) -> str:
    """The table as markdown: a bold caption, the pipe table, the notes."""
    models, rows = _grid(stats, latex=False)
    lines = [f"**{caption}**", "", "| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    lines += ["| " + " | ".join([label] + cells) + " |" for label, cells in rows]
    return "\n".join(lines + [""] + notes) + "\n"


def latex_escape(text: str) -> str:
    """Text safe in LaTeX: the ten special characters escaped (`vgg_8` -> `vgg\\_8`)."""
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(specials.get(c, c) for c in str(text))


def latex_accuracy(stats: pd.DataFrame, caption: str, notes: list[str], label: str) -> str:
    """The table as a LaTeX table environment (needs \\usepackage{booktabs})."""
    models, rows = _grid(stats, latex=True)
    body = [" & ".join([latex_escape(name)] + cells) + r" \\" for name, cells in rows]

    def tex(text: str) -> str:  # the markdown's symbols in math mode (pdflatex has no unicode ±)
        return latex_escape(text).replace("†", r"$\dagger$").replace("≥", r"$\geq$").replace("±", r"$\pm$")

    notes_tex = " ".join(tex(n) for n in notes)
    return "\n".join([
        "% generated by scplbench (bench/report/accuracy_tables.py); needs \\usepackage{booktabs}",
        r"\begin{table}[t]", r"\centering",
        f"\\caption{{{tex(caption)} {notes_tex}}}", f"\\label{{{latex_escape(label)}}}",
        r"\begin{tabular}{l" + "c" * len(models) + "}", r"\toprule",
        " & ".join(["Method"] + [latex_escape(m) for m in models]) + r" \\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def write_accuracy_tables(results_dir: Path, frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Write accuracy_paper_<dataset>[_val_selected].md/.tex/.csv; return (heading, markdown) sections."""
    results_dir = Path(results_dir)
    sections = []
    for dataset, rows in frame.groupby("dataset", sort=True):
        stem = f"accuracy_paper_{str(dataset).replace('@', '-')}"
        synthetic = "data_kind" in rows and (rows["data_kind"] == "synthetic").any()
        for metric, (suffix, what) in METRICS.items():
            stats = accuracy_stats(rows, metric)
            if stats.empty:
                continue
            stats, notes = mark_significance(stats)
            caption = (f"Accuracy (%) on {dataset}: {what}, mean ± std over trials"
                       + (" (SYNTHETIC data)." if synthetic else "."))
            markdown = markdown_accuracy(stats, caption, notes)
            block = health_block(rows)  # the runs of this dataset flagged by training health, on top of the file
            (results_dir / f"{stem}{suffix}.md").write_text(under_block(block, markdown))
            (results_dir / f"{stem}{suffix}.tex").write_text(
                latex_accuracy(stats, caption, notes, f"tab:acc-{dataset}{suffix}"))
            columns = ["model", "method", "label", "devices", "batch_size", "mean", "std", "n", "bold", "dagger",
                       "p_value", "bp_mean"]
            stats[columns].assign(dataset=dataset, metric=metric).to_csv(results_dir / f"{stem}{suffix}.csv",
                                                                         index=False)
            sections.append((f"Accuracy, the paper's table form: {dataset}" + (" (validation-selected)" if suffix
                                                                               else ""), markdown))
    return sections
