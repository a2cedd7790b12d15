"""The SCPL paper's published numbers beside the measured ones.

The paper ("Enabling model parallelism for neural networks based on decoupled
supervised contrastive learning") reports speedups over BP (Tables 2 and 3),
one profiled iteration of naive model parallelism vs SCPL (Figure 4), epoch
times summarised in one sentence (Figures 5-12), schedule lengths of SCPL,
GPipe and SCPL + GPipe (Figure 13) and accuracies (Tables 4-8).  Those numbers
live in `paper_data/*.csv` (typed from the paper, with its notes); this module
loads them as `PaperItem`s, recognises which items a results folder covers (by
model, dataset without `@synthetic`, method, devices and batch size) and sets
every paper cell beside the measured one: paper | measured | measured / paper,
with a verdict line per item.  docs/PAPER.md explains the items.  Accuracies are
the number the references report, a training run's best test accuracy over
epochs (`reported_accuracy`), unless asked for the final head's.

What the numbers are is always said: synthetic data or CPU devices make a
comparison a check of the harness, never a reproduction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from bench.report.baseline import base_method, with_bp_baseline
from bench.report.method_facts import display_name

__all__ = ["PAPER_DATA", "SPEED_TOLERANCE", "ACCURACY_TOLERANCE_POINTS", "PAPER_SPEED_ROWS", "PaperItem",
           "ACCURACY_STATISTICS", "Comparison", "base_dataset", "paper_items", "recognise", "reported_accuracy",
           "compare", "provenance", "write_paper_comparisons"]

PAPER_DATA = Path(__file__).resolve().parent / "paper_data"
SPEED_TOLERANCE = 0.10  # a speed cell agrees when measured / paper is within 10 %
ACCURACY_TOLERANCE_POINTS = 2.0  # an accuracy agrees within 2 percentage points
PAPER_SPEED_ROWS = [("bp", 1), ("gpipe", 1), ("gpipe", 2), ("gpipe", 4), ("scpl", 1), ("scpl", 2), ("scpl", 4)]
TEXT_MODELS = ("lstm", "transformer")
# Appendix A.3's only numbers for Figures 5-12: SCPL on 4 GPUs over BP on 1
SCPL4_OVER_BP = {"vision": 2.0, "text": 1.6}
# compare(..., accuracy=): the references' statistic where the rows have it, or every row's final head
ACCURACY_STATISTICS = ("reference", "final")
_STATISTIC_NAMES = {"test_acc_best": "best epoch", "test_acc": "final"}


@dataclass(frozen=True)
class PaperItem:
    """One table or figure of the paper and its numbers."""

    key: str  # file stem of the comparison: paper_<key>.md / .csv
    title: str
    kind: str  # "speedup" | "iteration" | "epoch_time" | "schedule" | "accuracy"
    data: pd.DataFrame


@dataclass
class Comparison:
    """An item beside the measured rows: the long table (CSV), its markdown and the verdict."""

    item: PaperItem
    table: pd.DataFrame
    markdown: str
    verdict: str


def base_dataset(name: str) -> str:
    """`tinyimagenet` of `tinyimagenet@synthetic`: the paper's dataset a twin stands for."""
    return str(name).split("@")[0]


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(PAPER_DATA / name)


def paper_items() -> list[PaperItem]:
    """Every item of the paper this project can compare with, in the paper's order."""
    items = []
    for path in sorted(PAPER_DATA.glob("table*_speedup_*.csv")):
        data = pd.read_csv(path)
        first = data.iloc[0]
        number = str(first["table"]).split()[-1]
        items.append(PaperItem(f"table{number}", f"{first['table']}: speedup over BP, {first['model']} on "
                               f"{first['dataset']}", "speedup", data))
    items.append(PaperItem("figure4", "Figure 4: one iteration, LSTM on IMDB, 4 devices, naive model parallelism "
                           "vs SCPL", "iteration", _read("figure4_iteration_ms.csv")))
    items.append(PaperItem("figures5_12", "Figures 5-12: time per epoch, BP vs SCPL on 1/2/4 devices", "epoch_time",
                           _read("figures5_12_epoch_time.csv")))
    steps = _read("figures3_13_schedule_steps.csv")
    items.append(PaperItem("figure13", "Figure 13: SCPL vs GPipe vs SCPL + GPipe on 4 devices", "schedule",
                           steps[steps["figure"] == "Figure 13"].reset_index(drop=True)))
    for path in sorted(PAPER_DATA.glob("table*_acc_*.csv"), key=lambda p: int(p.name[5:].split("_")[0])):
        data = pd.read_csv(path)
        first = data.iloc[0]
        number = str(first["table"]).split()[-1]
        items.append(PaperItem(f"table{number}", f"{first['table']}: test accuracy on {first['dataset']}",
                               "accuracy", data))
    return items


# ---------------------------------------------------------------- what the rows are


def _pair_rows(frame: pd.DataFrame, model: str, dataset: str) -> pd.DataFrame:
    return frame[(frame["model"] == model) & (frame["dataset"].map(base_dataset) == dataset)]


def _device_word(rows: pd.DataFrame, count: int) -> str:
    gpu = (rows.get("device_kind", pd.Series(dtype=object)) == "cuda").any()
    if gpu:
        return "GPU" if count == 1 else "GPUs"
    return "CPU device" if count == 1 else "CPU devices"


def provenance(rows: pd.DataFrame) -> str:
    """What the measured numbers are: data, devices, how the epoch was timed; never a 'reproduction' unless real."""
    kinds = sorted(rows["data_kind"].dropna().unique()) if "data_kind" in rows else []
    devices = sorted(rows["device_kind"].dropna().unique()) if "device_kind" in rows else []
    names = sorted({n for v in rows.get("device_names", pd.Series(dtype=object)).dropna() for n in v})
    epoch = sorted(rows["epoch_time_kind"].dropna().unique()) if "epoch_time_kind" in rows else []
    data = " and ".join(kinds) or "unknown"
    where = "GPUs" if devices == ["cuda"] else "CPU devices" if devices == ["cpu"] else " and ".join(devices) or "?"
    text = f"{data} data on {where} ({', '.join(names) or 'n/a'}); epoch times {'/'.join(epoch) or 'n/a'}"
    if "synthetic" in kinds or "cpu" in devices:
        return f"{text}: a check of the harness, not a reproduction of the paper"
    return f"{text}: the paper's setting (its numbers are whole runs on its own GPUs)"


def _failure(rows: pd.DataFrame) -> Optional[str]:
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        return None
    error = bad.iloc[0].get("error")
    return f"{bad.iloc[0]['status']}: {str(error)[:80]}" if isinstance(error, str) else str(bad.iloc[0]["status"])


def _ratio(measured: Optional[float], paper: Optional[float]) -> Optional[float]:
    if measured is None or paper is None or pd.isna(measured) or pd.isna(paper) or paper == 0:
        return None
    return float(measured) / float(paper)


def _fmt(value: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None or pd.isna(value) else f"{value:{spec}}{suffix}"


def _within(ratio: Optional[float]) -> Optional[bool]:
    return None if ratio is None else abs(ratio - 1.0) <= SPEED_TOLERANCE + 1e-12


def _verdict(label: str, checked: Sequence[tuple[str, Optional[bool]]], unit: str, rows: pd.DataFrame) -> str:
    good = sum(1 for _, ok in checked if ok)
    misses = [name for name, ok in checked if not ok]
    text = f"Verdict ({label}): {good} of {len(checked)} cells within {unit}"
    if misses:
        text += "; not: " + ", ".join(misses[:12]) + (f" and {len(misses) - 12} more" if len(misses) > 12 else "")
    return text + f". Measured: {provenance(rows)}."


# ---------------------------------------------------------------- recognition


def _covers(item: PaperItem, frame: pd.DataFrame) -> bool:
    if frame.empty:
        return False
    methods = frame["method"].map(base_method)
    if item.kind == "speedup":
        first = item.data.iloc[0]
        rows = _pair_rows(frame, first["model"], first["dataset"])
        cells = set(zip(item.data["method"], item.data["devices"], item.data["batch_size"]))
        return any((base_method(m), d, b) in cells for m, d, b in zip(rows["method"], rows["devices"], rows["batch_size"]))
    if item.kind == "iteration":
        first = item.data.iloc[0]
        rows = _pair_rows(frame, first["model"], first["dataset"])
        return bool(((rows["devices"] == 4) & rows["method"].map(base_method).isin(item.data["method"])).any())
    if item.kind == "epoch_time":
        return any(((methods == "bp") & (frame["model"] == m) & (frame["dataset"].map(base_dataset) == d)).any()
                   and ((methods == "scpl") & (frame["model"] == m) & (frame["dataset"].map(base_dataset) == d)).any()
                   for m, d in zip(item.data["model"], item.data["dataset"]))
    if item.kind == "schedule":
        four = frame[(frame["devices"] == 4) & methods.isin(["scpl", "gpipe", "scpl_gpipe"])]
        return bool((four.groupby(["model", "dataset", "batch_size"])["method"].nunique() >= 2).any())
    if item.kind == "accuracy":
        ok = frame[(frame["status"] == "ok") & frame["test_acc"].notna()]
        wanted = set(zip(item.data["model"], item.data["dataset"], item.data["method"]))
        return any((m, base_dataset(d), base_method(x)) in wanted
                   for m, d, x in zip(ok["model"], ok["dataset"], ok["method"]))
    return False


def recognise(frame: pd.DataFrame) -> list[PaperItem]:
    """The paper items whose cells the results hold (at least one of them)."""
    return [item for item in paper_items() if _covers(item, frame)]


# ---------------------------------------------------------------- comparisons


def _speed_label(method: str, devices: int, rows: pd.DataFrame, extra: bool) -> str:
    if base_method(method) == "bp" and devices == 1:
        return "BP"
    name = display_name(method)
    label = f"{name} ({devices} {_device_word(rows, devices)})"
    return label + " [extra]" if extra else label


def _compare_speedup(item: PaperItem, frame: pd.DataFrame) -> Comparison:
    first = item.data.iloc[0]
    rows = _pair_rows(frame, first["model"], first["dataset"])
    ok = with_bp_baseline(rows)
    stats = ok.groupby(["method", "devices", "batch_size"]).agg(
        speedup=("speedup", "mean"), epoch=("epoch_time_s", "mean"), trials=("trial", "nunique"))
    paper = item.data.set_index(["method", "devices", "batch_size"])
    batches = sorted(set(item.data["batch_size"]) | set(rows["batch_size"]))
    extras = sorted({(m, int(d)) for m, d in zip(rows["method"], rows["devices"])} - set(PAPER_SPEED_ROWS),
                    key=lambda md: (md[0] != "bp", md[0], md[1]))
    records, wide, checked = [], {}, []
    for method, devices in PAPER_SPEED_ROWS + extras:
        extra = (method, devices) not in PAPER_SPEED_ROWS
        label = _speed_label(method, devices, rows, extra)
        cells = []
        for b in batches:
            p = paper.loc[(method, devices, b)] if (method, devices, b) in paper.index else None
            m = stats.loc[(method, devices, b)] if (method, devices, b) in stats.index else None
            mine = rows[(rows["method"] == method) & (rows["devices"] == devices) & (rows["batch_size"] == b)]
            status = "ok" if m is not None else (_failure(mine) or "not run")
            paper_speedup = None if p is None else float(p["speedup"])
            measured = None if m is None else float(m["speedup"])
            ratio = _ratio(measured, paper_speedup)
            is_bp = method == "bp" and devices == 1
            paper_min = None if p is None or pd.isna(p["bp_minutes"]) else float(p["bp_minutes"])
            ours_min = None if m is None else float(m["epoch"]) / 60.0
            records.append({"row": label, "method": method, "devices": devices, "batch_size": b, "extra": extra,
                            "paper_speedup": paper_speedup, "measured_speedup": measured,
                            "measured_over_paper": None if is_bp else ratio, "status": status,
                            "paper_bp_minutes_whole_run": paper_min if is_bp else None,
                            "measured_bp_minutes_per_epoch": ours_min if is_bp else None})
            if is_bp:
                cells += [f"1x ({_fmt(paper_min, '.0f', ' min')})" if p is not None else "–",
                          f"1x ({_fmt(ours_min, '.1f', ' min/epoch')})" if m is not None else status, "–"]
            else:
                cells += [_fmt(paper_speedup, ".2f", "x"), _fmt(measured, ".2f", "x") if m is not None else status,
                          _fmt(ratio)]
                if ratio is not None and not extra:
                    checked.append((f"{label} b{b} ({measured:.2f}x vs {paper_speedup:.2f}x)", _within(ratio)))
        if extra and all(c in ("–", "not run") for c in cells[1::3]):
            continue
        wide[label] = cells
    columns = [f"b{b} {what}" for b in batches for what in ("paper", "measured", "measured ÷ paper")]
    table = pd.DataFrame.from_dict(wide, orient="index", columns=columns)
    bp_kind = provenance(rows[(rows["method"] == "bp") & (rows["devices"] == 1) & (rows["status"] == "ok")]
                         if not rows.empty else rows)
    caption = (f"**{item.title}: paper | measured | measured ÷ paper.** Speedup over BP on 1 device at the same "
               f"batch size; BP's minutes in parentheses: the paper's are whole training runs on its GPUs, ours "
               f"minutes per epoch ({bp_kind}). Rows in the paper's order; [extra] rows are not in the paper.")
    tolerance = f"{100 * SPEED_TOLERANCE:.0f} %"
    verdict = _verdict(f"within {tolerance}", checked, f"{tolerance} of the paper's speedup", rows)
    from bench.report.write import markdown_table  # write.py imports this module

    return Comparison(item, pd.DataFrame(records), f"{caption}\n\n{markdown_table(table, 'method')}\n\n{verdict}\n",
                      verdict)


def _step_ms(rows: pd.DataFrame, column: str) -> Optional[float]:
    ok = rows[rows["status"] == "ok"]
    if ok.empty or column not in ok or ok[column].isna().all():
        return None
    return 1000.0 * float(ok[column].mean())


def _compare_iteration(item: PaperItem, frame: pd.DataFrame) -> Comparison:
    first = item.data.iloc[0]
    rows = _pair_rows(frame, first["model"], first["dataset"])
    rows = rows[rows["devices"] == int(first["devices"])]
    records, measured = [], {}
    for p in item.data.itertuples():
        mine = rows[rows["method"] == p.method]
        timed, profiled = _step_ms(mine, "step_time_median_s"), _step_ms(mine, "profiled_step_median_s")
        measured[p.method] = timed
        records.append({"method": p.method, "paper_label": p.paper_label, "devices": p.devices,
                        "paper_iteration_ms": p.iteration_ms, "measured_iteration_ms": timed,
                        "measured_over_paper": _ratio(timed, p.iteration_ms), "profiled_iteration_ms": profiled,
                        "status": "ok" if timed is not None else (_failure(mine) or "not run")})
    paper_ms = dict(zip(item.data["method"], item.data["iteration_ms"]))
    paper_ratio = _ratio(paper_ms.get("scpl"), paper_ms.get("bp"))
    ours_ratio = _ratio(measured.get("scpl"), measured.get("bp"))
    records.append({"method": "scpl/bp", "paper_label": "SCPL ÷ NMP", "devices": int(first["devices"]),
                    "paper_iteration_ms": paper_ratio, "measured_iteration_ms": ours_ratio,
                    "measured_over_paper": _ratio(ours_ratio, paper_ratio), "profiled_iteration_ms": None,
                    "status": "ratio"})
    table = pd.DataFrame(records)
    lines = ["| | paper (ms) | measured, timed median (ms) | measured ÷ paper | measured under the profiler (ms) |",
             "|---|---|---|---|---|"]
    for r in records[:-1]:
        lines.append(f"| {r['paper_label']} ({r['devices']} devices) | {r['paper_iteration_ms']:.1f} | "
                     f"{_fmt(r['measured_iteration_ms'], '.1f') if r['status'] == 'ok' else r['status']} | "
                     f"{_fmt(r['measured_over_paper'])} | {_fmt(r['profiled_iteration_ms'], '.1f')} |")
    lines.append(f"| SCPL ÷ NMP | {_fmt(paper_ratio)} | {_fmt(ours_ratio)} | {_fmt(_ratio(ours_ratio, paper_ratio))} | |")
    checked = [(f"SCPL ÷ NMP ({ours_ratio:.2f} vs {paper_ratio:.2f})", _within(_ratio(ours_ratio, paper_ratio)))] \
        if ours_ratio is not None else []
    verdict = _verdict("iteration-time ratio within 10 %", checked, "10 % of the paper's SCPL ÷ NMP ratio", rows)
    caption = (f"**{item.title}: paper | measured | measured ÷ paper.** Milliseconds per iteration: the paper's "
               f"from its profiler on 4 GPUs; ours the median timed step (and the profiled step, slower by the "
               f"profiler's cost). Absolute times depend on the hardware; the ratio SCPL ÷ NMP is what compares.")
    return Comparison(item, table, f"{caption}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n", verdict)


def _compare_epoch_time(item: PaperItem, frame: pd.DataFrame) -> Comparison:
    records, checked = [], []
    for p in item.data.itertuples():
        rows = _pair_rows(frame, p.model, p.dataset)
        if rows.empty:
            continue
        ok = with_bp_baseline(rows)
        minutes = {}
        for method, devices in (("bp", 1), ("bp", 2), ("bp", 4), ("scpl", 1), ("scpl", 2), ("scpl", 4)):
            part = ok[(ok["method"] == method) & (ok["devices"] == devices)]
            minutes[f"{method}_{devices}_min"] = float(part["epoch_time_s"].mean()) / 60 if not part.empty else None
        scpl4 = ok[(ok["method"] == "scpl") & (ok["devices"] == 4)]["speedup"]
        measured = float(scpl4.mean()) if not scpl4.dropna().empty else None
        family = "text" if p.model in TEXT_MODELS else "vision"
        paper = SCPL4_OVER_BP[family]
        ratio = _ratio(measured, paper)
        records.append({"figure": p.figure, "model": p.model, "dataset": p.dataset, **minutes,
                        "paper_scpl4_over_bp": paper, "measured_scpl4_over_bp": measured,
                        "measured_over_paper": ratio, "batch_sizes": ",".join(map(str, sorted(ok["batch_size"].unique())))})
        if ratio is not None:
            checked.append((f"{p.figure} {p.model}/{p.dataset} ({measured:.2f}x vs ≈{paper}x)", _within(ratio)))
    table = pd.DataFrame(records)
    lines = ["| figure | model / dataset | BP 1 dev (min/epoch) | SCPL 1 / 2 / 4 dev (min/epoch) | paper: SCPL 4 ÷ BP "
             "| measured | measured ÷ paper |", "|---|---|---|---|---|---|---|"]
    for r in records:
        scpl = " / ".join(_fmt(r[f"scpl_{d}_min"], ".1f") for d in (1, 2, 4))
        lines.append(f"| {r['figure']} | {r['model']} / {r['dataset']} | {_fmt(r['bp_1_min'], '.1f')} | {scpl} | "
                     f"≈{r['paper_scpl4_over_bp']}x | {_fmt(r['measured_scpl4_over_bp'], '.2f', 'x')} | "
                     f"{_fmt(r['measured_over_paper'])} |")
    rows = frame[frame["model"].isin(table["model"]) & frame["dataset"].map(base_dataset).isin(table["dataset"])] \
        if not table.empty else frame
    verdict = _verdict("SCPL 4 devices ÷ BP within 10 %", checked, "10 % of the paper's ≈2x (vision) / ≈1.6x (text)",
                       rows)
    caption = (f"**{item.title}.** The paper prints no bar values; its appendix A.3 says: with 4 GPUs SCPL is about "
               f"2x faster than BP on vision and about 1.6x on text. Measured: speedup of SCPL on 4 devices over BP "
               f"on 1 at the same batch size, and the epoch times it comes from.")
    return Comparison(item, table, f"{caption}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n", verdict)


def _compare_schedule(item: PaperItem, frame: pd.DataFrame) -> Comparison:
    paper_steps = dict(zip(item.data["schedule"], item.data["time_steps_per_iteration"]))
    chunks = dict(zip(item.data["schedule"], item.data["micro_batches"]))
    schedules = {"SCPL": "scpl", "GPipe": "gpipe", "SCPL+GPipe": "scpl_gpipe"}
    four = frame[(frame["devices"] == 4) & frame["method"].isin(schedules.values())]
    records, checked, lines = [], [], []
    for (model, dataset, batch), part in four.groupby(["model", "dataset", "batch_size"]):
        ms = {name: _step_ms(part[part["method"] == m], "step_time_median_s") for name, m in schedules.items()}
        for name, method in schedules.items():
            paper_ratio = paper_steps[name] / paper_steps["SCPL"]
            ours = _ratio(ms[name], ms["SCPL"])
            ratio = _ratio(ours, paper_ratio)
            records.append({"model": model, "dataset": dataset, "batch_size": batch, "schedule": name,
                            "method": method, "paper_micro_batches": chunks[name],
                            "paper_time_steps": paper_steps[name], "paper_ratio_to_scpl": paper_ratio,
                            "measured_iteration_ms": ms[name], "measured_ratio_to_scpl": ours,
                            "measured_over_paper": ratio,
                            "status": "ok" if ms[name] is not None else
                            (_failure(part[part["method"] == method]) or "not run")})
            if name != "SCPL" and ratio is not None:
                checked.append((f"{name} ÷ SCPL b{batch} ({ours:.2f} vs {paper_ratio:.2f})", _within(ratio)))
    table = pd.DataFrame(records)
    lines = ["| model / dataset, batch | schedule | paper: time steps (÷ SCPL) | measured ms per iteration (÷ SCPL) "
             "| measured ÷ paper |", "|---|---|---|---|---|"]
    for r in records:
        measured = (f"{r['measured_iteration_ms']:.1f} ({_fmt(r['measured_ratio_to_scpl'])})"
                    if r["status"] == "ok" else r["status"])
        lines.append(f"| {r['model']} / {r['dataset']}, b{r['batch_size']} | {r['schedule']} | "
                     f"{r['paper_time_steps']} ({r['paper_ratio_to_scpl']:.2f}) | {measured} | "
                     f"{_fmt(r['measured_over_paper'])} |")
    verdict = _verdict("iteration-time ratios within 10 %", checked, "10 % of the paper's step ratio", four)
    caption = (f"**{item.title}: paper | measured | measured ÷ paper.** The paper's schematic counts time steps per "
               f"iteration (24 / 31 / 22, 3 micro-batches for the GPipe schedules); measured: median timed "
               f"iteration, as a ratio to SCPL's so the two compare. The three timelines are drawn on one time axis "
               f"in the timeline figure of that batch size.")
    return Comparison(item, table, f"{caption}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n", verdict)


def reported_accuracy(rows: pd.DataFrame, accuracy: str = "reference") -> tuple[pd.Series, pd.Series]:
    """Per row, the test accuracy set beside the paper's and the column it comes from.

    The references print and record the best test accuracy over epochs (SCPL `main.py:308-309,321`;
    DASCPL `train_vision.py:488-490,516,523`), which a training run's row holds as `test_acc_best`.
    A sampled cell's `test_acc_best` is the best of a few evaluations inside its untimed steps, no
    epoch's, so sampled cells (and rows written before the column) read the final head's `test_acc`,
    as does every row with `accuracy="final"`.
    """
    if accuracy not in ACCURACY_STATISTICS:
        raise ValueError(f"accuracy must be one of {', '.join(ACCURACY_STATISTICS)}, got {accuracy!r}")
    final = rows["test_acc"].astype(float)
    if accuracy == "final" or "test_acc_best" not in rows or "epochs" not in rows:
        return final, pd.Series("test_acc", index=rows.index)
    best = rows["test_acc_best"].astype(float)
    use_best = rows["epochs"].notna() & best.notna()
    return best.where(use_best, final), use_best.map({True: "test_acc_best", False: "test_acc"})


def _statistic_label(columns: pd.Series) -> str:
    """`best epoch`, `final`, or both with their counts when a group mixes training runs and sampled cells."""
    counts = columns.value_counts()
    if len(counts) == 1:
        return _STATISTIC_NAMES[str(counts.index[0])]
    return ", ".join(f"{_STATISTIC_NAMES[str(c)]} ({n})" for c, n in counts.sort_index(ascending=False).items())


def _compare_accuracy(item: PaperItem, frame: pd.DataFrame, accuracy: str = "reference") -> Comparison:
    ok = frame[(frame["status"] == "ok") & frame["test_acc"].notna()].reset_index(drop=True)
    values, columns = reported_accuracy(ok, accuracy)
    records, checked = [], []
    for p in item.data.itertuples():
        rows = _pair_rows(ok, p.model, p.dataset)
        exact = rows[rows["method"] == p.method]
        mine = exact if not exact.empty else rows[rows["method"].map(base_method) == p.method]
        if mine.empty:
            continue
        accs = 100.0 * values[mine.index]
        mean, std, n = float(accs.mean()), float(accs.std()) if len(accs) > 1 else 0.0, len(accs)
        diff = mean - float(p.test_acc_mean)
        records.append({"model": p.model, "dataset": p.dataset, "method": p.method, "paper_label": p.paper_label,
                        "paper_mean": p.test_acc_mean, "paper_std": p.test_acc_std, "paper_trials": p.trials,
                        "measured_mean": mean, "measured_std": std, "measured_trials": n, "difference_points": diff,
                        "difference_in_paper_std": diff / p.test_acc_std if p.test_acc_std else None,
                        "statistic": _statistic_label(columns[mine.index]),
                        "measured_final_mean": 100.0 * float(mine["test_acc"].astype(float).mean()),
                        "note": p.note if isinstance(p.note, str) else ""})
        checked.append((f"{p.paper_label} {p.model} ({mean:.2f} vs {p.test_acc_mean:.2f})",
                        abs(diff) <= ACCURACY_TOLERANCE_POINTS))
    table = pd.DataFrame(records)
    with_final = any(r["statistic"] != "final" for r in records)  # else the final head's column repeats ours
    lines = ["| model | method | paper mean ± std (n) | measured mean ± std (n) | statistic | difference (points) "
             "| difference ÷ paper std |" + (" final head, measured mean |" if with_final else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if with_final else "")]
    for r in records:
        lines.append(f"| {r['model']} | {r['paper_label']} | {r['paper_mean']:.2f} ± {r['paper_std']:.2f} "
                     f"({r['paper_trials']}) | {r['measured_mean']:.2f} ± {r['measured_std']:.2f} "
                     f"({r['measured_trials']}) | {r['statistic']} | {r['difference_points']:+.2f} | "
                     f"{_fmt(r['difference_in_paper_std'], '+.1f')} |"
                     + (f" {r['measured_final_mean']:.2f} |" if with_final else ""))
    rows = ok[ok["model"].isin(table["model"]) & ok["dataset"].map(base_dataset).isin(table["dataset"])] \
        if not table.empty else ok
    verdict = _verdict(f"within {ACCURACY_TOLERANCE_POINTS:g} points", checked,
                       f"{ACCURACY_TOLERANCE_POINTS:g} points of the paper's accuracy", rows)
    notes = sorted({r["note"] for r in records if r["note"]})
    which = ("the final head's `test_acc` (statistic: final)" if accuracy == "final" else
             "as the references report it, the best over epochs of a training run (`test_acc_best`, statistic: "
             "best epoch; SCPL `main.py:308-309,321`, DASCPL `train_vision.py:488-490,516`), the final head's "
             "`test_acc` of a sampled cell (statistic: final)")
    caption = (f"**{item.title}: paper | measured | difference.** Test accuracy (%), mean ± std over trials: "
               f"{which}; the difference also in units of the paper's std."
               + (" The last column is the final head's `test_acc`, never above the best epoch's." if with_final
                  else "")
               + (f" Paper note: {'; '.join(notes)}." if notes else ""))
    return Comparison(item, table, f"{caption}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n", verdict)


_COMPARE: dict[str, Callable[[PaperItem, pd.DataFrame], Comparison]] = {
    "speedup": _compare_speedup, "iteration": _compare_iteration, "epoch_time": _compare_epoch_time,
    "schedule": _compare_schedule, "accuracy": _compare_accuracy,
}


def compare(item: PaperItem, frame: pd.DataFrame, accuracy: str = "reference") -> Comparison:
    """The item's paper numbers beside the measured rows of `frame` (labelled by bench/report/variants.py).

    `accuracy` (accuracy items only): "reference", the statistic the references report where the rows
    have it (`reported_accuracy`), or "final", every row's final-head `test_acc`.
    """
    if item.kind == "accuracy":
        return _compare_accuracy(item, frame, accuracy)
    return _COMPARE[item.kind](item, frame)


def write_paper_comparisons(results_dir: Path, frame: pd.DataFrame, accuracy: str = "reference") -> list[Comparison]:
    """`paper_<item>.md` and `.csv` next to the parquet for every item the results cover (`accuracy`: see compare)."""
    out = []
    for item in recognise(frame):
        comparison = compare(item, frame, accuracy)
        comparison.table.to_csv(Path(results_dir) / f"paper_{item.key}.csv", index=False)
        (Path(results_dir) / f"paper_{item.key}.md").write_text(comparison.markdown)
        out.append(comparison)
    return out
