"""Two "nodes" on this machine: a distributed cell started by two torchrun agents (`--nnodes 2
--nproc-per-node 1`, c10d rendezvous on 127.0.0.1) stores the same row as the one-node local run.

Each agent is a subprocess (`python -m torch.distributed.run`), as each node of a Slurm job
starts one (bench/run/multinode.py). For DDP the two agents are started by two Slurm node
tasks (`run_node_task` with the environment Slurm gives a 2-node job, both hosts 127.0.0.1),
so the rendezvous from Slurm's environment and the reporting task run for real; for the
others by the test, the second agent through `run_torchrun`, which returns the row rank 0
stored. The cells: DDP, torch.distributed GPipe and SCPL with `executor: processes`, one epoch
of a tiny training run each (gloo, CPU), so training, the in-rank evaluation and the curve
are all compared, bit for bit, and the final parameters by their checksum (`param_checksum`).
"""
import json
import math
import socket
import subprocess
import sys

import pytest

from bench import REPO_ROOT
from bench.grid import load_grid
from bench.run.cell_process import cell_env
from bench.run.multinode import RDZV_PORT_BASE, run_torchrun, torchrun_command
from bench.run.runner import run_grid
from bench.store.curves import read_curves
from bench.store.read import read_results
from bench.store.records import from_columns
from bench.store.row import ResultRow
from tests.conftest import InProcessLauncher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO_ROOT / "bench" / "run" / "rank_cell.py").exists(),
                       reason="bench/run/rank_cell.py (the torchrun entry of a distributed cell) is not written yet"),
]

GRID = """
name: two-nodes
axes: {method: [ddp, gpipe_dist, scpl], model: [convnet], dataset: [cifar10@synthetic], batch_size: [8], devices: [2]}
settings:
  epochs: 1
  max_train_items: 24
  max_test_items: 16
  eval_batch_size: 16
  val_fraction: 0.25
  balance: even
  device_kind: cpu
  threads_per_device: 1
  executor: processes
  count_train_memory: false
  timeout_s: 120
  method_options: {gpipe_dist: {chunks: 2}}
"""
# what must be equal: the training (losses, the final parameters' checksum), the evaluation in the ranks, and
# what the run recorded
SAME = ["status", "final_train_loss", "param_checksum", "test_acc", "val_acc", "eval_samples", "test_acc_curve",
        "val_acc_curve", "steps_per_epoch", "train_items", "balance", "executor", "epochs", "params_effective"]
CURVE_SAME = ["epoch", "train_loss", "stage_losses", "lr", "val_acc", "test_acc", "exit_acc"]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    """The grid's cells on one node: the cell starts its ranks, as under run_matrix.py (the cell itself runs in
    the test process, tests/conftest.py's InProcessLauncher, to spare a torch import per cell)."""
    folder = tmp_path_factory.mktemp("one-node")
    grid_file = folder / "two-nodes.yaml"
    grid_file.write_text(GRID)
    grid = load_grid(str(grid_file))
    summary = run_grid(grid, folder / "results", progress=False, launcher=InProcessLauncher())
    assert summary.statuses == {"ok": len(grid.cells)}, summary.failure_text()
    return grid_file, grid, folder / "results"


def _checked(value):
    return [float(v) for v in value] if hasattr(value, "__len__") and not isinstance(value, str) else value


def _two_agents(cell, grid_file, results):
    """Two torchrun agents of one rendezvous; the second through `run_torchrun`, which returns the stored row."""
    from bench.execution.ranks import free_port

    command = torchrun_command(2, 1, f"127.0.0.1:{free_port()}", f"two-nodes-{cell.method}", grid_file, cell.cell_id,
                               results)
    other = subprocess.Popen(command, cwd=REPO_ROOT, env=cell_env(cell), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        row = run_torchrun(command, cell, results)
        _, err = other.communicate(timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0, err[-2000:]
    return row


def _free_rendezvous_port() -> int:
    for port in range(RDZV_PORT_BASE, RDZV_PORT_BASE + 1000):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port for the rendezvous")


def _two_slurm_tasks(cell, grid_file, results):
    """The tasks of a 2-node Slurm job as srun starts them (`run_node_task`, Slurm's environment), both on this host."""
    job_id = str(_free_rendezvous_port() - RDZV_PORT_BASE)  # the task derives its port from the job id
    code = ("import json, sys; from bench.run.multinode import run_node_task; "
            "print(json.dumps(run_node_task(*json.loads(sys.argv[1]))))")
    arguments = json.dumps([str(grid_file), cell.to_json(), 1, None, str(results), 1])
    tasks = [subprocess.Popen([sys.executable, "-c", code, arguments], cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                              env={**cell_env(cell), "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": "127.0.0.1",
                                   "SLURM_NNODES": "2", "SLURM_PROCID": str(task), "SLURM_NODEID": str(task)})
             for task in range(2)]
    try:
        outputs = [task.communicate(timeout=150) for task in tasks]
    finally:
        for task in tasks:
            task.kill()
    assert [t.returncode for t in tasks] == [0, 0], [err[-2000:] for _, err in outputs]
    assert outputs[1][0].splitlines()[-1] == "null"  # only Slurm's process 0 reports the row
    return from_columns(ResultRow, json.loads(outputs[0][0].splitlines()[-1]))


@pytest.mark.parametrize("method, start", [("ddp", _two_slurm_tasks), ("gpipe_dist", _two_agents),
                                           ("scpl", _two_agents)])
def test_two_nodes_store_the_one_node_row(method, start, one_node, tmp_path):
    grid_file, grid, local_results = one_node
    cell = next(c for c in grid.cells if c.method == method)
    results = tmp_path / "results"
    row = start(cell, grid_file, results)
    assert row is not None and row.status == "ok", row and row.error
    local = read_results(local_results).set_index("cell_id").loc[cell.cell_id]
    stored = read_results(results).set_index("cell_id").loc[cell.cell_id]
    for column in SAME:
        assert _checked(stored[column]) == _checked(local[column]), column
    assert stored["param_checksum"]  # a sha256, not a missing value that equals another
    assert stored["devices"] == 2 and len(stored["device_names"]) == 2 and math.isfinite(stored["epoch_time_s"])
    local_curve, curve = (read_curves(folder).set_index("cell_id").loc[[cell.cell_id]]
                          for folder in (local_results, results))
    assert len(local_curve) == len(curve) == 1
    for column in CURVE_SAME:
        assert [_checked(v) for v in curve[column]] == [_checked(v) for v in local_curve[column]], column
