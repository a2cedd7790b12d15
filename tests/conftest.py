"""Shared test set-up: the repository root on sys.path, one intra-op thread for determinism,
slow tests first, a launcher that runs a grid's cells in the test process, and a command's
main() run in the test process."""
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identity checks compare runs with the same intra-op thread count per stage."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` (cells, grids, processes) run first, in file order, the rest after.

    With `-n 2` (pytest-xdist, `make test`) the longest tests then start early
    and the short ones fill in at the end, so no worker is left alone with a
    minute-long test while the other idles.  A stable sort: every worker
    collects the same order, as xdist requires.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


class InProcessLauncher:
    """Runs each cell of `run_grid` in the test process, one after another.

    For tests whose point is what the cells compute and what the runner does with
    their rows (selection, store, summary, report), not the cell's own process:
    that is `LocalLauncher`'s, tested in tests/test_runner.py.  Here no fresh
    interpreter imports torch for every cell (seconds each on 2 cores).  A cell
    that raises fails the test with its traceback.
    """

    def in_flight(self, results_dir: Path) -> set:
        return set()

    def launch(self, todo, ctx, on_row) -> int:
        from bench.cell.phases import run_cell
        from bench.store.fragments import append_rows

        for cell, attempt in todo:
            row = run_cell(cell, ctx.data_root, ctx.results_dir)
            row.attempt = attempt
            append_rows(ctx.results_dir, [row])
            on_row(row)
        return 0


def run_main(main: Callable[[list[str]], Optional[int]], argv: list[str], capsys) -> subprocess.CompletedProcess:
    """A command's `main(argv)` in the test process: exit status, stdout and stderr as `subprocess.run` gives them.

    For tests whose subject is what a command prints and the status it exits with
    (bad input: one line, exit 2), not its interpreter: a fresh one costs seconds
    on 2 cores (torch's import).  Each command's `__main__` block is
    `sys.exit(main(...))`, so the status is main's return (or argparse's
    SystemExit); an uncaught exception fails the test with its traceback, where a
    process would have printed it on stderr.  The commands still run as processes
    where the process is the subject: signals, a killed runner, its cells
    (tests/test_runner.py), and one bad grid (tests/test_grid.py).
    """
    capsys.readouterr()  # what the test printed before is not the command's
    with warnings.catch_warnings():  # a warning lands on stderr, as in a fresh interpreter
        warnings.resetwarnings()
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)  # Python's default filters
        warnings.showwarning = _warning_on_stderr
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code or 0, out, err)


def _warning_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
