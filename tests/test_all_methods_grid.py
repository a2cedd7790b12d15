"""Every method runs from a grid on 1 and 2 devices; what cannot run is refused up front, with the reason.

The whole matrix (every registered method x 2 device counts, plus SuNCEt and NT-Xent local
losses) takes minutes on 2 cores, so here every cell is *validated* and a
subset that covers each execution path (process ranks, micro-batch pipeline,
label-path payloads, exits, untimed training before process ranks, the
two-view batch) is *run*.  Run the full matrix by hand with:

    .venv/bin/python run_matrix.py --grid <this file's GRID written to a file> --results /tmp/res --no-progress
"""
import pytest

from bench.grid import GridError, load_grid
from bench.run.runner import run_grid
from bench.store.read import read_results
from methods import list_methods
from tests.conftest import InProcessLauncher

METHODS = list_methods()  # every registered method, ContSup included

GRID = """
description: every method on the ConvNet, 1 and 2 devices, tiny steps
axes:
  method: [{methods}]
  model: [convnet]
  dataset: [cifar10@synthetic]
  batch_size: [{batch}]
  devices: [1, 2]
settings:
  warmup_steps: 1
  steps: 1
  train_steps: 1
  eval_batches: 1
  eval_batch_size: 16
  balance: even
  threads_per_device: 1
  timeout_s: 300
  local_loss: {loss}
  views: {views}
  method_options: {options}
"""


def _grid(tmp_path, methods=METHODS, batch=8, loss="supcon", views=1, options="{}", name="all_methods"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(GRID.format(methods=", ".join(methods), batch=batch, loss=loss, views=views, options=options))
    return load_grid(str(path))


def test_every_method_validates_on_one_and_two_devices(tmp_path):
    grid = _grid(tmp_path)
    assert sorted((c.method, c.devices) for c in grid.cells) == sorted((m, d) for m in METHODS for d in (1, 2))
    assert len(_grid(tmp_path, ["scpl", "dascpl", "scpl_gpipe"], loss="suncet", name="s").cells) == 6
    assert len(_grid(tmp_path, ["scpl", "scpl_gpipe"], loss="ntxent", views=2, name="n").cells) == 4


@pytest.mark.parametrize(
    "methods,batch,extra,message",
    [
        (["gpipe"], 6, {}, "gpipe: batch_size 6 must be a multiple of chunks 4"),
        (["gpipe_dist"], 6, {}, "gpipe_dist: batch_size 6 must be a multiple of chunks 4"),
        (["scpl_gpipe"], 8, {"options": "{chunks: 3}"}, "must be a multiple of chunks 3"),
        (["ddp"], 7, {}, "ddp: batch_size 7 must split evenly over 2 data-parallel ranks"),
        (["scpl"], 8, {"loss": "ntxent"}, "settings.local_loss: .ntxent. needs the two-view batch"),
        (["dascpl"], 8, {"options": "{trigger_steps: [1, 2]}"}, "dynamic accumulation needs 3 triggers"),
        (["dascpl"], 8, {"options": "{trigger_steps: [3, 2, 1]}"}, "non-decreasing"),
    ],
)
def test_cells_that_cannot_run_are_refused_with_the_reason(tmp_path, methods, batch, extra, message):
    with pytest.raises(GridError, match=message):
        _grid(tmp_path, methods, batch, **extra)


@pytest.mark.slow
def test_subset_runs_ok_on_two_devices(tmp_path):
    """One cell per execution path; `train_steps: 1` also exercises untimed training before process ranks.

    The cells run in this process (the runner's own cell processes are tests/test_runner.py's subject);
    the rank methods still start their rank processes.
    """
    grid = _grid(tmp_path, ["ddp", "gpipe_dist", "al", "dascpl", "scpl_gpipe"])
    cells = [c for c in grid.cells if c.devices == 2]
    two_view = [c for c in _grid(tmp_path, ["scpl"], loss="ntxent", views=2, name="n").cells if c.devices == 1]
    summary = run_grid(grid, tmp_path / "res", cells=cells + two_view, progress=False, launcher=InProcessLauncher())
    frame = read_results(tmp_path / "res")
    failures = frame[frame.status != "ok"][["method", "devices", "error"]].to_dict("records")
    assert summary.statuses == {"ok": len(cells) + 1}, failures
    for row in frame.itertuples():
        assert row.final_train_loss == row.final_train_loss and 0.0 <= row.test_acc <= 1.0
    dascpl = frame[frame.method == "dascpl"].iloc[0]
    # four stage predictors and the head, as the reference (K + 1 exits)
    assert len(dascpl.exit_acc) == 5 and len(dascpl.exit_params) == 5
