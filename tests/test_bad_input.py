"""Malformed grids found by trying them as a new user would: every one is refused at load.

Each is a one-line problem naming its key path and the value (exit 2 from the
command line), found before any cell runs, and all problems of a grid are
listed together rather than the first only.
"""
import pytest

import run_matrix
from bench.grid import GridError, load_grid
from bench.report.__main__ import main as report_main
from tests.conftest import ROOT, run_main

BASE = """axes:
  method: [bp, scpl]
  model: [convnet]
  dataset: [cifar10@synthetic]
  batch_size: [8]
  devices: [1, 2]
settings:
  steps: 2
"""


def _load(tmp_path, text: str):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return load_grid(str(path))


SETTINGS_CASES = [
    ("balance: [0, 4]", "settings.balance"),
    ("balance: [-1, 5]", "settings.balance"),
    ("augment: foo", "settings.augment: 'foo'"),
    ("optimizer: rmsprop", "settings.optimizer: 'rmsprop'"),
    ("projector: zzz", "settings.projector: 'zzz'"),
    ("threads_per_device: -2", "settings.threads_per_device: -2"),
    ("threads_per_device: 0", "settings.threads_per_device: 0"),
    ("lr: fast", "settings.lr: 'fast'"),
    ("lr: -1", "settings.lr: -1"),
    ("temperature: 0", "settings.temperature: 0"),
    ("eval_batch_size: 0", "settings.eval_batch_size: 0"),
    ("eval_batches: 0", "settings.eval_batches: 0"),
    ("timeout_s: -1", "settings.timeout_s: -1"),
    ("steps: '2'", "settings.steps: '2'"),
    ("seed: abc", "settings.seed: 'abc'"),
    ("count_train_memory: 'no'", "settings.count_train_memory: 'no'"),
    ("queue_depth: 0", "settings.queue_depth: 0"),
    ("queue_depth: -1", "settings.queue_depth: -1"),
    ("views: 3", "settings.views: 3"),
    ("profile: {active: 0}", "settings.profile.active: 0"),
    ("method_options: {scpl: {chunks: 2}}", "settings.method_options.scpl.chunks: unknown key"),
]


@pytest.mark.parametrize("line,expected", SETTINGS_CASES)
def test_bad_setting_is_refused_with_its_key_path(tmp_path, line, expected):
    with pytest.raises(GridError) as info:
        _load(tmp_path, BASE + f"  {line}\n")
    problems = info.value.problems
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)


AXIS_CASES = [
    ("devices: [1, 2]", "devices: [1, 2]\n  trial: 1.5", "axes.trial"),
    ("devices: [1, 2]", "devices: [1, 2]\n  trial: '2'", "axes.trial"),
    ("devices: [1, 2]", "devices: [1, 2]\n  trial: 0", "trial count must be >= 1"),
    ("devices: [1, 2]", "devices: [1, 2]\n  trial: -1", "trial count must be >= 1"),
    ("method: [bp, scpl]", "method: []", "axes.method"),
    ("batch_size: [8]", "batch_size: [0]", "axes.batch_size"),
    ("batch_size: [8]", "batch_size: ['8']", "axes.batch_size"),
]


@pytest.mark.parametrize("old,new,expected", AXIS_CASES)
def test_bad_axis_is_refused_with_its_key_path(tmp_path, old, new, expected):
    with pytest.raises(GridError) as info:
        _load(tmp_path, BASE.replace(old, new))
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("text,expected", [
    (BASE + "include: [{method: bp, batch_size: '16'}]\n", "include[0].batch_size.0: '16'"),
    (BASE + "include: [{method: bp, devices: 0}]\n", "include[0].devices: 0"),
    ("name: ../../escaped\n" + BASE, "name: '../../escaped'"),
    ("axes: [bp, scpl]\nsettings: {}\n", "axes: must be a mapping"),
    (BASE.replace("settings:\n  steps: 2\n", "settings: [steps, 2]\n"), "settings: must be a mapping"),
    (BASE + "exclude: [{method: bp}, {method: scpl}]\n", "the exclude rules remove all 4 cells"),
    (BASE + "exclude: [{batch: 8}]\n", "exclude[0]: ['batch']"),
])
def test_bad_grid_shape_names_the_problem(tmp_path, text, expected):
    with pytest.raises(GridError) as info:
        _load(tmp_path, text)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_method_model_mismatch_is_refused_up_front(tmp_path):
    grid = BASE.replace("method: [bp, scpl]", "method: [contsup]").replace("model: [convnet]", "model: [lstm]")
    with pytest.raises(GridError, match="contsup trains convolutional modules"):
        _load(tmp_path, grid.replace("cifar10@synthetic", "imdb@synthetic"))


def test_cuda_cells_are_refused_on_a_machine_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GridError, match="settings.device_kind: 'cuda': this machine has no CUDA device"):
        _load(tmp_path, BASE + "  device_kind: cuda\n")


def test_every_problem_is_listed_at_once(tmp_path):
    with pytest.raises(GridError) as info:
        _load(tmp_path, BASE + "  lr: -1\n  optimizer: rmsprop\n  queue_depth: 0\n")
    keys = [p.split(": ")[1] for p in info.value.problems]
    assert keys == ["settings.lr", "settings.optimizer", "settings.queue_depth"]


def test_cli_prints_every_problem_one_line_each_and_exits_2(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(BASE + "  lr: fast\n  views: 3\n")
    proc = run_main(run_matrix.main, ["--grid", str(path), "--dry-run"], capsys)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: g.yaml: settings.") for line in lines)


def test_set_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(BASE)
    grid = load_grid(str(path), overrides=["settings.steps=3", "axes.batch_size=[16, 32]"])
    assert {c.settings.steps for c in grid.cells} == {3} and {c.batch_size for c in grid.cells} == {16, 32}
    with pytest.raises(GridError, match="settings.steps: 'x'"):
        load_grid(str(path), overrides=["settings.steps=x"])
    with pytest.raises(GridError, match="--set nonsense.steps: unknown top-level key .nonsense."):
        load_grid(str(path), overrides=["nonsense.steps=1"])


def test_settings_reference_in_docs_equals_the_schema():
    from bench.grid.settings import settings_reference

    assert (ROOT / "docs" / "SETTINGS.md").read_text() == settings_reference(), \
        "regenerate docs/SETTINGS.md from bench.grid.settings.settings_reference()"


def test_corrupt_results_file_is_one_line_exit_2_in_dry_run_too(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(BASE)
    results = tmp_path / "res"
    results.mkdir()
    (results / "results.parquet").write_bytes(b"not a parquet file")
    proc = run_main(run_matrix.main, ["--grid", str(path), "--dry-run", "--results", str(results)], capsys)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "results.parquet" in proc.stderr
    report = run_main(report_main, [str(results)], capsys)
    assert report.returncode == 2 and "Traceback" not in report.stderr and "results.parquet" in report.stderr
