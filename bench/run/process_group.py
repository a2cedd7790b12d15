"""Every process a cell starts ends with the cell.

A cell runs in its own session (so its own process group): the rank processes of `ddp` and
`gpipe_dist` inherit that group, so one `killpg` ends them all on a timeout, a failure or
the runner's exit. Killing only the direct child used to leave ranks running under init.

For a runner killed by SIGKILL, which can clean nothing up, the child asks the kernel for a
signal when its parent dies (`set_parent_death_signal`, Linux prctl(PR_SET_PDEATHSIG)).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["set_parent_death_signal", "kill_group", "GroupResult", "run_in_new_group"]

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL, expected_parent: Optional[int] = None) -> bool:
    """Have the kernel send `sig` to this process when its parent dies; False off Linux.

    Call it first thing in a child (rank processes too: `from bench.run.process_group import
    set_parent_death_signal`). If the parent is already gone (it died before the call, or is
    not `expected_parent`), this process signals itself at once instead of living on orphaned.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = expected_parent or os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace_s: float = 3.0, leader: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after `grace_s`.

    `leader` (the group's first process, our child) is reaped while waiting: a zombie leader
    would keep the group looking alive.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if leader is not None:
                leader.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.02)


@dataclass
class GroupResult:
    returncode: Optional[int]  # None when it timed out; negative: killed by that signal
    timed_out: bool
    output_tail: str  # the last lines of stderr (else stdout)


def _tail(*paths: Path, lines: int = 20) -> str:
    for path in paths:
        try:
            text = path.read_text(errors="replace").strip()
        except FileNotFoundError:
            continue
        if text:
            return "\n".join(text.splitlines()[-lines:])
    return ""


def run_in_new_group(cmd: Sequence[str], timeout_s: Optional[float], log_stem: Path,
                     env: Optional[dict] = None, cwd: Optional[Path] = None) -> GroupResult:
    """Run `cmd` as the leader of a new session; end the whole group whatever happens.

    Output goes to `<log_stem>.out/.err` files, not pipes: a grandchild holding a pipe open
    would otherwise keep us waiting after the cell itself has ended. Any exception here (a
    signal handler's too) ends the group before it propagates.
    """
    out, err = Path(f"{log_stem}.out"), Path(f"{log_stem}.err")
    with open(out, "wb") as out_file, open(err, "wb") as err_file:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_file,
                                stderr=err_file, start_new_session=True)
    timed_out = False
    try:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
    finally:
        kill_group(proc.pid, leader=proc)  # also after a normal exit: ranks it left behind
        proc.poll()
    tail = _tail(err, out)
    out.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    return GroupResult(None if timed_out else proc.returncode, timed_out, tail)
