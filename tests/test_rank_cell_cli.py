"""`python -m bench.run.rank_cell` refuses what it cannot run with one line and exit 2, before any process group.

Run as `main()` in the test process (conftest.run_main): the subject is what the command prints and
its exit status, not its interpreter.  A BP cell of demo.yaml runs in one process; a one-cell grid
written here holds a 2-device DDP cell, a distributed one.
"""
from conftest import run_main

from bench.run.rank_cell import main

BP_D1 = "1b31e96faab6"  # bp/vgg8/cifar10@synthetic/b32/d1/t0 in demo.yaml


def _one_line_exit_2(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_an_unknown_cell_is_one_line_exit_2(tmp_path, capsys):
    result = run_main(main, ["--grid", "demo.yaml", "--cell", "nope", "--results", str(tmp_path)], capsys)
    _one_line_exit_2(result, "no cell nope", "--dry-run")


def test_a_cell_that_runs_in_one_process_is_refused(tmp_path, capsys):
    result = run_main(main, ["--grid", "demo.yaml", "--cell", BP_D1, "--results", str(tmp_path)], capsys)
    _one_line_exit_2(result, "runs in one process", "run_matrix.py")


def test_a_start_without_torchrun_is_refused(tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nsettings: {steps: 1, device_kind: cpu}\n"
                    "axes: {method: [ddp], model: [convnet], dataset: [cifar10@synthetic], batch_size: [8], devices: [2]}\n")
    from bench.grid import load_grid

    cell = load_grid(str(grid)).cells[0].cell_id
    result = run_main(main, ["--grid", str(grid), "--cell", cell, "--results", str(tmp_path)], capsys)
    _one_line_exit_2(result, "torchrun")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    result = run_main(main, ["--grid", str(grid), "--cell", cell, "--results", str(tmp_path)], capsys)
    _one_line_exit_2(result, "WORLD_SIZE=3", "2 devices")
