"""Tables from results.parquet, in the form of the SCPL paper's Tables 2 and 3.

    python -m bench.report results/<grid>

Speedup of a method = BP's epoch time on 1 device / the method's epoch time, at
the same model, dataset and batch size (BP's absolute time in parentheses).
Written as markdown and CSV next to the parquet.  The caption says whether the
data was synthetic and whether epochs were measured or extrapolated.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .results_store import read_results

__all__ = ["speedup_table", "accuracy_table", "write_report", "markdown_table"]

METHOD_ORDER = ["bp", "ddp", "gpipe", "gpipe_torchgpipe", "gpipe_dist", "scpl", "scpl_gpipe", "dascpl", "al", "early_exit"]


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _format_seconds(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def speedup_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows "method (N devices)", columns batch size, cells "1.23x" (BP on 1 device: "1x (time)").

    `frame` holds the ok rows of one model/dataset pair; trials are averaged.
    """
    ok = frame[frame["status"] == "ok"]
    epochs = ok.groupby(["method", "devices", "batch_size"])["epoch_time_s"].mean()
    batch_sizes = sorted(ok["batch_size"].unique())
    rows = sorted({(m, d) for m, d, _ in epochs.index}, key=lambda md: (_method_rank(md[0]), md[1]))
    table = {}
    for method, devices in rows:
        label = f"{method.upper() if method == 'bp' else method} ({devices} device{'s' if devices > 1 else ''})"
        cells = []
        for b in batch_sizes:
            base = epochs.get(("bp", 1, b))
            mine = epochs.get((method, devices, b))
            if mine is None or pd.isna(mine):
                cells.append("–")
            elif base is None or pd.isna(base):
                cells.append(f"({_format_seconds(mine)}; no BP baseline)")
            elif method == "bp" and devices == 1:
                cells.append(f"1x ({_format_seconds(base)})")
            else:
                cells.append(f"{base / mine:.2f}x")
        table[label] = cells
    return pd.DataFrame.from_dict(table, orient="index", columns=[f"batch {b}" for b in batch_sizes])


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy mean ± std over trials, rows method × devices × batch size, columns model/dataset."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["column"] = ok["model"] + " / " + ok["dataset"]
    grouped = ok.groupby(["method", "devices", "batch_size", "column"])["test_acc"]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats["text"] = stats.apply(
        lambda r: f"{100 * r['mean']:.2f} ± {100 * (0 if pd.isna(r['std']) else r['std']):.2f} (n={r['count']})", axis=1
    )
    table = stats.pivot(index=["method", "devices", "batch_size"], columns="column", values="text").fillna("–")
    return table.sort_index(key=lambda idx: idx.map(_method_rank) if idx.name == "method" else idx)


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
    parts.append(f"Devices: {', '.join(devices) or 'n/a'}; mean over {frame['trial'].nunique()} trial(s).")
    if frame["oversubscribed"].fillna(False).any():
        parts.append("Some cells used more threads than cores (oversubscribed).")
    return " ".join(parts)


def write_report(results_dir: Path) -> str:
    """Write speedup (and accuracy) tables as .md and .csv next to the parquet; return the markdown."""
    results_dir = Path(results_dir)
    frame = read_results(results_dir)
    if frame.empty:
        return f"no results in {results_dir}"
    out = []
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=True):
        table = speedup_table(part)
        if table.empty:
            continue
        stem = f"speedup_{model}_{dataset.replace('@', '-')}"
        table.to_csv(results_dir / f"{stem}.csv")
        text = f"**{_caption(part[part['status'] == 'ok'], model, dataset)}**\n\n{markdown_table(table, 'method')}\n"
        (results_dir / f"{stem}.md").write_text(text)
        out.append(text)
    acc = accuracy_table(frame)
    if not acc.empty:
        acc.to_csv(results_dir / "accuracy.csv")
        text = "**Test accuracy (%) of the final head, mean ± std over trials.**\n\n" + markdown_table(acc, "method devices batch") + "\n"
        (results_dir / "accuracy.md").write_text(text)
        out.append(text)
    failed = frame[frame["status"] != "ok"]
    if not failed.empty:
        out.append(f"{len(failed)} cell(s) did not finish: " + "; ".join(
            f"{r.method}/{r.model}/b{r.batch_size}/d{r.devices}: {r.status}" for r in failed.itertuples()))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.report results/<grid>", file=sys.stderr)
        return 2
    results_dir = Path(argv[1])
    if not (results_dir / "results.parquet").exists():
        print(f"error: {results_dir}/results.parquet not found; run `python run_matrix.py --grid NAME` first",
              file=sys.stderr)
        return 2
    print(write_report(results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
