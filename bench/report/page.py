"""`results/<grid>/report.html`: one self-contained page of a results folder.

Why one file: it opens from disk, offline, on any machine (figures inlined as
base64 PNG, no scripts, no fonts or styles from the network), so a results
folder can be mailed or archived and still be looked at.  It holds the grid's
description and provenance, every table written as markdown next to the
parquet (speedup, time to accuracy, accuracy, the paper's accuracy table form,
exits, paper beside measured), the bubble and
overlap of every profiled cell with a link to its trace folder and the command
that opens TensorBoard on it, the failed cells with their errors, and every
figure.  Written by `write_report` each time.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from bench import REPO_ROOT

__all__ = ["markdown_to_html", "write_page"]

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.provenance td { text-align: left; }
th { background: #f0f0f0; }
code, pre { background: #f6f6f6; padding: 1px 4px; font-size: 12px; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #a00; font-weight: bold; }
.health { border: 2px solid #a00; background: #fff4f4; padding: 0.2em 1em; margin: 1em 0; }
figure { margin: 1em 0 2em; }
figcaption { font-size: 13px; color: #444; }
"""


def _inline(text: str) -> str:
    """Escape, then the markdown the tables use: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str) -> str:
    """The markdown this package writes (paragraphs, **bold**, pipe tables) as HTML."""
    out: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
                if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", line.strip())]
        head, body = rows[0], rows[1:]
        out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        table.clear()

    for line in markdown.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="–", escape=True)


def _description(grid: str) -> str:
    path = REPO_ROOT / "bench" / "grids" / f"{grid}.yaml"
    if not path.exists():
        return ""
    import yaml

    return str((yaml.safe_load(path.read_text()) or {}).get("description", ""))


def _provenance(frame: pd.DataFrame) -> pd.DataFrame:
    def values(column: str) -> str:
        if column not in frame:
            return "–"
        seen: set[str] = set()
        for v in frame[column].dropna():
            seen |= {str(x) for x in v} if not isinstance(v, str) and hasattr(v, "__len__") else {str(v)}
        if column == "started_at" and seen:
            return f"{min(seen)} … {max(seen)}"
        return ", ".join(sorted(seen)) or "–"

    items = [("grid", "grid"), ("data kind", "data_kind"), ("device kind", "device_kind"),
             ("device names", "device_names"), ("threads per device", "threads_per_device"),
             ("epoch time", "epoch_time_kind"), ("torch", "torch_version"), ("python", "python_version"),
             ("git sha", "git_sha"), ("host", "host"), ("started", "started_at")]
    rows = [(label, values(column)) for label, column in items]
    rows.append(("cells (rows)", f"{frame['cell_id'].nunique()} ({len(frame)}), {int((frame['status'] == 'ok').sum())} ok"))
    return pd.DataFrame(rows, columns=["what", "value"])


def _profiled(frame: pd.DataFrame, results_dir: Path) -> str:
    if "trace_dir" not in frame:
        return ""
    rows = frame[(frame["status"] == "ok") & frame["trace_dir"].notna()]
    if rows.empty:
        return ""
    body = []
    for r in rows.sort_values(["model", "dataset", "batch_size", "devices", "method"]).itertuples():
        folder = Path(r.trace_dir)
        absolute = folder if folder.is_absolute() else (Path(results_dir) / folder).resolve()
        link = folder.as_posix() if not folder.is_absolute() else absolute.as_uri()
        command = f"tensorboard --logdir {absolute} --host 127.0.0.1"
        cells = [r.method, r.model, r.dataset, r.batch_size, r.devices,
                 "–" if pd.isna(r.bubble_fraction) else f"{100 * r.bubble_fraction:.0f} %",
                 "–" if pd.isna(r.overlap_fraction) else f"{100 * r.overlap_fraction:.0f} %",
                 "–" if pd.isna(r.profiler_slowdown) else f"{r.profiler_slowdown:.2f}"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + f'<td><a href="{html.escape(link)}">{html.escape(folder.name)}</a></td>'
                    + f"<td><code>{html.escape(command)}</code></td></tr>")
    head = ["method", "model", "dataset", "batch", "devices", "bubble", "overlap", "profiler slowdown",
            "trace folder", "open in TensorBoard"]
    return ("<h2>Profiled cells: bubble, overlap, traces</h2><p>Bubble: share of device time idle during the "
            "profiled iteration; overlap: share of it with at least two devices busy (docs/PROFILING.md). "
            "Each trace folder is one TensorBoard run (Profile tab); the trace files open in Perfetto too.</p>"
            "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _failed(frame: pd.DataFrame) -> str:
    failed = frame[frame["status"] != "ok"]
    if failed.empty:
        return ""
    table = failed[["method", "model", "dataset", "batch_size", "devices", "trial", "status", "error"]].copy()
    table["error"] = table["error"].fillna("").map(lambda e: e if len(e) < 400 else e[:400] + " …")
    return f"<h2>Failed cells ({len(failed)})</h2>" + _frame_html(table)


def _figure(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = html.escape(Path(path).stem)
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{name}</figcaption></figure>")


def write_page(results_dir: Path, frame: pd.DataFrame, sections: Sequence[tuple[str, str]],
               figures: Sequence[Path], title: Optional[str] = None, figure_failures: Sequence[str] = (),
               health: str = "") -> Path:
    """Write `report.html` in `results_dir`: `sections` are (heading, markdown); PNG `figures` are inlined.

    `health`: the training-health block (markdown, bench/report/health_report.py), shown first.

    `figure_failures`: one line per figure that could not be drawn (bench/report/figure_guard.py), listed
    under the figures so a missing picture is explained where it would have been.
    """
    results_dir = Path(results_dir)
    grid = str(frame["grid"].dropna().iloc[0]) if "grid" in frame and frame["grid"].notna().any() else results_dir.name
    title = title or f"scplbench report: {grid}"
    kinds = set(frame["data_kind"].dropna()) if "data_kind" in frame else set()
    devices = set(frame["device_kind"].dropna()) if "device_kind" in frame else set()
    warning = ""
    if "synthetic" in kinds or "cpu" in devices:
        what = " on ".join(filter(None, ["synthetic data" if "synthetic" in kinds else "",
                                         "CPU devices" if "cpu" in devices else ""]))
        warning = f'<p class="note">Measured with {what}: a check of the harness, not a reproduction of the paper.</p>'
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    description = _description(grid)
    if description:
        parts.append(f"<p>{html.escape(description)}</p>")
    parts.append(warning)
    if health:
        parts.append(f'<div class="health" id="training-health">{markdown_to_html(health)}</div>')
    parts.append("<h2>Provenance</h2>" + _frame_html(_provenance(frame)).replace('class="dataframe"',
                                                                                'class="dataframe provenance"', 1))
    for heading, markdown in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + markdown_to_html(markdown))
    parts.append(_profiled(frame, results_dir))
    parts.append(_failed(frame))
    pngs = [p for p in figures if Path(p).suffix == ".png" and Path(p).exists()]
    if pngs or figure_failures:
        parts.append("<h2>Figures</h2>" + "".join(_figure(p) for p in pngs))
    if figure_failures:
        parts.append(f'<p class="note">{len(figure_failures)} figure(s) could not be drawn:</p><ul>'
                     + "".join(f"<li><code>{html.escape(line)}</code></li>" for line in figure_failures) + "</ul>")
    parts.append("</body></html>")
    path = results_dir / "report.html"
    path.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return path
