"""Grid validation: every bad input is one line naming the key and the valid choices, exit 2."""
import subprocess
import sys
import textwrap

import pytest

import run_matrix
from bench.grid import GridError, load_grid
from tests.conftest import ROOT, run_main

BASE = """
axes:
  method: [bp, scpl]
  model: [convnet]
  dataset: [cifar10@synthetic]
  batch_size: [8]
  devices: [1, 2]
settings:
  steps: 2
"""


def _write(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.slow
def test_shipped_grids_load_and_expand():
    for name in ("smoke", "demo.yaml", "speedup", "accuracy"):
        grid = load_grid(name)
        assert grid.cells
        assert len({c.cell_id for c in grid.cells}) == len(grid.cells)
    speedup = load_grid("speedup")
    assert {c.model for c in speedup.cells} == {"vgg8", "transformer"}
    assert {c.batch_size for c in speedup.cells} == {32, 64, 128, 256, 512}
    assert {c.devices for c in speedup.cells} == {1, 2, 4}
    assert {c.method for c in speedup.cells} == {"bp", "scpl", "gpipe", "gpipe_dist", "ddp"}
    accuracy = load_grid("accuracy")
    assert {c.method for c in accuracy.cells} == {"bp", "early_exit", "al", "scpl", "dascpl"}
    assert {c.trial for c in accuracy.cells} == {0, 1, 2, 3, 4}


def test_method_options_per_method(tmp_path):
    grid = load_grid(_write(tmp_path, BASE.replace("method: [bp, scpl]", "method: [bp, gpipe_dist]")
                            .replace("devices: [1, 2]", "devices: [2]")
                            + "  method_options:\n    gpipe_dist: {chunks: 8}\n"))
    by_method = {c.method: c for c in grid.cells}
    assert by_method["gpipe_dist"].settings.options_for("gpipe_dist") == {"chunks": 8}
    assert by_method["bp"].settings.options_for("bp") == {}
    # a cell's identity holds only the options its method reads
    assert by_method["bp"].identity()["settings"]["method_options"] == {}
    with pytest.raises(GridError, match=r"settings.method_options.chunks: unknown key; bp accepts no options"):
        load_grid(_write(tmp_path, BASE + "  method_options: {chunks: 8}\n"))


def test_expansion_exclude_include(tmp_path):
    path = _write(tmp_path, BASE + "exclude:\n  - {method: bp, devices: 2}\ninclude:\n  - {method: bp, devices: 2, batch_size: 16}\n")
    cells = load_grid(str(path)).cells
    labels = {(c.method, c.devices, c.batch_size) for c in cells}
    assert labels == {("bp", 1, 8), ("scpl", 1, 8), ("scpl", 2, 8), ("bp", 2, 16)}


def test_cell_id_depends_on_configuration_only(tmp_path):
    a = load_grid(str(_write(tmp_path, BASE))).cells
    b = load_grid(str(_write(tmp_path, BASE.replace("steps: 2", "steps: 3")))).cells
    assert {c.cell_id for c in a}.isdisjoint({c.cell_id for c in b})
    assert [c.cell_id for c in a] == [c.cell_id for c in load_grid(str(_write(tmp_path, BASE))).cells]


@pytest.mark.parametrize(
    "change,expected",
    [
        (("method: [bp, scpl]", "method: [bp, scpl, magic]"), "unknown method 'magic'; choose one of"),
        (("model: [convnet]", "model: [vgg99]"), "unknown model 'vgg99'; choose one of"),
        (("dataset: [cifar10@synthetic]", "dataset: [mnist]"), "mnist"),
        (("devices: [1, 2]", "devices: [5]"), "cannot be split over 5 devices; choose devices in [1, 2, 3, 4]"),
        (("batch_size: [8]", "batch_size: [1]"), "too small for scpl"),
        (("steps: 2", "stepz: 2"), "settings.stepz: unknown key"),
        (("axes:", "axis:"), "axis: unknown key; valid keys: name, description, axes"),
        (("dataset: [cifar10@synthetic]", "dataset: [imdb@synthetic]"), "vision model but dataset"),
    ],
)
def test_bad_grids_name_the_problem(tmp_path, change, expected):
    path = _write(tmp_path, BASE.replace(*change))
    with pytest.raises(GridError) as info:
        load_grid(str(path))
    problems = info.value.problems
    assert any(expected in line for line in problems), problems
    # one line per distinct problem, however many cells share it
    assert len([line for line in problems if expected in line]) == 1


@pytest.mark.slow
def test_cli_exit_code_2_one_line_no_traceback(tmp_path, capsys):
    """The one bad-input test that starts run_matrix.py itself: what a fresh interpreter prints, imports and all."""
    path = _write(tmp_path, BASE.replace("model: [convnet]", "model: [vgg99]"))
    proc = subprocess.run([sys.executable, "run_matrix.py", "--grid", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "vgg99" in proc.stderr and "Traceback" not in proc.stderr
    missing = run_main(run_matrix.main, ["--grid", "nope"], capsys)
    assert missing.returncode == 2 and "'smoke'" in missing.stderr


def test_dry_run_lists_cells_and_only_filters(capsys):
    proc = run_main(run_matrix.main, ["--grid", "smoke", "--dry-run", "--only", "method=scpl"], capsys)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("2 cells: 0 done, 2 to run") and all("scpl/" in line for line in lines[:-1])


def test_missing_real_dataset_stops_before_any_cell(tmp_path, capsys):
    grid = _write(tmp_path, BASE.replace("cifar10@synthetic", "cifar10"))
    results = tmp_path / "res"
    proc = run_main(run_matrix.main, ["--grid", str(grid), "--data-root", str(tmp_path / "none"),
                                      "--results", str(results)], capsys)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "cifar-10-batches-py/data_batch_1" in line and "cifar-10-python.tar.gz" in line
    assert not results.exists()


def test_a_device_is_the_same_share_of_cores_in_every_cell(tmp_path):
    from bench.execution.devices import available_cores

    grid = load_grid(_write(tmp_path, BASE))  # devices [1, 2]
    assert {c.settings.threads_per_device for c in grid.cells} == {max(1, available_cores() // 2)}
    pinned = load_grid(_write(tmp_path, BASE + "  threads_per_device: 3\n"))
    assert {c.settings.threads_per_device for c in pinned.cells} == {3}


def test_missing_glove_stops_before_any_cell(tmp_path, capsys):
    grid = _write(tmp_path, BASE.replace("model: [convnet]", "model: [transformer]")
                  .replace("cifar10@synthetic", "imdb@synthetic").replace("method: [bp, scpl]", "method: [bp]")
                  .replace("devices: [1, 2]", "devices: [1]") + "  glove: true\n")
    proc = run_main(run_matrix.main, ["--grid", str(grid), "--data-root", str(tmp_path / "none"),
                                      "--results", str(tmp_path / "res")], capsys)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "glove.6B.300d.txt" in line and "glove.6B.zip" in line
