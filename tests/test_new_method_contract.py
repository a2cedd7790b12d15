"""A new method is one file: a throwaway one, in a temporary module outside `methods/`, runs through a
grid (its cell in its own process), a checkpoint and the report with no edit to the harness.

The module is named in SCPLBENCH_METHOD_MODULES and found on PYTHONPATH, as a user's own
method would be; the cell process the runner starts inherits both.
"""
import importlib
import sys
import textwrap

import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgb

import methods
from bench.cell.checkpoint import checkpoint_path, load_checkpoint
from bench.grid import load_grid
from bench.run.runner import run_grid
from bench.store.read import read_results
from data import get_spec
from methods import METHOD_MODULES_ENV, MethodConfig, create_method, import_method_modules, registry
from models.build import build_model
from tests.conftest import InProcessLauncher

MODULE = "scplbench_throwaway_methods"

SOURCE = '''
"""Two throwaway methods: a local-loss one with extra stage state, and one that trains with BP's gradient."""
import torch.nn.functional as F
from torch import nn

from methods import DecoupledMethod, StageStep, make_optimizer, register_method
from methods.bp import BP
from methods.predictors import make_predictor


class ExitLoss(nn.Module):
    def __init__(self, reducer, classifier):
        super().__init__()
        self.reducer, self.classifier = reducer, classifier

    def forward(self, out, y):
        return F.cross_entropy(self.classifier(self.reducer(out)), y)


class CountingStep(StageStep):
    """A stage step with state that is no parameter: the batches it has trained on."""

    def __init__(self, *args):
        super().__init__(*args)
        self.seen = 0

    def forward(self, x, y):
        self.seen += 1
        return super().forward(x, y)

    def extra_state(self):
        return {"seen": self.seen}

    def load_extra_state(self, state):
        self.seen = state["seen"]


@register_method("throwaway_local")
class ThrowawayLocal(DecoupledMethod):
    display_name = "Throwaway Local"
    paper_order = 15
    report_order = 25
    colour = "#102030"

    def __init__(self, model, config):
        super().__init__(model, config)
        last = model.num_stages - 1
        self.exits = nn.ModuleList(make_predictor("l", d, model.num_classes, model.modality)
                                   for d in model.feature_dims[:last])
        heads = list(self.exits) + [model.head]
        self.steps = [CountingStep(k, stage, ExitLoss(model.reducers[k], heads[k]),
                                   lambda p: make_optimizer(p, config))
                      for k, stage in enumerate(model.stages)]

    def affiliated_modules(self):
        return [self.exits]


@register_method("throwaway_bp")
class ThrowawayBP(BP):
    """BP under another name: a subclass declares its own name, orders and colour."""

    display_name = "Throwaway BP"
    paper_order = 75
    report_order = 5
    colour = "#405060"
    bp_gradient = True
'''

GRID = """
description: the contract test's throwaway methods beside BP, one short training run each
axes:
  method: [bp, throwaway_local, throwaway_bp]
  model: [convnet]
  dataset: [cifar10@synthetic]
  batch_size: [8]
  devices: [1]
  trial: 1
settings:
  epochs: 1
  max_train_items: 32
  max_test_items: 16
  eval_batch_size: 16
  val_fraction: 0.25
  keep_checkpoints: true
  count_train_memory: false
  threads_per_device: 1
  timeout_s: 300
"""


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """The throwaway module on PYTHONPATH, named in the environment, registered here; unregistered after."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.setenv(METHOD_MODULES_ENV, MODULE)
    assert import_method_modules() == [MODULE]
    yield importlib.import_module(MODULE)
    for name in ("throwaway_local", "throwaway_bp"):
        registry._METHODS.pop(name, None)
    sys.modules.pop(MODULE, None)


@pytest.mark.slow
def test_a_method_outside_the_package_runs_checkpoints_and_is_reported(throwaway, tmp_path):
    assert {"throwaway_local", "throwaway_bp"} <= set(methods.list_methods())
    grid_file = tmp_path / "throwaway.yaml"
    grid_file.write_text(GRID)
    grid = load_grid(str(grid_file))
    results = tmp_path / "results"
    # throwaway_local in a cell process as the runner starts it (the module is found from the environment
    # there); BP and throwaway_bp, which only fill the report's tables, in this process: a torch import each fewer
    local = [c for c in grid.cells if c.method == "throwaway_local"]
    beside = run_grid(grid, results, cells=[c for c in grid.cells if c not in local], progress=False,
                      launcher=InProcessLauncher())
    summary = run_grid(grid, results, progress=False)  # the two above are done: only throwaway_local runs
    assert (beside.statuses, summary.statuses, summary.ran) == ({"ok": 2}, {"ok": 1}, 1), \
        read_results(results)[["method", "status", "error"]]

    # the checkpoint the cell process wrote carries the stage steps' extra state
    cell = next(c for c in grid.cells if c.method == "throwaway_local")
    row = read_results(results).set_index("method").loc["throwaway_local"]
    fresh = create_method("throwaway_local", build_model("convnet", get_spec("cifar10@synthetic")), MethodConfig())
    assert [s.seen for s in fresh.stage_steps()] == [0] * fresh.model.num_stages
    run = load_checkpoint(checkpoint_path(results, cell.cell_id), fresh, [])
    assert run is not None and run.epoch == 1
    assert fresh.extra_state() == {"stages": {k: {"seen": row.steps_per_epoch}
                                              for k in range(fresh.model.num_stages)}}
    assert all(int(s["step"]) == row.steps_per_epoch for o in fresh.optimizers() for s in o.state.values())

    # the report names, orders, bolds and colours them as they declare
    table = pd.read_csv(results / "accuracy_paper_cifar10-synthetic.csv").set_index("method")
    assert list(table.index) == ["bp", "throwaway_local", "throwaway_bp"]  # paper_order 0, 15, 75
    assert table.loc["throwaway_local", "label"] == "Throwaway Local"
    assert table.loc["throwaway_bp", "label"] == "Throwaway BP"
    assert bool(table.loc["throwaway_local", "bold"])  # the only method with a local loss: the best one
    assert not table.loc["throwaway_bp", "bold"] and not table.loc["bp", "bold"]  # BP's gradient: never bold
    # the other tables follow report_order (0, 25, 5), which differs from paper_order on purpose
    assert list(pd.read_csv(results / "accuracy.csv")["method"]) == ["bp", "throwaway_bp", "throwaway_local"]
    report = (results / "report.html").read_text()
    assert "Throwaway Local" in report and "Throwaway BP" in report

    from bench.report.figures import method_colour

    assert to_rgb(method_colour("throwaway_local")) == to_rgb("#102030")
    assert to_rgb(method_colour("throwaway_bp")) == to_rgb("#405060")


def test_a_checkpoint_restores_a_methods_extra_state(throwaway, tmp_path):
    """In process, no grid: parameters, optimizer and extra state come back into a new method."""
    from bench.cell.checkpoint import RunState, save_checkpoint

    spec = get_spec("cifar10@synthetic")
    torch.manual_seed(0)
    method = create_method("throwaway_local", build_model("convnet", spec), MethodConfig())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(3):
        method.train_step(x, y)
    path = save_checkpoint(tmp_path / "ckpt.pt", method, [], RunState(epoch=1))
    fresh = create_method("throwaway_local", build_model("convnet", spec), MethodConfig())
    assert load_checkpoint(path, fresh, []) is not None
    stages = range(method.model.num_stages)
    assert fresh.extra_state() == method.extra_state() == {"stages": {k: {"seen": 3} for k in stages}}
    for a, b in zip(method.modules(), fresh.modules()):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
