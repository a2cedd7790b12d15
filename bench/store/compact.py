"""Merging fragments into results.parquet, safely while other writers keep appending.

A compaction holds an exclusive lock on `.compact.lock` (POSIX lockf: released if the
process dies; works on NFS through its lock manager), snapshots the fragment list, writes
results.parquet = old file + those fragments under a temp name, renames it into place and
only then deletes exactly the fragments it merged. Fragments that appear meanwhile stay for
the next compaction; a crash between rename and deletion leaves duplicates that readers drop
by `attempt_id`. Every attempt is kept: results.parquet is the history.
"""
from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.store.fragments import list_fragments
from bench.store.layout import atomic_write, results_path
from bench.store.read import read_history
from bench.store.row import ARROW_SCHEMA

__all__ = ["compact", "Compaction"]

LOCK_FILE = ".compact.lock"
_THREADS = threading.Lock()  # lockf excludes processes only, not threads of one process


@dataclass
class Compaction:
    merged_fragments: int
    rows: int
    path: Path


def compact(results_dir: Path) -> Compaction:
    """Merge every finished fragment into results.parquet; returns what was merged."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    with _THREADS:
        return _compact_locked(results_dir)


def _compact_locked(results_dir: Path) -> Compaction:
    fd = os.open(results_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        fragments = list_fragments(results_dir)
        target = results_path(results_dir)
        if not fragments:
            rows = len(read_history(results_dir, fragments=[])) if target.exists() else 0
            return Compaction(0, rows, target)
        history = read_history(results_dir, fragments=fragments)
        table = pa.Table.from_pandas(history, schema=ARROW_SCHEMA, preserve_index=False)
        atomic_write(target, lambda tmp: pq.write_table(table, tmp))
        for path in fragments:
            path.unlink(missing_ok=True)
        return Compaction(len(fragments), len(history), target)
    finally:
        os.close(fd)  # releases the lock
