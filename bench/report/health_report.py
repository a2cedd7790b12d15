"""Training health in the report: every run's flags, the warning block, baselines that did not learn.

Why here and not only in the cell: results written before the `health` column
existed still deserve the warning, so a row whose column is null gets its
flags recomputed from what was stored (bench/store/health.py): a training run
from its curve (curves.parquet), a sampled cell from its accuracy curve (its
step losses were never stored, so `unstable` cannot be recomputed for it).
Thresholds come from the row's settings, defaults where an older row lacks them.

The block goes at the top of report.html, of the markdown tables it concerns
and of the console summary; bench/report/write.py and tta.py ask
`baseline_did_not_learn` before they call a BP run a baseline.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import pandas as pd

from bench.grid.settings import CellSettings
from bench.report.baseline import baseline_rows
from bench.report.method_facts import method_label, report_rank
from bench.store.health import (
    DID_NOT_LEARN,
    STILL_IMPROVING,
    THRESHOLD_SETTINGS,
    UNSTABLE,
    HealthThresholds,
    LearningTrace,
    health_flags,
)

__all__ = ["with_health", "did_not_learn", "health_block", "under_block", "baseline_did_not_learn", "DID_NOT_LEARN_MARK"]

DID_NOT_LEARN_MARK = "did not learn"  # what a table cell of such a run says beside its number

_MEANINGS = {
    DID_NOT_LEARN: "final accuracy within `health_chance_margin` of chance (1 / classes), or the training loss "
                     "never below its first epoch's",
    STILL_IMPROVING: "accuracy still rose by more than `health_improving_margin` over the last "
                       "`health_improving_window` evaluations: more epochs would change the numbers",
    UNSTABLE: "a loss not finite, or a spike above the lowest loss before it",
}


def did_not_learn(flags: Any) -> bool:
    """Whether a row's flags say its final head did not learn (an exit's flag does not count)."""
    return DID_NOT_LEARN in _values(flags)


def _thresholds(stored: dict) -> HealthThresholds:
    """The row's thresholds: its stored settings (parsed settings_json), defaults where it predates them."""
    fields = CellSettings.model_fields
    return HealthThresholds.from_settings({key: stored.get(key, fields[key].default)
                                           for key in THRESHOLD_SETTINGS.values()})


def _values(column: Any) -> list:
    """A list column's value as a list (parquet reads lists as arrays, a missing one as None or NaN)."""
    return [] if column is None or isinstance(column, float) else list(column)


def _recomputed(row: pd.Series, curves: pd.DataFrame) -> list[str]:
    """The flags of a row stored without them, from what the row and its curve hold."""
    if row.get("status") != "ok":
        return []
    classes = None if pd.isna(row.get("num_classes")) else int(row["num_classes"])
    settings = json.loads(row["settings_json"]) if isinstance(row.get("settings_json"), str) else {}
    if pd.isna(row.get("epochs")) and not settings.get("train_steps"):
        return []  # a sampled cell that trained nothing untimed is not judged (as in the cell)
    curve = curves[curves["cell_id"] == row["cell_id"]].sort_values("epoch") if not curves.empty else curves
    if not pd.isna(row.get("epochs")) and not curve.empty:
        evaluated = curve[curve["test_acc"].notna()]
        trace = LearningTrace(classes, evaluated["test_acc"].tolist(), curve["train_loss"].tolist(), True,
                              [_values(e) for e in evaluated["exit_acc"] if len(_values(e))])
    else:
        accuracy = _values(row.get("test_acc_curve")) or ([] if pd.isna(row.get("test_acc")) else [row["test_acc"]])
        exits = _values(row.get("exit_acc"))
        trace = LearningTrace(classes, accuracy, (), False, [exits] if exits else [])
    return health_flags(trace, _thresholds(settings))


def with_health(frame: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every row's `health` a list: as stored, or recomputed where the row predates the column."""
    frame = frame.copy()
    stored = frame["health"] if "health" in frame else pd.Series([None] * len(frame), index=frame.index)
    frame["health"] = [list(flags) if flags is not None and not isinstance(flags, float) else _recomputed(row, curves)
                       for flags, (_, row) in zip(stored, frame.iterrows())]
    return frame


def _run_line(row: Any) -> str:
    line = (f"{method_label(row.method, row.devices)}, {row.model} on {row.dataset}, batch {row.batch_size}, "
            f"trial {row.trial}: {', '.join(row.health)}")
    if did_not_learn(row.health) and not pd.isna(row.test_acc):
        chance = f", chance {100 / row.num_classes:.1f} %" if not pd.isna(row.num_classes) else ""
        line += f" (final test accuracy {100 * row.test_acc:.2f} %{chance})"
    return line


def under_block(block: str, text: str) -> str:
    """A table file's text under its training-health block (none when every run it shows is healthy)."""
    return f"{block}\n{text}" if block else text


def health_block(frame: pd.DataFrame) -> str:
    """The warning block (markdown) over the ok rows of `frame`; "" when every run is healthy or not judged."""
    if "health" not in frame:
        return ""
    ok = frame[(frame["status"] == "ok") & frame["health"].map(lambda h: len(_values(h)) > 0)]
    if ok.empty:
        return ""
    ok = ok.sort_values(["model", "dataset", "batch_size", "method", "devices", "trial"],
                        key=lambda s: s.map(report_rank) if s.name == "method" else s)
    judged = int((frame["status"] == "ok").sum())
    seen = dict.fromkeys(flag.split(":")[-1] for flags in ok["health"] for flag in flags)
    lines = [f"**Training health: {len(ok)} of {judged} run(s) flagged.** Read their numbers below with the flags "
             "in mind (docs/TRAINING.md, \"Training health\")."]
    lines += [f"- {_run_line(row)}" for row in ok.itertuples()]
    lines += [f"- `{flag}`: {_MEANINGS[flag]}." for flag in seen if flag in _MEANINGS]
    return "\n".join(lines) + "\n"


def baseline_did_not_learn(frame: pd.DataFrame, keys: Optional[Iterable[tuple[str, Any]]] = None) -> bool:
    """Whether a baseline run (BP on 1 device; the plain BP when variants exist) of `frame` did not learn.

    `keys`: (column, value) pairs selecting e.g. one model, dataset and batch size first.
    Any trial that did not learn makes the baseline one that did not learn: its mean is not a result.
    """
    part = frame[frame["status"] == "ok"] if "status" in frame else frame
    for column, value in keys or ():
        part = part[part[column] == value]
    if "health" not in part or part.empty:
        return False
    return bool(baseline_rows(part)["health"].map(did_not_learn).any())
