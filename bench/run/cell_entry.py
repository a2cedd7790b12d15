"""`python -m bench.run.cell_entry CELL.json ROW.json [DATA_ROOT] [RESULTS_DIR]`: a cell's group leader.

A small supervisor (no torch import) that starts `python -m bench.cell` with the same
arguments in its own process group and waits. It exists for the one case the runner cannot
handle: the runner killed by SIGKILL. The kernel then sends this process SIGTERM (parent
death signal), and it ends the whole group, rank processes included, and removes the
runner's scratch folder, so nothing is left running or lying in results/.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.run.process_group import set_parent_death_signal
from bench.store.layout import writer_tag

__all__ = ["main", "PARENT_PID_ENV", "CELL_MODULE_ENV"]

PARENT_PID_ENV = "SCPLBENCH_RUNNER_PID"
"""Set by the runner: the pid this supervisor must outlive no more than."""
CELL_MODULE_ENV = "SCPLBENCH_CELL_MODULE"
"""The module run as the cell (default bench.cell: bench/cell/__main__.py); tests put a fake cell here."""


def _remove_orphaned_scratch(cell_path: Path, runner_pid: int) -> None:
    """The runner's scratch folder is `.tmp/<host>-<pid>/`: ours to remove once that runner is dead."""
    scratch = cell_path.parent
    if scratch.name == writer_tag(runner_pid):
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.parent.rmdir()  # .tmp/, if no other runner uses it
        except OSError:
            pass


def main(argv: list[str]) -> int:
    runner_pid = int(os.environ.get(PARENT_PID_ENV, "0"))
    set_parent_death_signal(signal.SIGTERM, expected_parent=runner_pid or None)
    child: list[subprocess.Popen] = []

    def end_group(signum, _frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the killpg below reaches us too
        os.killpg(os.getpgrp(), signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while child and child[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if runner_pid and os.getppid() != runner_pid:  # orphaned: the runner cannot clean up
            _remove_orphaned_scratch(Path(argv[1]), runner_pid)
        os.killpg(os.getpgrp(), signal.SIGKILL)  # ranks that ignored SIGTERM, and this process

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, end_group)
    child.append(subprocess.Popen([sys.executable, "-m", os.environ.get(CELL_MODULE_ENV, "bench.cell"), *argv[1:]]))
    code = child[0].wait()
    if code < 0:  # died by a signal: die by the same one, so the runner sees it (-9: OOM killer)
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
