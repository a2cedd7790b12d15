"""Learning-curve and accuracy-vs-speed figures (bench/report/curves_figures.py) from hand-made curves."""
import matplotlib.pyplot as plt
import pandas as pd

from bench.report.curves_figures import acc_speed_figure, curve_stats, write_curves_figures
from bench.report.tta import tta_frame
from tests.test_tta import hand_made


def test_curve_stats_mean_and_spread_per_evaluated_epoch(tmp_path):
    _, curves = hand_made(tmp_path)
    stats = curve_stats(curves[curves["dataset"] == "cifar10@synthetic"]).set_index(["method", "devices", "epoch"])
    bp2 = stats.loc[("bp", 1, 2)]
    assert bp2["wall_s"] == 22.0 and bp2["mean"] == 74.0 and round(bp2["std"], 4) == round(pd.Series([73.0, 75.0]).std(), 4)
    assert ("scpl", 2, 1) not in stats.index  # not evaluated: no point
    assert stats.loc[("scpl", 2, 4), "std"] == 0.0


def test_figures_written_png_and_svg(tmp_path):
    frame, curves = hand_made(tmp_path)
    tta, _ = tta_frame(frame, curves)
    written = write_curves_figures(frame, curves, tta, tmp_path / "plots")
    names = {p.name for p in written}
    for stem in ("curves_vgg8_cifar10-synthetic", "acc_speed_vgg8_cifar10-synthetic", "curves_vgg8_other-synthetic"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for path in written:
        assert path.exists() and path.stat().st_size > 1000
    height, width = plt.imread(tmp_path / "plots" / "curves_vgg8_cifar10-synthetic.png").shape[:2]
    assert width > height > 300


def test_acc_speed_lists_runs_that_never_reached_the_target(tmp_path):
    frame, curves = hand_made(tmp_path)
    tta, _ = tta_frame(frame, curves)
    rows = frame[frame["dataset"] == "cifar10@synthetic"]
    mine = tta[tta["dataset"] == "cifar10@synthetic"]
    fig = acc_speed_figure(rows, mine, "hand")  # 95 % of BP: both methods reached it
    assert "95 % of BP" in fig.axes[1].get_xlabel()
    assert not any(t.get_text().startswith("not reached") for t in fig.axes[1].texts)
    assert len(fig.axes[1].collections) + len(fig.axes[1].lines) > 0
    plt.close(fig)
    fig = acc_speed_figure(rows, mine[mine["target"] == "99 % of BP"], "hand")
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any(t.startswith("not reached: scpl (2 dev): 2/2") for t in texts)
    assert not any("scpl" in t and "not reached" not in t for t in texts)  # no point drawn for SCPL
    plt.close(fig)


def test_write_report_includes_tta_accuracy_tables_and_curves(tmp_path):
    from bench.report.write import write_report

    hand_made(tmp_path)
    text = write_report(tmp_path)
    assert "Speedup in time to test accuracy over BP on 1 device" in text and "2.20x" in text
    assert "| SCPL (2 dev) | **78.00 ± 0.00** |" in text  # the paper's table form, SCPL the only non-BP method
    for name in ("tta.md", "tta.csv", "tta_speedup.md", "tta_speedup.csv", "accuracy_paper_cifar10-synthetic.tex"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "plots" / "curves_vgg8_cifar10-synthetic.png").exists()
    page = (tmp_path / "report.html").read_text()
    assert "Time-to-accuracy speedup: vgg8 on cifar10@synthetic" in page and "not reached by 2/2 trials" in page
    assert "<strong>78.00 ± 0.00</strong>" in page and 'alt="curves_vgg8_cifar10-synthetic"' in page
    assert 'alt="acc_speed_vgg8_cifar10-synthetic"' in page
