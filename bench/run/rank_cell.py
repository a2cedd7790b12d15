"""`python -m bench.run.rank_cell --grid G.yaml --cell CELL_ID --results DIR [--data-root R]`: one rank of a cell.

The torchrun entry of a distributed cell (DDP, gpipe_dist, decoupled stages with
`executor: processes`), on one node or many:

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:PORT \\
        -m bench.run.rank_cell --grid G.yaml --cell CELL_ID --results results/G

Each process torchrun starts is one rank: it joins the process group from the
environment (env://; gloo on CPU, NCCL on CUDA, timing out with the cell), takes
`cuda:LOCAL_RANK` for a CUDA cell (the CPU otherwise) and runs the same rank
program a rank started by the cell process runs (bench/cell/rank_phases.py).  Rank 0 stores
the row (and a training run's curve and checkpoints) in DIR, the store
`run_matrix.py --results DIR` writes, as the next attempt of that cell; a rank
that fails stores nothing but its traceback on stderr, except rank 0, which
stores the cell's status row (nan, timeout, failed) before it exits 1.

`--grid` is a shipped grid name or a path, `--cell` a cell id as run_matrix.py
names them (`--dry-run` lists their first 12 characters; any unique prefix will do).  Exit 2 with one line: unknown grid or
cell, a cell that runs in one process (not DDP, gpipe_dist or `executor: processes`), not started by
torchrun, WORLD_SIZE not the cell's device count.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

__all__ = ["main", "rank_device", "next_attempt"]


def _fail(message: str) -> int:
    print(f"bench.run.rank_cell: {message}", file=sys.stderr)
    return 2


def rank_device(kind: str, local_rank: int):
    """`cuda:LOCAL_RANK` for a CUDA cell (`auto` with a GPU present), else the CPU."""
    import torch

    cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    return torch.device("cuda", local_rank) if cuda else torch.device("cpu")


def next_attempt(results_dir: Path, cell_id: str) -> int:
    """The attempt number this run's row gets: one past the cell's last stored attempt."""
    from bench.store.read import read_history

    history = read_history(results_dir)
    if not len(history):
        return 1
    mine = history.loc[history["cell_id"] == cell_id, "attempt"].dropna()
    return int(mine.max()) + 1 if len(mine) else 1


def _store(results_dir: Path, row) -> None:
    from bench.store.fragments import append_rows

    row.attempt = next_attempt(results_dir, row.cell_id)
    append_rows(results_dir, [row])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run.rank_cell", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="a shipped grid name or a grid file")
    parser.add_argument("--cell", required=True, help="the cell's id (run_matrix.py --dry-run lists them)")
    parser.add_argument("--results", required=True, help="the results store rank 0 writes the row into")
    parser.add_argument("--data-root", default=None, help="where the datasets are (as run_matrix.py's)")
    args = parser.parse_args(argv)

    from bench.grid import GridError, load_grid

    try:
        grid = load_grid(args.grid)
    except (GridError, FileNotFoundError, ValueError) as exc:
        return _fail(f"grid {args.grid}: {str(exc).splitlines()[0]}")
    found = [c for c in grid.cells if c.cell_id.startswith(args.cell)] if args.cell else []
    cell = found[0] if len(found) == 1 else None
    if cell is None:
        return _fail(f"no cell {args.cell} in grid {args.grid} (run_matrix.py --grid {args.grid} --dry-run lists them)")
    from bench.cell.phases import runs_in_ranks

    if not runs_in_ranks(cell):
        return _fail(f"cell {cell.cell_id[:10]} ({cell.label}) runs in one process, not as ranks: run it with "
                     f"run_matrix.py --grid {args.grid}")
    if not all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        return _fail("RANK, WORLD_SIZE and MASTER_ADDR are not set: start this module with torchrun")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != cell.devices:
        return _fail(f"cell {cell.cell_id[:10]} ({cell.label}) runs on {cell.devices} devices, but torchrun started "
                     f"WORLD_SIZE={world} ranks: use --nnodes x --nproc-per-node = {cell.devices}")
    return _run(cell, rank, world, args)


def _run(cell, rank: int, world: int, args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from bench.cell.rank_phases import ranks_timeout_s, run_rank_program
    from bench.cell.rows import failed_row, utc_now
    from bench.cell.watchdog import EpochTimeout
    from bench.execution.record import NonFiniteLossError
    from bench.execution.threads import cores_per_device, use_threads

    s = cell.settings
    device = rank_device(s.device_kind, int(os.environ.get("LOCAL_RANK", "0")))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    use_threads(s.threads_per_device or cores_per_device(local_world))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    results_dir = Path(args.results)
    started_at, start = utc_now(), time.perf_counter()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=ranks_timeout_s(cell) + 60))
    try:
        row = run_rank_program(cell, rank, world, device, args.data_root, results_dir)
    except Exception as exc:  # noqa: BLE001 - rank 0 turns it into the cell's status row
        traceback.print_exc()
        if rank == 0:
            statuses: dict[type, str] = {NonFiniteLossError: "nan", EpochTimeout: "timeout"}
            status = statuses.get(type(exc), "failed")
            _store(results_dir, failed_row(cell, status, f"{type(exc).__name__}: {exc}",
                                           time.perf_counter() - start, started_at))
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if row is not None:
        _store(results_dir, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
