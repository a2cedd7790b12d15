"""Model selection: evaluation points, validation-selected vs best test accuracy, data settings in a cell."""
import pytest

from bench.cell.model_selection import SelectionCurve, segment_lengths
from bench.cell.phases import run_cell
from bench.grid import Cell, CellSettings
from bench.grid.feasibility import cell_problems
from bench.grid.settings import settings_problems


def test_segments_cover_every_untimed_step():
    assert segment_lengths(10, 1) == [10]
    assert segment_lengths(10, 4) == [4, 3, 3]
    assert segment_lengths(0, 1) == [0]
    with pytest.raises(ValueError):
        segment_lengths(1, 4)


def test_selection_uses_validation_not_test():
    curve = SelectionCurve()
    for step, test, val in [(1, 0.50, 0.40), (2, 0.70, 0.60), (3, 0.80, 0.55), (4, 0.65, 0.60)]:
        curve.add(step, test, val)
    # best validation is at index 1 (first of the tie with index 3); test there is 0.70
    assert curve.selected == 1
    assert curve.test_acc_val_selected == 0.70 and curve.val_acc_selected == 0.60
    assert curve.test_acc_best == 0.80  # selected on test: optimistic, reported beside it


def test_without_holdout_the_last_checkpoint_is_selected():
    curve = SelectionCurve()
    curve.add(1, 0.9, None)
    curve.add(2, 0.6, None)
    assert curve.test_acc_val_selected == 0.6 and curve.val_acc_selected is None and curve.test_acc_best == 0.9


def _cell(**settings) -> Cell:
    base = dict(warmup_steps=1, steps=1, eval_batches=1, eval_batch_size=32, balance="even")
    return Cell("t", "bp", "convnet", "cifar10@synthetic", 8, 1, 0, CellSettings(**{**base, **settings}))


@pytest.mark.slow
def test_cell_records_curve_noise_and_selected_accuracy():
    row = run_cell(_cell(train_steps=4, eval_points=3, noise_rate=0.3, val_fraction=0.2))
    assert row.eval_steps == [2, 4, 6]  # two segments of untimed steps, then warm-up + timed steps
    assert len(row.val_acc_curve) == len(row.test_acc_curve) == 3
    assert row.test_acc == row.test_acc_curve[-1] and row.val_acc == row.val_acc_curve[-1]
    best_val = max(range(3), key=lambda i: (row.val_acc_curve[i], -i))
    assert row.test_acc_val_selected == row.test_acc_curve[best_val]
    assert row.test_acc_best == max(row.test_acc_curve)
    assert row.noise_rate == 0.3 and row.val_fraction == 0.2


@pytest.mark.parametrize("settings, message", [
    (dict(noise_rate=1.5), "settings.noise_rate: 1.5: Input should be less than 1"),
    (dict(val_fraction=1.0), "settings.val_fraction: 1.0: Input should be less than 1"),
    (dict(val_fraction=-0.1), "settings.val_fraction: -0.1: Input should be greater than or equal to 0"),
])
def test_bad_data_values_name_key_value_and_range(settings, message):
    _, problems = settings_problems(settings)
    assert problems == [message]


@pytest.mark.parametrize("settings, message", [
    (dict(glove=True), "glove: true needs a text dataset"),
    (dict(eval_points=3, train_steps=1), "eval_points: 3 needs settings.train_steps >= 2"),
])
def test_bad_data_settings_name_the_problem(settings, message):
    assert any(message in line for line in cell_problems(_cell(**settings))), cell_problems(_cell(**settings))


@pytest.mark.slow
def test_glove_cell_loads_rows_aligned_to_the_vocabulary(tmp_path):

    from data import text_vocab

    vocab = text_vocab("imdb@synthetic")
    words = vocab[2:6]  # four real vocabulary words; ids 2..5
    lines = [f"{w} " + " ".join(f"{(i + 1) * 0.01 + j * 1e-4:.6f}" for j in range(300)) for i, w in enumerate(words)]
    (tmp_path / "glove").mkdir()
    (tmp_path / "glove" / "glove.6B.300d.txt").write_text("\n".join(lines) + "\n")
    cell = Cell("t", "bp", "transformer", "imdb@synthetic", 4, 1, 0,
                CellSettings(warmup_steps=1, steps=1, eval_batches=1, eval_batch_size=8, glove=True, lr=0.0,
                             optimizer="sgd"))
    row = run_cell(cell, str(tmp_path))
    assert row.status == "ok"
    assert row.glove_coverage == pytest.approx(4 / (len(vocab) - 2))


def test_glove_missing_file_names_path_and_fix(tmp_path):
    cell = Cell("t", "bp", "transformer", "imdb@synthetic", 4, 1, 0,
                CellSettings(warmup_steps=1, steps=1, eval_batches=1, eval_batch_size=8, glove=True))
    with pytest.raises(Exception, match="glove.6B.300d.txt"):
        run_cell(cell, str(tmp_path))


def test_worker_loaded_batches_equal_main_process_batches():
    import torch

    from data import get_spec, load_dataset
    from data.prepared import prepare_batches

    spec = get_spec("cifar10@synthetic")
    train = load_dataset("cifar10@synthetic", split="train", seed=0)
    main = prepare_batches(train, 8, 3, 0, 1, "vision", spec, workers=0)
    workers = prepare_batches(train, 8, 3, 0, 1, "vision", spec, workers=2)
    for (xa, ya), (xb, yb) in zip(main, workers, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
