"""A runner stopped by SIGTERM, SIGINT or SIGHUP unwinds like an exception, so its cell's
process group is ended and its scratch files removed on the way out (`finally` blocks)."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Interrupted", "interrupt_on_signals"]

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    """Raised in the main thread by a stop signal; BaseException so `except Exception` lets it pass."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by signal N"


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Turn stop signals into `Interrupted` inside the block (main thread only: elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum, _frame):
        for sig in HANDLED:  # a second signal during clean-up must not interrupt the clean-up
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, raise_interrupted) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
