"""Where a results folder keeps its rows, and the checks and clean-ups of that folder.

    results/<grid>/results.parquet        compacted rows (what pandas/duckdb read)
    results/<grid>/rows/*.parquet         one fragment per finished cell attempt
    results/<grid>/.tmp/<host>-<pid>/     a runner's scratch files (cell and row JSON)

Every file is written under a hidden temp name in its own folder and renamed into place, so a
reader never sees half a file and a writer killed at any moment leaves at most a temp file
named after its host and pid, which `remove_stale_temps` deletes once that process is gone.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

__all__ = [
    "RESULTS_FILE", "ROWS_DIR", "TMP_DIR", "StoreError", "results_path", "rows_dir", "writer_tag",
    "temp_name", "atomic_write", "check_results_dir", "remove_stale_temps",
]

RESULTS_FILE = "results.parquet"
ROWS_DIR = "rows"
TMP_DIR = ".tmp"
_FOREIGN_TEMP_AGE_S = 7 * 24 * 3600  # another host's temp: its pid cannot be checked from here


class StoreError(RuntimeError):
    """A results folder that cannot be read or written; the message is one line saying what to do."""


def results_path(results_dir: Path) -> Path:
    return Path(results_dir) / RESULTS_FILE


def rows_dir(results_dir: Path) -> Path:
    return Path(results_dir) / ROWS_DIR


def writer_tag(pid: Optional[int] = None) -> str:
    """`<host>-<pid>` of this process (or of `pid` on this host): names a writer's temp files and
    scratch folder, so stale ones can be told from live ones. The host's own '-' become '_'."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid() if pid is None else pid}"


def temp_name(final: Path) -> Path:
    """A hidden name beside `final` (same folder, so the rename is atomic), tagged by writer
    (`<host>-<pid>` last, for `remove_stale_temps`) and thread (threads of one writer may race)."""
    return final.with_name(f".{final.name}.{threading.get_native_id()}.{writer_tag()}.tmp")


def atomic_write(final: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` and rename tmp over `final`; on any error (or signal) the temp is removed."""
    tmp = temp_name(final)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it (a crash keeps old or new)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def check_results_dir(path: Path) -> Path:
    """Refuse, before any cell runs, a results path that is a file or cannot be written.

    Creates the folder (and `rows/`) and writes and removes a probe file: the only reliable
    test of a shared or read-only file system. Raises StoreError with one line.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"results path {path} is a file, not a folder: pass --results a folder")
    try:
        rows_dir(path).mkdir(parents=True, exist_ok=True)
        probe = rows_dir(path) / f".probe.{writer_tag()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StoreError(f"results folder {path} is not writable ({why}): pass --results a writable folder") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _stale(tag: str, mtime: float) -> bool:
    """A temp tagged `<host>-<pid>` is stale when that process is gone (or, elsewhere, it is old)."""
    pid = tag.rpartition("-")[2]
    if pid.isdigit() and tag == writer_tag(int(pid)):  # this host's
        return not _pid_alive(int(pid))
    return time.time() - mtime > _FOREIGN_TEMP_AGE_S


def _temps(results_dir: Path) -> Iterator[tuple[Path, str]]:
    for folder in (Path(results_dir), rows_dir(results_dir)):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):  # .<name>.<host>-<pid>.tmp
                yield path, path.name[:-len(".tmp")].rsplit(".", 1)[-1]
    scratch = Path(results_dir) / TMP_DIR
    if scratch.is_dir():
        for path in scratch.iterdir():
            yield path, path.name


def remove_stale_temps(results_dir: Path) -> list[Path]:
    """Delete temp files and scratch folders left by killed writers; live writers' are kept."""
    removed = []
    for path, tag in _temps(results_dir):
        try:
            if _stale(tag, path.lstat().st_mtime):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
        except FileNotFoundError:
            pass
    scratch = Path(results_dir) / TMP_DIR
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()
    return removed
