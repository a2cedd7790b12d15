"""Timeline pictures of one training iteration, as in the SCPL paper's Figures 3, 4 and 13.

One row per device (or stage), one bar per labelled phase: FW, LOSS, BW, UP
and the copies between devices, one colour each, for one iteration
(`ProfilerStep#N`) of a trace, time in ms from the iteration's start.  Several
traces (BP on N devices, GPipe, SCPL) go into one figure with a shared time
axis, so the lengths compare directly.

    python -m bench.report.timeline results/<grid>/traces/<cell> [more cells ...] --out plots/<grid>/timeline

A phase that began before the iteration (a pipeline's previous batch) is drawn
clipped to the iteration: what is shown is what each device did during it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.profiling.trace_events import PHASES, Trace, load_trace_dir  # noqa: E402

__all__ = ["PHASE_COLOURS", "TimelinePanel", "draw_timeline", "timeline_figure", "save_figure"]

PHASE_COLOURS = {"FW": "#4C72B0", "LOSS": "#DD8452", "BW": "#C44E52", "UP": "#55A868", "COPY": "#8C8C8C"}
_PHASE_NAMES = {"FW": "forward (FW)", "LOSS": "loss (LOSS)", "BW": "backward (BW)", "UP": "update (UP)",
                "COPY": "copy between devices"}


@dataclass
class TimelinePanel:
    """One subplot: a trace, its title, and how stages map to devices."""

    title: str
    trace: Trace
    lanes: Optional[Sequence[int]] = None  # lanes[k] = device of stage k; None: one row per stage
    step: Optional[int] = None  # ProfilerStep number; None: the last recorded


def _rows(panel: TimelinePanel) -> tuple[list[str], dict]:
    """Row labels (top to bottom) and a function from an event to its row index."""
    stages = sorted({e.stage for e in panel.trace.phases if e.stage is not None})
    has_unstaged = any(e.stage is None for e in panel.trace.phases)
    index: dict[Optional[int], int]
    if panel.lanes is not None:
        devices = sorted({panel.lanes[k] for k in stages if k < len(panel.lanes)})
        labels = []
        for d in devices:
            mine = [k for k in stages if panel.lanes[k] == d]
            span = f"stage {mine[0]}" if len(mine) == 1 else f"stages {mine[0]}-{mine[-1]}"
            labels.append(f"device {d}\n({span})")
        index = {k: devices.index(panel.lanes[k]) for k in stages}
    else:
        labels = [f"stage {k}" for k in stages]
        index = {k: i for i, k in enumerate(stages)}
    if has_unstaged:
        index[None] = len(labels)
        labels.append("all stages\n(one autograd call)")
    return labels, index


def draw_timeline(ax, panel: TimelinePanel) -> float:
    """Draw one panel on `ax`; return the iteration's length in ms."""
    trace = panel.trace
    span = trace.step(panel.step)
    lo, hi = (span.start_us, span.end_us) if span else trace.extent()
    labels, index = _rows(panel)
    height = 0.8
    for phase in PHASES:
        bars: dict[int, list[tuple[float, float]]] = {}
        for e in trace.phases:
            if e.phase != phase or e.stage not in index:
                continue
            a, b = max(e.start_us, lo), min(e.end_us, hi)
            if b > a:
                bars.setdefault(index[e.stage], []).append(((a - lo) / 1000.0, (b - a) / 1000.0))
        for row, segments in bars.items():
            ax.broken_barh(segments, (row - height / 2, height), facecolors=PHASE_COLOURS[phase],
                           edgecolors="white", linewidth=0.3)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first device on top, as in the paper
    step_name = f"ProfilerStep#{span.number}" if span else "whole trace"
    ax.set_title(f"{panel.title} — {step_name}, {(hi - lo) / 1000.0:.1f} ms", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return (hi - lo) / 1000.0


def timeline_figure(panels: Sequence[TimelinePanel], width: float = 10.0):
    """One figure, one subplot per panel, sharing the time axis."""
    if not panels:
        raise ValueError("timeline_figure needs at least one panel")
    heights = [max(1, len(_rows(p)[0])) + 0.8 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(width, 0.55 * sum(heights) + 1.0), gridspec_kw={"height_ratios": heights})
    longest = 0.0
    for ax, panel in zip(axes[:, 0], panels):
        longest = max(longest, draw_timeline(ax, panel))
    ax = axes[-1, 0]
    ax.set_xlim(0, longest * 1.02)
    ax.set_xlabel("time since the iteration started (ms)")
    present = sorted({e.phase for p in panels for e in p.trace.phases}, key=PHASES.index)
    fig.legend(handles=[Patch(color=PHASE_COLOURS[ph], label=_PHASE_NAMES[ph]) for ph in present],
               loc="upper center", ncol=len(present), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(panels) > 1 else 0.88))
    return fig


def save_figure(fig, stem: Path) -> list[Path]:
    """Write `stem.png` and `stem.svg`; close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="+", help="a cell's trace folder (or a folder holding one trace)")
    parser.add_argument("--out", required=True, help="output path without extension (.png and .svg are written)")
    parser.add_argument("--step", type=int, default=None, help="ProfilerStep number (default: the last recorded)")
    args = parser.parse_args(argv)
    panels = [TimelinePanel(Path(t).name, load_trace_dir(Path(t)), step=args.step) for t in args.traces]
    for path in save_figure(timeline_figure(panels), Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
