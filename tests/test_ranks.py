"""A rank that dies or hangs ends the whole call, within its timeout, and leaves no process behind.

The faults are made, not raced: a rank exits (`os._exit`) or stops itself
(SIGSTOP) at a point of its job, while the other waits for it in a collective.
The parent's clock (`ranks._now`) reaches the deadline the moment the stopped
rank is seen stopped, so the timeout path runs without waiting out a real timeout.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from bench.execution import ranks, resolve_devices
from bench.execution.ranks import RanksFailed, run_ranks

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")]


def state(pid: int) -> str:
    """The process's state letter (R, S, T = stopped, Z = zombie), or '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def pid_of(pid_dir: Path, rank: int) -> int:
    return int((pid_dir / f"rank{rank}").read_text())


def record_pid(pid_dir: str, rank: int) -> None:
    path = Path(pid_dir) / f"rank{rank}"
    path.with_suffix(".tmp").write_text(str(os.getpid()))
    path.with_suffix(".tmp").replace(path)  # whole, or not there


def faulty_job(rank: int, world: int, device, pid_dir: str, fault: str) -> int:
    """Rank 1 exits or stops; rank 0 waits for it at a barrier (a collective it never joins)."""
    record_pid(pid_dir, rank)
    dist.barrier()  # both pids are recorded before the fault
    if rank == 1 and fault == "exit":
        os._exit(3)
    if rank == 1 and fault == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    dist.barrier()
    return rank


def deadline_once_stopped(monkeypatch, pid_dir: Path, rank: int) -> None:
    """The parent's clock jumps past any deadline once `rank` is stopped (state T)."""
    def now() -> float:
        path = pid_dir / f"rank{rank}"
        stopped = path.exists() and state(int(path.read_text())) == "T"
        return time.monotonic() + (1e9 if stopped else 0.0)

    monkeypatch.setattr(ranks, "_now", now)


def assert_gone(pid_dir: Path, world: int = 2) -> None:
    for rank in range(world):
        assert state(pid_of(pid_dir, rank)) == "", f"rank {rank} is still there"


def test_a_rank_that_exits_ends_the_call_and_is_named(tmp_path):
    with pytest.raises(RanksFailed, match=r"rank 1: exited with code 3 without a result"):
        run_ranks(faulty_job, resolve_devices(2, "cpu", threads_per_device=1), (str(tmp_path), "exit"),
                  timeout_s=600)  # not a timeout: the call ends as soon as the parent sees rank 1 dead
    assert_gone(tmp_path)


def test_a_stopped_rank_ends_the_call_at_its_timeout(tmp_path, monkeypatch):
    deadline_once_stopped(monkeypatch, tmp_path, rank=1)
    with pytest.raises(TimeoutError, match=r"ranks \[0, 1\] did not report within 600 s"):
        run_ranks(faulty_job, resolve_devices(2, "cpu", threads_per_device=1), (str(tmp_path), "stop"),
                  timeout_s=600)
    assert_gone(tmp_path)  # the stopped rank too: it is killed, not asked to terminate


_KILLED_PARENT = """
import sys
from bench.execution import resolve_devices
from bench.execution.ranks import run_ranks
sys.path.insert(0, sys.argv[2])
from test_ranks import faulty_job
run_ranks(faulty_job, resolve_devices(2, "cpu", threads_per_device=1), (sys.argv[1], "stop"), timeout_s=600)
"""


def test_ranks_die_with_a_killed_parent(tmp_path):
    """kill -9 of the process that started the ranks (the cell) ends them too: nobody is left to end them."""
    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT, str(tmp_path), str(Path(__file__).parent)],
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        limit = time.monotonic() + 300
        while not ((tmp_path / "rank1").exists() and state(pid_of(tmp_path, 1)) == "T"):
            assert parent.poll() is None and time.monotonic() < limit, "the ranks never started"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
    limit = time.monotonic() + 60
    while any(state(pid_of(tmp_path, r)) not in ("", "Z") for r in (0, 1)):  # a zombie is dead, awaiting its reaper
        assert time.monotonic() < limit, "a rank outlived its killed parent"
        time.sleep(0.05)
