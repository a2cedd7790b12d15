"""The ideal speedups `make bench` divides by: closed forms on hand-made costs."""
from types import SimpleNamespace

import pytest

from bench.benchmark.ratios import CONFIGS, _pipeline_ideal, gpipe_ideal


def test_pipeline_ideal_is_total_work_over_busiest_device():
    row = SimpleNamespace(device_busy_s=[3.0, 1.0])
    assert _pipeline_ideal(row) == pytest.approx(4.0 / 3.0)


def test_gpipe_ideal_is_balance_ideal_times_bubble_factor():
    # equal stages split 2 + 2: balance ideal 2; 4 micro-batches on 2 stages: 4 / 5
    assert gpipe_ideal([1.0, 1.0, 1.0, 1.0], [2, 2], 4) == pytest.approx(2.0 * 4 / 5)
    # VGG-like unequal stages, one stage on device 0: busiest device holds 5 of 8
    assert gpipe_ideal([3.0, 2.0, 2.0, 1.0], [1, 3], 8) == pytest.approx(8.0 / 5.0 * 8 / 9)


def test_benchmark_cells_validate():
    from bench.grid.feasibility import cell_problems

    for name, cell in CONFIGS.items():
        assert cell_problems(cell) == [], name
