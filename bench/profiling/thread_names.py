"""Give a trace's thread rows the names of the threads that ran them.

Why: torch.profiler (Kineto) names a thread row after the OS thread's command
name, so every row of a pipelined cell reads `thread 6845 (python)` in
TensorBoard and Perfetto; Python thread names (`stage-worker-0 (cpu-worker0)`,
given by bench/execution/pipeline.py) never reach the trace.  While a cell is
profiled, `ThreadNameRecorder` notes each new thread's native id (the trace's
`tid`) and name as the thread starts; `name_threads` then rewrites the written
trace's `thread_name` metadata events (`{"ph": "M", "name": "thread_name"}`),
adding one where the profiler wrote none.
"""
from __future__ import annotations

import gzip
import json
import sys
import threading
from pathlib import Path
from typing import Optional

__all__ = ["ThreadNameRecorder", "name_threads", "thread_names_of"]


class ThreadNameRecorder:
    """Context manager: {native thread id: thread name} of this thread and every thread started inside it.

    A `threading.setprofile` hook runs once in each new thread, before its
    target: it records the thread and removes itself, so the thread runs
    unprofiled (no per-call cost).
    """

    def __init__(self, main_name: Optional[str] = None) -> None:
        self.names: dict[int, str] = {}
        self._main_name = main_name

    def _hook(self, frame, event, arg) -> None:
        sys.setprofile(None)  # once per thread
        self.names[threading.get_native_id()] = threading.current_thread().name

    def __enter__(self) -> "ThreadNameRecorder":
        self.names[threading.get_native_id()] = self._main_name or threading.current_thread().name
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        threading.setprofile(None)


def _read(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def _write(path: Path, data: dict) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    tmp = path.with_name(path.name + ".tmp")
    with opener(tmp, "wt") as f:
        json.dump(data, f)
    tmp.replace(path)


def name_threads(path: Path, names: dict[int, str], process_name: Optional[str] = None) -> int:
    """Rename the thread rows of trace file `path` whose tid is in `names`; return how many were named.

    `process_name` (e.g. the cell) replaces the process row's `python`.
    """
    path = Path(path)
    data = _read(path)
    events = data.setdefault("traceEvents", [])
    pids_of: dict[int, set] = {}
    for ev in events:
        tid = ev.get("tid")
        if isinstance(tid, int) and tid in names and isinstance(ev.get("pid"), int):
            pids_of.setdefault(tid, set()).add(ev["pid"])
    named: set[tuple] = set()
    for ev in events:
        if ev.get("ph") != "M":
            continue
        if ev.get("name") == "thread_name" and ev.get("tid") in names:
            ev["args"] = {**ev.get("args", {}), "name": names[ev["tid"]]}
            named.add((ev.get("pid"), ev["tid"]))
        elif ev.get("name") == "process_name" and process_name and isinstance(ev.get("pid"), int):
            ev["args"] = {**ev.get("args", {}), "name": process_name}
    for tid, pids in pids_of.items():
        for pid in pids:
            if (pid, tid) not in named:
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                               "args": {"name": names[tid]}})
                named.add((pid, tid))
    _write(path, data)
    return len({tid for _, tid in named})


def thread_names_of(path: Path) -> dict[object, str]:
    """{tid: name} from a trace file's `thread_name` metadata (what TensorBoard and Perfetto show)."""
    return {ev.get("tid"): ev.get("args", {}).get("name", "") for ev in _read(Path(path)).get("traceEvents", [])
            if ev.get("ph") == "M" and ev.get("name") == "thread_name"}
