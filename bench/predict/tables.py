"""predict.csv (every prediction) and predict.md (the best split per method and device count)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

from .links import Link
from .predictor import Prediction, best_balances

__all__ = ["CSV_COLUMNS", "prediction_rows", "write_tables"]

CSV_COLUMNS = ("method", "model", "dataset", "batch_size", "devices", "balance", "schedule", "predicted_step_s",
               "predicted_speedup", "predicted_bubble", "bubble_per_device", "best_balance", "measured_step_s",
               "predicted_over_measured")


def _balance(p: Prediction) -> str:
    return "replicas" if not p.balance else "-".join(map(str, p.balance))


def prediction_rows(predictions: Sequence[Prediction], measured: Optional[dict] = None) -> list[dict]:
    """One mapping per prediction, with `CSV_COLUMNS`; `measured[(method, network, batch, devices, balance)]`."""
    best = {id(p) for p in best_balances(predictions).values()}
    rows = []
    for p in predictions:
        seen = (measured or {}).get((p.method, p.network, p.batch, p.devices, p.balance))
        rows.append({
            "method": p.method, "model": p.network.model, "dataset": p.network.dataset, "batch_size": p.batch,
            "devices": p.devices, "balance": _balance(p), "schedule": p.schedule,
            "predicted_step_s": round(p.step_s, 6),
            "predicted_speedup": None if p.speedup is None else round(p.speedup, 3),
            "predicted_bubble": round(p.outcome.mean_bubble, 3),
            "bubble_per_device": " ".join(f"{b:.2f}" for b in p.bubble),
            "best_balance": id(p) in best,
            "measured_step_s": None if seen is None else round(seen, 6),
            "predicted_over_measured": None if not seen else round(p.step_s / seen, 3),
        })
    return rows


def _md_table(rows: list[dict]) -> list[str]:
    head = ["method", "batch", "devices", "best balance", "predicted ms", "speedup vs BP 1 dev", "bubble per device",
            "measured ms", "predicted / measured"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        speedup = "" if r["predicted_speedup"] is None else f"{r['predicted_speedup']:.2f}x"
        measured = "" if r["measured_step_s"] is None else f"{1000 * r['measured_step_s']:.1f}"
        ratio = "" if r["predicted_over_measured"] is None else f"{r['predicted_over_measured']:.2f}"
        lines.append(f"| {r['method']} | {r['batch_size']} | {r['devices']} | {r['balance']} | "
                     f"{1000 * r['predicted_step_s']:.1f} | {speedup} | {r['bubble_per_device']} | {measured} | {ratio} |")
    return lines


def write_tables(predictions: Sequence[Prediction], results_dir: Path, link: Link,
                 measured: Optional[dict] = None) -> list[Path]:
    """Write `predict.csv` and `predict.md` into `results_dir`; return their paths."""
    results_dir = Path(results_dir)
    rows = prediction_rows(predictions, measured)
    csv_path, md_path = results_dir / "predict.csv", results_dir / "predict.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Predicted step times: {results_dir.name}", "",
             f"From the one-device cells of this folder, simulated by `python -m bench.predict` "
             f"(docs/PREDICT.md) over the link `{link.name}` (latency {link.latency_s * 1e6:.1f} µs, "
             f"{link.bandwidth_bytes_s / 1e9:.2f} GB/s{link.all_reduce_note()}). One row per method, batch and device count: the "
             "fastest stage split (every split is in predict.csv); bubble = each device's idle share of the "
             "timed steps; speedup over BP's measured step on one device. A library method (GPipe, DDP) with "
             "one-device cells of its own carries the overhead they measured beyond BP's costs "
             "(bench/predict/overheads.py).", ""]
    best = [r for r in rows if r["best_balance"]]
    for network in sorted({(r["model"], r["dataset"]) for r in best}):
        part = sorted((r for r in best if (r["model"], r["dataset"]) == network),
                      key=lambda r: (r["method"], r["batch_size"], r["devices"]))
        lines += [f"## {network[0]} on {network[1]}", "", *_md_table(part), ""]
    md_path.write_text("\n".join(lines))
    return [md_path, csv_path]
