"""A cell on several nodes: the rendezvous each node's task reads from Slurm's environment, the torchrun
command it starts, and the one-cell grid file its ranks find the cell in (no cluster needed)."""
import sys

import pytest

from bench.grid import load_grid
from bench.run.cell_grid import write_cell_grid
from bench.run.multinode import RDZV_PORT_BASE, first_host, rdzv_port, slurm_torchrun_command, torchrun_command


@pytest.mark.parametrize("nodelist, host", [
    ("gpu017", "gpu017"),
    ("gpu[007-009,012]", "gpu007"),
    ("gpu[007-009,012],cpu1", "gpu007"),
    ("a100-[01,03]", "a100-01"),
    ("rack[2-3]-node[08-09]", "rack2-node08"),
    ("n1,n[2-4]", "n1"),
    ("127.0.0.1", "127.0.0.1"),
])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_a_broken_node_list_is_named():
    with pytest.raises(ValueError, match="SLURM_JOB_NODELIST"):
        first_host("gpu[01-02")


def test_rendezvous_port_is_the_jobs_own():
    assert rdzv_port("4242") == RDZV_PORT_BASE + 242 == rdzv_port("4242")
    assert rdzv_port("4242") != rdzv_port("4243") and RDZV_PORT_BASE <= rdzv_port("999999") < RDZV_PORT_BASE + 1000


def test_each_node_runs_torchrun_with_slurms_rendezvous():
    env = {"SLURM_JOB_ID": "81234", "SLURM_JOB_NODELIST": "gpu[003-004]", "SLURM_NNODES": "2", "SLURM_NODEID": "1"}
    command = slurm_torchrun_command(env, 8, "/shared/results/big/jobs/cells/abc.yaml", "abc", "/shared/results/big")
    assert command == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "8",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"gpu003:{RDZV_PORT_BASE + 234}", "--rdzv-id", "81234",
        "-m", "bench.run.rank_cell", "--grid", "/shared/results/big/jobs/cells/abc.yaml", "--cell", "abc",
        "--results", "/shared/results/big"]
    with_data = torchrun_command(1, 2, "h:1", "7", "g.yaml", "abc", "r", data_root="/data")
    assert with_data[-2:] == ["--data-root", "/data"]
    with pytest.raises(RuntimeError, match="not inside a Slurm job: SLURM_JOB_NODELIST"):
        slurm_torchrun_command({"SLURM_JOB_ID": "1", "SLURM_NNODES": "2"}, 8, "g", "c", "r")


def test_the_cell_grid_file_gives_back_the_same_cell(tmp_path):
    """A cell changed by --set overrides still has its id in the file the ranks load."""
    grid = load_grid("smoke", overrides=["settings.steps=3", "settings.method_options={scpl: {}, bp: {}}"])
    for cell in grid.cells[:2]:
        again = load_grid(str(write_cell_grid(cell, tmp_path))).cells
        assert [(c.cell_id, c.grid, c.settings) for c in again] == [(cell.cell_id, cell.grid, cell.settings)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{c.cell_id}.yaml" for c in grid.cells[:2])
