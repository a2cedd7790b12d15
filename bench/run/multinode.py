"""A cell on several nodes: the torchrun command of each node and the Slurm task that starts it.

A multi-node job (bench/run/slurm.py `node_shape`) has one task per node. Each task runs
`run_node_task`, which reads the rendezvous from Slurm's environment and starts

    python -m torch.distributed.run --nnodes $SLURM_NNODES --nproc-per-node G \\
        --rdzv-backend c10d --rdzv-endpoint <first node of $SLURM_JOB_NODELIST>:<port> \\
        --rdzv-id $SLURM_JOB_ID -m bench.run.rank_cell --grid <cell grid> --cell <id> --results <dir>

(`python -m torch.distributed.run` is `torchrun` run by the job's own interpreter, so the
ranks import this checkout's venv whatever PATH the node has). Every task parses the same
node list the same way, so all agree on the endpoint without talking to each other; the
agent on that host serves the c10d store. Rank 0 of the job (on whichever node the
rendezvous put it) stores the row and curves in the shared results folder; the task of
Slurm's first process then reads that row back and returns it, or, when the ranks ended
without storing one (timeout, a node lost, a rank killed), stores a status row itself.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Mapping, Optional

from bench.grid import Cell
from bench.store.row import ResultRow

__all__ = ["first_host", "rdzv_port", "torchrun_command", "slurm_torchrun_command", "run_torchrun", "run_node_task",
           "RDZV_PORT_BASE"]

RDZV_PORT_BASE = 29500  # torchrun's default; a job adds its id modulo 1000 so jobs sharing a node differ


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (`SLURM_JOB_NODELIST`), as `scontrol show hostnames` would list it.

    `gpu[007-009,012],cpu1` -> `gpu007`: the first name of the list, each bracket replaced by
    the start of its first range (zero padding kept, as Slurm writes it).
    """
    text = nodelist.strip()
    depth, end = 0, len(text)
    for i, char in enumerate(text):  # the list's first entry ends at the first comma outside brackets
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    entry = text[:end]
    host = re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], entry)
    if not host or any(c in host for c in "[],"):
        raise ValueError(f"SLURM_JOB_NODELIST {nodelist!r}: not a node list Slurm writes")
    return host


def rdzv_port(job_id: str) -> int:
    """The rendezvous port of a job: the same in every task of the job, different for jobs sharing a node."""
    digits = re.sub(r"\D", "", job_id)
    return RDZV_PORT_BASE + (int(digits) % 1000 if digits else 0)


def torchrun_command(nnodes: int, nproc_per_node: int, endpoint: str, rdzv_id: str, grid_file: Path | str,
                     cell_id: str, results_dir: Path | str, data_root: Optional[str] = None,
                     python: str = sys.executable) -> list[str]:
    """The command a node runs for its ranks of a cell (the same on every node)."""
    command = [python, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node",
               str(nproc_per_node), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
               "-m", "bench.run.rank_cell", "--grid", str(grid_file), "--cell", cell_id, "--results",
               str(results_dir)]
    return command + (["--data-root", data_root] if data_root else [])


def slurm_torchrun_command(env: Mapping[str, str], nproc_per_node: int, grid_file: Path | str, cell_id: str,
                           results_dir: Path | str, data_root: Optional[str] = None) -> list[str]:
    """`torchrun_command` with the rendezvous read from a Slurm job's environment."""
    missing = [k for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NNODES") if not env.get(k)]
    if missing:
        raise RuntimeError(f"not inside a Slurm job: {', '.join(missing)} unset")
    job_id = env["SLURM_JOB_ID"]
    endpoint = f"{first_host(env['SLURM_JOB_NODELIST'])}:{rdzv_port(job_id)}"
    return torchrun_command(int(env["SLURM_NNODES"]), nproc_per_node, endpoint, job_id, grid_file, cell_id,
                            results_dir, data_root)


def _attempts_of(results_dir: Path, cell_id: str) -> set:
    from bench.store.read import read_history

    history = read_history(results_dir)
    if not len(history):
        return set()
    return set(history.loc[history["cell_id"] == cell_id, "attempt_id"])


def _new_row(results_dir: Path, cell_id: str, before: set) -> Optional[ResultRow]:
    """The row rank 0 stored for this cell since `before` (its attempt ids then), or None."""
    from bench.store.read import frame_rows, read_history

    history = read_history(results_dir)
    if not len(history):
        return None
    mine = history[(history["cell_id"] == cell_id) & ~history["attempt_id"].isin(before)]
    return frame_rows(mine.tail(1))[0] if len(mine) else None


def run_torchrun(command: list[str], cell: Cell, results_dir: Path, attempt: int = 1,
                 reporter: bool = True) -> Optional[ResultRow]:
    """Run a torchrun `command` for `cell` (its own process group, the cell's timeout); the cell's row.

    The reporter (one per job) returns the row rank 0 stored in `results_dir`, or, when the
    ranks ended without one, stores and returns a status row (`exit_row`: timeout, killed,
    failed, attempt `attempt`); the other nodes' tasks return None.
    """
    from bench import REPO_ROOT
    from bench.run.cell_process import cell_env, cell_timeout_s, exit_row
    from bench.run.process_group import run_in_new_group
    from bench.run.scratch import scratch_dir
    from bench.store.fragments import append_rows

    before = _attempts_of(results_dir, cell.cell_id) if reporter else set()
    limit, start = cell_timeout_s(cell), time.perf_counter()
    with scratch_dir(results_dir) as tmp:
        result = run_in_new_group(command, limit, tmp / f"{cell.cell_id}-torchrun", cell_env(cell), REPO_ROOT)
    print(result.output_tail, file=sys.stderr, flush=True)  # the end of torchrun's output, into the job's log
    if not reporter:
        return None
    row = None if result.timed_out else _new_row(results_dir, cell.cell_id, before)
    if row is None:  # the ranks ended without a row: say why, as a local cell's runner would
        row = exit_row(cell, result, limit, time.perf_counter() - start, what="torchrun")
        row.attempt = attempt
        append_rows(results_dir, [row])
    return row


def run_node_task(grid_file: str, cell_json: str, attempt: int, data_root: Optional[str], results_dir: str,
                  nproc_per_node: int) -> Optional[dict]:
    """What each node's task of a multi-node Slurm job runs (submitit calls it once per task).

    Returns the cell's row (as a dict) from the task of Slurm's process 0, None from the others.
    """
    cell = Cell.from_json(cell_json)
    command = slurm_torchrun_command(os.environ, nproc_per_node, grid_file, cell.cell_id, results_dir, data_root)
    print(" ".join(command), flush=True)  # into the task's Slurm log
    row = run_torchrun(command, cell, Path(results_dir), attempt, reporter=os.environ.get("SLURM_PROCID", "0") == "0")
    return None if row is None else row.to_dict()
