"""A runner's scratch folder: results/<grid>/.tmp/<host>-<pid>/, never /tmp.

Cell and row JSON files and cell logs live there. It is removed when the run ends (also by
a signal, through `finally`), by the cell's supervisor when the runner is SIGKILLed, and
failing both, as a stale temp by the next run on this host (`remove_stale_temps`).
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.store.layout import TMP_DIR, remove_stale_temps, writer_tag

__all__ = ["scratch_dir"]


@contextmanager
def scratch_dir(results_dir: Path) -> Iterator[Path]:
    """Clean stale temps of dead writers, then yield this process's own scratch folder."""
    results_dir = Path(results_dir)
    remove_stale_temps(results_dir)
    folder = results_dir / TMP_DIR / writer_tag()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:
            pass  # another runner's scratch is still there
