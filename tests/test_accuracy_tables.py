"""The paper's accuracy table form (bench/report/accuracy_tables.py) on hand-made trials."""
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.report.accuracy_tables import (
    accuracy_stats,
    latex_accuracy,
    latex_escape,
    mark_significance,
    write_accuracy_tables,
)
from bench.store.fragments import append_rows
from bench.store.read import read_results
from bench.store.row import ResultRow


def rows(accs: dict, model="vgg8", dataset="cifar10@synthetic", selected=None) -> list:
    out = []
    for method, values in accs.items():
        for trial, acc in enumerate(values):
            out.append(ResultRow(cell_id=f"{method}{model}{dataset}{trial}", grid="hand", method=method, model=model,
                                 dataset=dataset, data_kind="synthetic", batch_size=32, devices=1, trial=trial,
                                 seed=trial, test_acc=acc, epoch_time_s=1.0,
                                 test_acc_val_selected=None if selected is None else acc - selected))
    return out


TRIALS = {
    "bp": [0.800, 0.802, 0.798],
    "early_exit": [0.700, 0.702, 0.698],  # far below: not bold
    "al": [0.805, 0.815, 0.795],  # mean 0.805, wide: not different from SCPL
    "scpl": [0.810, 0.811, 0.809],  # best non-BP, above BP
    "dascpl": [0.760, 0.761, 0.759],  # clearly worse
}


def frame_of(tmp_path, trials=TRIALS, **kw):
    append_rows(tmp_path, rows(trials, **kw))
    return read_results(tmp_path)


def marked(tmp_path, trials=TRIALS):
    stats, notes = mark_significance(accuracy_stats(frame_of(tmp_path, trials)))
    return stats.set_index("method"), notes


def test_paper_order_mean_std_in_percent(tmp_path):
    stats = accuracy_stats(frame_of(tmp_path))
    assert list(stats["method"]) == ["bp", "early_exit", "al", "scpl", "dascpl"]
    scpl = stats.set_index("method").loc["scpl"]
    assert scpl["mean"] == pytest.approx(81.0) and scpl["std"] == pytest.approx(0.1) and scpl["n"] == 3


def test_bold_set_is_the_best_and_those_not_significantly_different(tmp_path):
    stats, notes = marked(tmp_path)
    p_al = scipy_stats.ttest_ind([81.0, 81.1, 80.9], [80.5, 81.5, 79.5], equal_var=False).pvalue
    assert p_al >= 0.05  # the hand-made trials do what the test says
    assert stats.loc["al", "p_value"] == pytest.approx(p_al)
    assert set(stats.index[stats["bold"]]) == {"scpl", "al"}  # both bold: not significantly different
    assert not stats.loc["bp", "bold"]  # BP never competes for bold
    assert set(stats.index[stats["dagger"]]) == {"al", "scpl"}  # means above BP's 80.0
    assert len(notes) == 1  # every method has >= 2 trials: no "no test" note


def test_one_trial_means_no_test_and_a_note(tmp_path):
    stats, notes = marked(tmp_path, {"bp": [0.8], "scpl": [0.82], "al": [0.81]})
    assert set(stats.index[stats["bold"]]) == {"scpl"} and stats["p_value"].isna().all()
    assert any("fewer than 2 trials" in n for n in notes)


def test_latex_escaping_and_form(tmp_path):
    assert latex_escape("vgg_8 & 50% #1 {x} ~^\\") == (r"vgg\_8 \& 50\% \#1 \{x\} \textasciitilde{}"
                                                        r"\textasciicircum{}\textbackslash{}")
    stats, notes = marked(tmp_path)
    stats = stats.reset_index()
    stats["model"] = "resnet_32"
    tex = latex_accuracy(stats, "Accuracy on cifar_10", notes, "tab:acc")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\begin{tabular}{lc}" in tex
    assert r"resnet\_32" in tex and r"cifar\_10" in tex and "resnet_32" not in tex
    assert r"SCPL & \textbf{81.00 $\pm$ 0.10}$^\dagger$ \\" in tex
    assert r"Early Exit & 70.00 $\pm$ 0.20 \\" in tex


def test_written_files_numbers_in_csv_and_val_selected(tmp_path):
    frame = frame_of(tmp_path, TRIALS, selected=0.01)
    append_rows(tmp_path, rows({"bp": [0.5, 0.6], "scpl": [0.55, 0.57]}, model="lstm", dataset="imdb@synthetic"))
    frame = read_results(tmp_path)
    sections = write_accuracy_tables(tmp_path, frame)
    assert len(sections) == 3  # cifar10 final head and val-selected; imdb final head (no val-selected there)
    for suffix in (".md", ".tex", ".csv", "_val_selected.md", "_val_selected.csv", "_val_selected.tex"):
        assert (tmp_path / f"accuracy_paper_cifar10-synthetic{suffix}").exists()
    assert not (tmp_path / "accuracy_paper_imdb-synthetic_val_selected.md").exists()
    md = (tmp_path / "accuracy_paper_cifar10-synthetic.md").read_text()
    assert "| SCPL | **81.00 ± 0.10** † |" in md and "| BP | 80.00 ± 0.20 |" in md
    csv = pd.read_csv(tmp_path / "accuracy_paper_cifar10-synthetic.csv")
    assert {"mean", "std", "n", "bold", "dagger"} <= set(csv.columns)
    assert csv["mean"].dtype == float and csv["bold"].dtype == bool
    assert csv.set_index("method").loc["scpl", "mean"] == pytest.approx(81.0)
