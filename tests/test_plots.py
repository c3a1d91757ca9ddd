"""Report plots (issue 25): an axis zoomed to the data, n on every bar, the legend outside
the bars, a panel by question family, and labels naming what differs between two runs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from vqa.plots import bar_panel, plot_clevr_report  # noqa: E402


def _table(**acc):
    return {k: {"accuracy": a, "total": n} for k, (a, n) in acc.items()}


def test_bar_axis_is_zoomed_and_bars_carry_n():
    fig, ax = plt.subplots()
    bar_panel(ax, [("a", _table(count=(0.98, 412), exist=(1.0, 37)))], "t")
    lo, hi = ax.get_ylim()
    assert 90 <= lo < 98 and hi > 100  # 98 % and 100 % are told apart; room for the labels
    assert "axis from" in ax.get_ylabel()
    assert {t.get_text() for t in ax.texts} == {"412", "37"}
    plt.close(fig)
    fig, ax = plt.subplots()
    bar_panel(ax, [("a", _table(count=(0.03, 10), exist=(1.0, 5)))], "t")
    assert ax.get_ylim()[0] == 0 and "axis from" not in ax.get_ylabel()
    plt.close(fig)


def _report(acc, label):
    fam = _table(**{"compare_integer:0": (acc, 30), "same_relate:1": (acc - 0.01, 20)})
    return {"reasoner": "asp", "scene_source": label, "program_source": "parsed", "accuracy": acc, "total": 50,
            "by_template": _table(compare_integer=(acc, 30), same_relate=(acc - 0.01, 20)),
            "by_function": _table(count=(acc, 50)), "by_family": fam}


def test_report_figure_has_a_family_panel_and_the_legend_outside_the_bars(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot_clevr_report(_report(0.99, "predicted"), tmp_path / "r.png", compare=_report(0.97, "gold"))
    fig = figures[-1]
    fig.canvas.draw()
    assert (tmp_path / "r.png").stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes]
    assert any("family" in t for t in titles) and len(fig.axes) == 3
    family = next(ax for ax in fig.axes if "family" in ax.get_title())
    assert [t.get_text() for t in family.get_xticklabels()] == ["compare_integer:0", "same_relate:1"]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["predicted scenes", "gold scenes"]
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), ax.get_title()
    plt.close(fig)


def test_no_family_panel_without_families(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    rep = {k: v for k, v in _report(0.9, "predicted").items() if k != "by_family"}
    plot_clevr_report(rep, tmp_path / "r.png")
    assert len(figures[-1].axes) == 2
    with pytest.raises(StopIteration):
        next(ax for ax in figures[-1].axes if "family" in ax.get_title())
