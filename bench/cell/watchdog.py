"""The per-epoch time limit of a training run: `timeout_s` is a limit on each epoch, not the run.

Why inside the cell: the runner sees only the whole process, and a 200-epoch run
whose 150th epoch stalls must be stopped after one epoch's limit, not after 200.
A real-time interval timer (SIGALRM) is re-armed at the start of every epoch;
its handler raises `EpochTimeout` in the cell's main thread (every executor's
main loop wakes up regularly, so it is delivered), the cell records status
"timeout", and a rerun (the default `--retry` retries timeouts) resumes from the
last checkpoint.  The runner keeps a backstop limit on the whole process.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

__all__ = ["EpochWatchdog", "EpochTimeout"]


class EpochTimeout(Exception):
    """An epoch of a training run took longer than the cell's `timeout_s`."""


class EpochWatchdog:
    """`arm(epoch)` at each epoch's start; past `limit_s` without a new `arm`, EpochTimeout is raised.

    Only in the main thread (where signals are delivered); elsewhere it does
    nothing and the runner's limit on the process applies.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._epoch = 0
        self._active = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        self._previous: Any = None

    def _expired(self, signum: int, frame: Optional[FrameType]) -> None:
        raise EpochTimeout(f"epoch {self._epoch} exceeded the per-epoch timeout of {self.limit_s:.0f} s")

    def __enter__(self) -> "EpochWatchdog":
        if self._active:
            self._previous = signal.signal(signal.SIGALRM, self._expired)
        return self

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if self._active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    def arm(self, epoch: int) -> None:
        self._epoch = epoch
        if self._active:
            signal.setitimer(signal.ITIMER_REAL, self.limit_s)
