"""`--dry-run`: the cells a run would start, which are already done, and how long the rest may take.

The estimate uses earlier rows of the same configuration (same method, model,
data, batch, devices and settings; another trial or attempt), so it is a
measurement of this machine, not a guess; cells with no such row are counted
as unknown rather than given a made-up time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.grid import Cell
from bench.run.retry import DEFAULT_RETRY, cells_to_run
from bench.store.read import latest_attempts, read_history

__all__ = ["dry_run_text"]


def _configuration(cell_or_row: dict) -> tuple:
    return tuple(str(cell_or_row[k]) for k in ("method", "model", "dataset", "batch_size", "devices", "settings_json"))


def dry_run_text(cells: Iterable[Cell], results_dir: Path, retry: str = DEFAULT_RETRY) -> str:
    """One line per cell (id, label, done or estimated time), then a summary line.

    "done" means a run with the same `--retry` would not start the cell again.
    """
    cells = list(cells)
    history = read_history(results_dir) if Path(results_dir).exists() else None
    seconds: dict[tuple, list[float]] = {}
    status: dict[str, str] = {}
    if history is None or history.empty:
        done: set[str] = set()
    else:
        status = dict(zip(*latest_attempts(history)[["cell_id", "status"]].to_dict("list").values()))
        will_run = {cell.cell_id for cell, _ in cells_to_run(cells, history, retry)}
        done = {cell.cell_id for cell in cells} - will_run
        for row in history[history["status"] == "ok"].to_dict("records"):
            if row.get("duration_s") is not None:
                seconds.setdefault(_configuration(row), []).append(float(row["duration_s"]))
    lines, estimate, unknown = [], 0.0, 0
    for cell in cells:
        if cell.cell_id in done:
            latest = status.get(cell.cell_id, "ok")
            lines.append(f"{cell.cell_id}  {cell.label}  " + ("done" if latest == "ok" else
                         f"{latest} last time; not retried with --retry {retry}"))
            continue
        if not seconds:  # nothing measured yet: no estimate to look up
            unknown += 1
            lines.append(f"{cell.cell_id}  {cell.label}")
            continue
        key = _configuration({"method": cell.method, "model": cell.model, "dataset": cell.dataset,
                              "batch_size": cell.batch_size, "devices": cell.devices,
                              "settings_json": cell.settings_json})
        if key in seconds:
            guess = sum(seconds[key]) / len(seconds[key])
            estimate += guess
            lines.append(f"{cell.cell_id}  {cell.label}  ~{guess:.0f} s")
        else:
            unknown += 1
            lines.append(f"{cell.cell_id}  {cell.label}")
    todo = len(cells) - len([c for c in cells if c.cell_id in done])
    summary = f"{len(cells)} cells: {len(cells) - todo} done, {todo} to run"
    if todo and todo > unknown:
        summary += f"; about {estimate / 60:.1f} min for the {todo - unknown} with earlier rows of their configuration"
        summary += f", {unknown} with none to estimate from" if unknown else ""
    elif todo:
        summary += "; no earlier rows of these configurations to estimate the time from"
    return "\n".join(lines + [summary])
