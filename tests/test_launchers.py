"""Launchers: the Slurm job each cell asks for (a pure function, no cluster needed), the
options that build it, and real cells run as submitit jobs on the local executor."""
import argparse
import dataclasses
import os

import pandas as pd
import pytest

from bench.grid import load_grid
from bench.run.cli import add_run_arguments, launcher_from_args, slurm_options_from_args
from bench.run.job import run_cell_job
from bench.run.launchers import LaunchContext, LocalLauncher, SubmititLauncher
from bench.run.multinode import run_node_task
from bench.run.runner import run_grid
from bench.run.slurm import (
    DEFAULT_GPUS_PER_NODE,
    TIME_MARGIN_MIN,
    NodeShape,
    SlurmOptions,
    node_shape,
    parse_slurm_time,
    slurm_parameters,
)
from bench.store.fragments import list_fragments
from bench.store.read import read_history, read_results


def _cell(devices=1, device_kind="cpu", timeout_s=600.0, threads=None):
    cell = dataclasses.replace(load_grid("smoke").cells[0], devices=devices)  # only sizes are read
    changes = dict(device_kind=device_kind, timeout_s=timeout_s, threads_per_device=threads)
    replace = getattr(cell.settings, "replace", None) or (lambda **kw: dataclasses.replace(cell.settings, **kw))
    return dataclasses.replace(cell, settings=replace(**changes))


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


def test_cpu_cell_job_is_sized_by_its_devices_and_timeout():
    params = slurm_parameters(_cell(devices=2, threads=2, timeout_s=900), SlurmOptions(), "smoke")
    assert params == {"name": "scplbench-smoke", "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 4,
                      "timeout_min": 15 + TIME_MARGIN_MIN}


def test_gpu_cells_get_one_gpu_per_device():
    cuda = slurm_parameters(_cell(devices=2, device_kind="cuda"), SlurmOptions(), "g")
    assert cuda["gpus_per_node"] == 2 and cuda["cpus_per_task"] == 4  # at least 2 cores per GPU
    auto = _cell(devices=2, device_kind="auto")
    assert "gpus_per_node" not in slurm_parameters(auto, SlurmOptions(), "g")  # a CPU cluster
    assert slurm_parameters(auto, SlurmOptions(gpus=True), "g")["gpus_per_node"] == 2


def test_cli_options_become_job_parameters():
    args = _args("--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "2:00:00", "--slurm-mem", "64",
                 "--slurm-cpus-per-task", "8", "--slurm-gpus", "--slurm-array-parallelism", "4",
                 "--slurm-account", "lab", "--slurm-extra", "constraint=a100", "--slurm-extra", "qos=high")
    params = slurm_parameters(_cell(devices=4, device_kind="auto"), slurm_options_from_args(args), "speedup")
    assert params == {
        "name": "scplbench-speedup", "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 8, "timeout_min": 120,
        "gpus_per_node": 4, "mem_gb": 64, "slurm_partition": "gpu", "slurm_array_parallelism": 4,
        "slurm_account": "lab", "slurm_additional_parameters": {"constraint": "a100", "qos": "high"},
    }
    launcher = launcher_from_args(args)
    assert isinstance(launcher, SubmititLauncher) and launcher.cluster == "slurm" and launcher.wait
    assert isinstance(launcher_from_args(_args()), LocalLauncher)


def test_slurm_time_forms():
    assert [parse_slurm_time(t) for t in ["90", "1:30", "1:30:00", "2-00", "1-02:30", "45m", "2h"]] == \
        [90, 2, 90, 2880, 1590, 45, 120]
    with pytest.raises(ValueError, match="--slurm-time"):
        parse_slurm_time("soon")


@pytest.mark.parametrize("argv, message", [
    (["--no-wait"], "--no-wait needs --launcher slurm"),
    (["--launcher", "slurm", "--slurm-extra", "constraint"], "KEY=VALUE"),
    (["--launcher", "slurm", "--slurm-mem", "0"], "at least 1"),
])
def test_bad_launcher_options_are_one_line(argv, message):
    with pytest.raises(ValueError, match=message):
        launcher_from_args(_args(*argv))


@pytest.mark.slow
def test_two_cells_as_submitit_local_jobs(tmp_path):
    """Each job runs the cell entry and stores its own row; jobs run one at a time."""
    grid = load_grid("smoke")
    cells = [c for c in grid.cells if c.devices == 1][:2]
    summary = run_grid(grid, tmp_path, cells=cells, progress=False, launcher=SubmititLauncher("local"))
    assert summary.statuses == {"ok": 2} and summary.exit_code == 0
    frame = read_results(tmp_path)
    assert sorted(frame["cell_id"]) == sorted(c.cell_id for c in cells) and set(frame["attempt"]) == {1}
    assert list_fragments(tmp_path) == [] and len(pd.read_parquet(tmp_path / "results.parquet")) == 2
    # one job at a time: each started after the previous one ended
    starts = sorted(zip(pd.to_datetime(frame["started_at"]), pd.to_datetime(frame["finished_at"])))
    assert starts[1][0] >= starts[0][1].floor("s")
    assert len(list((tmp_path / "jobs").glob("*/*_submitted.pkl"))) == 2  # submitit's job folders
    again = run_grid(grid, tmp_path, cells=cells, progress=False, launcher=SubmititLauncher("local"))
    assert again.ran == 0 and len(read_history(tmp_path)) == 2


def _gpu_cell(method="ddp", devices=16, executor="threads"):
    return dataclasses.replace(_cell(devices=devices, device_kind="cuda", timeout_s=1200.0, threads=1),
                               method=method, settings=_cell().settings.replace(
                                   device_kind="cuda", timeout_s=1200.0, threads_per_device=1, executor=executor))


def test_a_cell_beyond_one_node_is_a_job_of_one_torchrun_task_per_node():
    """16 DDP ranks on 8-GPU nodes: 2 nodes, one task each (its torchrun starts the node's 8 ranks)."""
    params = slurm_parameters(_gpu_cell("ddp", 16), SlurmOptions(gpus_per_node=8, partition="gpu"), "big")
    assert params == {"name": "scplbench-big", "nodes": 2, "tasks_per_node": 1, "gpus_per_node": 8,
                      "cpus_per_task": 16, "timeout_min": 20 + TIME_MARGIN_MIN, "slurm_partition": "gpu"}
    assert node_shape(_gpu_cell("gpipe_dist", 8), SlurmOptions(gpus_per_node=4)) == NodeShape(2, 4)
    assert node_shape(_gpu_cell("scpl", 8, executor="processes"), SlurmOptions(gpus_per_node=2)) == NodeShape(4, 2)
    one = slurm_parameters(_gpu_cell("ddp", 8), SlurmOptions(), "big")  # fits the default 8-GPU node: as before
    assert (one["nodes"], one["gpus_per_node"], DEFAULT_GPUS_PER_NODE) == (1, 8, 8)
    cpu = _cell(devices=16)  # CPU workers need no GPU node: one node, whatever the count
    assert node_shape(cpu, SlurmOptions(gpus_per_node=8)) == NodeShape(1, 0)


@pytest.mark.parametrize("cell, message", [
    (_gpu_cell("ddp", 12), "12 is no whole number of 8-GPU nodes.*--slurm-gpus-per-node 6 \\(2 nodes\\)"),
    (_gpu_cell("bp", 16), "bp runs in one process, which cannot span nodes: use at most 8 devices"),
    (_gpu_cell("gpipe", 16), "gpipe runs in one process"),
    (_gpu_cell("scpl", 16), "set executor: processes"),
])
def test_impossible_node_shapes_are_one_line(cell, message):
    with pytest.raises(ValueError, match=message) as info:
        node_shape(cell, SlurmOptions(gpus_per_node=8))
    assert "\n" not in str(info.value) and cell.cell_id in str(info.value)


def test_run_matrix_refuses_an_impossible_shape_before_submitting(tmp_path, capsys):
    grid = tmp_path / "big.yaml"
    grid.write_text("axes: {method: [ddp, bp], model: [convnet], dataset: [cifar10@synthetic], batch_size: [32],\n"
                    "       devices: [4]}\nsettings: {device_kind: auto, balance: even}\n")
    import run_matrix

    argv = ["--grid", str(grid), "--results", str(tmp_path / "r"), "--launcher", "slurm", "--slurm-gpus"]
    assert run_matrix.main([*argv, "--slurm-gpus-per-node", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bp runs in one process" in err and "more cells" not in err  # ddp fits
    assert run_matrix.main([*argv, "--slurm-gpus-per-node", "0"]) == 2
    assert "--slurm-gpus-per-node 0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r" / "jobs").exists()  # nothing submitted


def test_submitit_writes_the_multi_node_job_as_sbatch_asks(tmp_path, monkeypatch):
    """The parameters mean what we want to Slurm: submitit's own sbatch text for them (no cluster: a stub srun)."""
    import submitit

    (tmp_path / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs" / "%j", cluster="slurm")
    executor.update_parameters(**slurm_parameters(_gpu_cell("ddp", 16), SlurmOptions(gpus_per_node=8), "big"))
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit DIR", "uid")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=16", "#SBATCH --time=30"):
        assert line in script.splitlines()
    assert "\nsrun " in script  # one task per node, each running the pickled node task


def test_a_multi_node_cell_is_submitted_as_one_node_task_per_node(tmp_path):
    """The job function and arguments: torchrun per node on a one-cell grid file that gives back the cell."""
    cell = dataclasses.replace(_gpu_cell("ddp", 16), batch_size=32,
                               settings=_gpu_cell().settings.replace(device_kind="auto"))
    launcher = SubmititLauncher("slurm", SlurmOptions(gpus=True, gpus_per_node=8))
    ctx = LaunchContext("big", tmp_path, "/data", False)
    function, arguments = launcher._call(cell, 3, ctx)
    assert function is run_node_task and arguments[2:] == (3, "/data", str(tmp_path.resolve()), 8)
    assert arguments[0] == str(tmp_path.resolve() / "jobs" / "cells" / f"{cell.cell_id}.yaml")
    assert [c.cell_id for c in load_grid(arguments[0]).cells] == [cell.cell_id]
    one_node = dataclasses.replace(cell, devices=8)
    assert launcher._call(one_node, 1, ctx)[0] is run_cell_job  # fits a node: the cell process starts its ranks
    assert SubmititLauncher("local")._call(cell, 1, ctx)[0] is run_cell_job  # submitit-local: one machine


def test_slurm_cells_are_not_held_to_this_machines_gpus(tmp_path, monkeypatch, capsys):
    """A login node with 2 GPUs refuses a 4-GPU grid run here, not one submitted to Slurm."""
    import bench.execution.capacity
    import run_matrix

    monkeypatch.setattr(bench.execution.capacity, "cuda_device_count", lambda: 2)
    grid = tmp_path / "four.yaml"
    grid.write_text("axes: {method: [ddp], model: [convnet], dataset: [cifar10@synthetic], batch_size: [32],\n"
                    "       devices: [4]}\nsettings: {device_kind: auto}\n")
    argv = ["--grid", str(grid), "--results", str(tmp_path / "r"), "--dry-run"]
    assert run_matrix.main(argv) == 2 and "has 2 GPUs" in capsys.readouterr().err
    assert run_matrix.main([*argv, "--launcher", "slurm", "--slurm-gpus"]) == 0
