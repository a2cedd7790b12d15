"""The paper grids train as the references: the whole training split, two views on vision (issue #17).

Read as YAML (expanding the cells builds every model, seconds each); `run_matrix.py --dry-run`
and tests/test_grid.py check that the grids load.
"""
import pytest

from bench.grid.cells import read_grid_file, resolve_grid_path

VISION = {"vgg8", "resnet18", "convnet"}


def _raw(name: str) -> dict:
    return read_grid_file(resolve_grid_path(name))


@pytest.mark.parametrize("name", ["paper_table2", "paper_table3", "paper_figure4", "paper_figure13",
                                  "paper_figures5_12"])
def test_paper_grids_use_the_references_data_and_views(name):
    """Every vision cell on [weak(x), strong(x)] (SCPL config.ini:4,6; DASCPL train_vision.py:42-44), text on one."""
    raw = _raw(name)
    settings = raw["settings"]
    assert settings["val_fraction"] == 0.0  # DASCPL utils/vision.py:87-95: the whole training split
    models = set(raw["axes"]["model"])
    if name == "paper_figures5_12":
        # the axes' vision cells are excluded and come back through one include rule with two views
        assert all({"model": m} in raw["exclude"] for m in models & VISION)
        (rule,) = raw["include"]
        assert set(rule["model"]) == models & VISION and rule["settings"] == {"views": 2, "augment": "basic"}
        assert settings.get("views", 1) == 1
    elif models <= VISION:
        assert (settings["views"], settings["augment"]) == (2, "basic")
    else:
        assert settings.get("views", 1) == 1 and not models & VISION
