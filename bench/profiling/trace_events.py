"""Read the Chrome traces torch.profiler writes and keep what the figures need.

A trace (`<worker>.<ns>.pt.trace.json`, optionally `.gz`) is a list of
`traceEvents`; complete events (`ph: "X"`) have `ts` and `dur` in µs.  We keep
two kinds: the phase labels the methods and executors emit with
`record_function` (`stage{k}/forward|loss|backward|step`, `copy stage{j}->stage{k}`,
coupled methods' `bp/backward`-style labels, torch.distributed.pipelining's
`Forward {i}` / `Backward {i}`; in a rank's file, `rank{r}` in its name, the
unstaged ones are the rank's), and the profiler's own `ProfilerStep#N` ranges
that mark iterations.  Times are put on one clock (`baseTimeNanoseconds` + `ts`)
so the traces of several ranks line up.
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

__all__ = ["PHASES", "PhaseEvent", "StepSpan", "Trace", "find_trace_files", "load_trace", "load_trace_dir", "merge_traces",
           "parse_label"]

# Phase codes in the SCPL paper's figures: forward, local loss, backward, update; plus copies.
PHASES = ("FW", "LOSS", "BW", "UP", "COPY")
_PHASE_OF = {"forward": "FW", "loss": "LOSS", "backward": "BW", "step": "UP"}
_STAGED = re.compile(r"^stage(\d+)/(forward|loss|backward|step)$")
_COPY = re.compile(r"^copy stage(\d+)->stage(\d+)$")
_UNSTAGED = re.compile(r"^([A-Za-z_][\w.-]*)/(forward|loss|backward|step)$")
_PIPELINING = re.compile(r"^(Forward|Backward)\s+(\d+)$")  # torch.distributed.pipelining's labels
_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_RANK = re.compile(r"(?:^|[._-])rank(\d+)(?:[._-]|$)")
_ANNOTATIONS = ("user_annotation", "gpu_user_annotation")


@dataclass(frozen=True)
class PhaseEvent:
    """One labelled interval. `stage` is None for a label spanning every stage (BP's backward)."""

    stage: Optional[int]
    phase: str  # one of PHASES
    start_us: float
    end_us: float
    name: str
    pid: object
    tid: object


@dataclass(frozen=True)
class StepSpan:
    """A `ProfilerStep#N` range: the interval between two `profiler.step()` calls."""

    number: int
    start_us: float
    end_us: float


@dataclass
class Trace:
    """The phase events and iteration marks of one cell (one or several trace files)."""

    phases: list[PhaseEvent] = field(default_factory=list)
    steps: list[StepSpan] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def threads(self) -> set[tuple[object, object]]:
        """(pid, tid) of every thread that ran a labelled phase."""
        return {(e.pid, e.tid) for e in self.phases}

    def step(self, number: Optional[int] = None) -> Optional[StepSpan]:
        """The iteration `number`, or the last recorded one; None when the trace has no step marks."""
        if not self.steps:
            return None
        if number is None:
            return max(self.steps, key=lambda s: s.number)
        for span in self.steps:
            if span.number == number:
                return span
        raise ValueError(f"no ProfilerStep#{number} in the trace; it has {sorted(s.number for s in self.steps)}")

    def extent(self) -> tuple[float, float]:
        """Start and end of the recorded iterations (of every phase event when there are no step marks)."""
        spans = [(s.start_us, s.end_us) for s in self.steps] or [(e.start_us, e.end_us) for e in self.phases]
        if not spans:
            raise ValueError(f"trace {[str(f) for f in self.files]} has no step marks and no phase labels")
        return min(a for a, _ in spans), max(b for _, b in spans)


def parse_label(name: str, rank: Optional[int] = None) -> Optional[tuple[Optional[int], str]]:
    """(stage, phase) of a phase label, None for any other name.

    In a rank's trace (`rank` given) a label that names no stage is the rank's:
    torch.distributed.pipelining's `Forward {i}` names a micro-batch, DDP's
    `ddp/forward` a whole replica, and either ran on the rank's one device.
    Outside ranks such a label (BP's `bp/backward`) stays unstaged (None).
    """
    m = _STAGED.match(name)
    if m:
        return int(m.group(1)), _PHASE_OF[m.group(2)]
    m = _COPY.match(name)
    if m:
        return int(m.group(2)), "COPY"  # drawn on the receiving stage
    m = _UNSTAGED.match(name)
    if m:
        return rank, _PHASE_OF[m.group(2)]
    m = _PIPELINING.match(name)
    if m:
        return rank, "FW" if m.group(1) == "Forward" else "BW"
    return None


def find_trace_files(directory: Path) -> list[Path]:
    """Trace files under `directory` (recursively), as tensorboard_trace_handler names them."""
    directory = Path(directory)
    found = [p for pattern in ("*.pt.trace.json", "*.pt.trace.json.gz") for p in directory.rglob(pattern)]
    return sorted(found)


def _read_json(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def _rank_of(path: Path) -> Optional[int]:
    m = _RANK.search(path.name)
    return int(m.group(1)) if m else None


def load_trace(path: Path) -> Trace:
    """Phase events and step marks of one trace file.

    On CUDA a label appears twice: on the CPU thread that launched the work
    (`user_annotation`) and on the GPU stream that ran it (`gpu_user_annotation`);
    when the GPU copies exist they are used, because they are when the device
    was actually busy.
    """
    path = Path(path)
    data = _read_json(path)
    base_us = float(data.get("baseTimeNanoseconds", 0)) / 1000.0
    rank = _rank_of(path)
    by_category: dict[str, list[PhaseEvent]] = {c: [] for c in _ANNOTATIONS}
    steps: list[StepSpan] = []
    for ev in data.get("traceEvents", []):
        if ev.get("ph") != "X" or ev.get("cat") not in _ANNOTATIONS:
            continue
        name = ev.get("name", "")
        start = base_us + float(ev["ts"])
        end = start + float(ev.get("dur", 0))
        step = _STEP.match(name)
        if step:
            if ev["cat"] == "user_annotation":
                steps.append(StepSpan(int(step.group(1)), start, end))
            continue
        parsed = parse_label(name, rank)
        if parsed is not None:
            stage, phase = parsed
            by_category[ev["cat"]].append(PhaseEvent(stage, phase, start, end, name, ev.get("pid"), ev.get("tid")))
    phases = by_category["gpu_user_annotation"] or by_category["user_annotation"]
    return Trace(phases=sorted(phases, key=lambda e: e.start_us), steps=sorted(steps, key=lambda s: s.number),
                 files=[path])


def merge_traces(traces: Iterable[Trace]) -> Trace:
    """One trace of several files (the ranks of a multi-process cell)."""
    merged = Trace()
    for t in traces:
        merged.phases.extend(t.phases)
        merged.steps.extend(t.steps)
        merged.files.extend(t.files)
    merged.phases.sort(key=lambda e: e.start_us)
    # ranks number their steps alike: keep each number once, spanning all ranks
    spans: dict[int, StepSpan] = {}
    for s in merged.steps:
        old = spans.get(s.number)
        spans[s.number] = s if old is None else StepSpan(s.number, min(old.start_us, s.start_us),
                                                          max(old.end_us, s.end_us))
    merged.steps = [spans[n] for n in sorted(spans)]
    return merged


def load_trace_dir(directory: Path, files: Optional[Sequence[Path]] = None) -> Trace:
    """The cell's trace: every file in its trace folder, merged (one per rank for multi-process methods).

    A folder profiled twice (a rerun of the cell) holds several files of the
    same worker; only the newest file of each worker is read.
    """
    files = list(files) if files is not None else find_trace_files(directory)
    if not files:
        raise FileNotFoundError(f"no *.pt.trace.json(.gz) under {directory}")
    newest: dict[str, Path] = {}
    for f in files:
        worker = f.name.split(".")[0]
        if worker not in newest or f.stat().st_mtime > newest[worker].stat().st_mtime:
            newest[worker] = f
    return merge_traces(load_trace(f) for f in sorted(newest.values()))
