"""Figures: what each plot draws from a tidy table, checked against the synthetic runs."""

import numpy as np
import pandas as pd
import pytest

from redo.analysis.figures import (
    LINE_STYLES,
    plot_aggregate,
    plot_dormant_curves,
    plot_dormant_vs_replay_ratio,
    plot_layer_dormant_curves,
    plot_recycling,
    plot_returns,
    plot_variants,
)
from redo.analysis.stats import bootstrap_ci, iqm
from redo.analysis.tables import (
    dormant_curves,
    final_dormant,
    final_returns,
    layer_dormant_curves,
    normalise_per_game,
    random_returns,
    recycling_curves,
    return_curves,
    variant_order,
    with_variants,
)
from redo.records.reader import load_runs
from tests.analysis.frames import hand_final
from tests.synthetic_runs import (
    LOG_STEPS,
    RATIOS,
    SEEDS,
    TOTAL,
    dormant_value,
    level,
    write_synthetic_run,
)


def by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def panel(fig, title):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def test_plot_dormant_curves(runs):
    fig = plot_dormant_curves(dormant_curves(runs, taus=(0.0, 0.1)))
    assert len(fig.axes) == 4  # 2 thresholds x 2 games
    ax = panel(fig, "Freeway, τ = 0.1")
    lines = by_label(ax)
    assert len(lines) == 4 and len(ax.collections) == 4  # 2 methods x 2 ratios, with bands
    line = lines["DQN, replay ratio 0.25"]
    assert line.get_linestyle() == LINE_STYLES[0] == "-"
    assert lines["DQN, replay ratio 1"].get_linestyle() == LINE_STYLES[1] == "--"
    np.testing.assert_allclose(line.get_xdata(), LOG_STEPS)
    expected = [
        100 * np.mean([dormant_value(1, False, 0.25, s, step, 0.1) for s in SEEDS])
        for step in LOG_STEPS
    ]
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert "%" in fig.axes[0].get_ylabel()
    assert fig.axes[-1].get_xlabel() == "environment steps"
    assert fig.legends and "seeds" in fig.get_suptitle()


def test_plot_dormant_curves_band_spans_the_seeds(runs):
    fig = plot_dormant_curves(dormant_curves(runs, taus=(0.1,)))
    assert len(fig.axes) == 2
    ax = panel(fig, "Breakout, τ = 0.1")
    labels = [line.get_label() for line in ax.get_lines()]
    band = ax.collections[labels.index("DQN+ReDo, replay ratio 1")]
    heights = band.get_paths()[0].vertices[:, 1]
    assert heights.max() == pytest.approx(100 * dormant_value(0, True, 1.0, 1, TOTAL, 0.1))
    assert heights.min() == pytest.approx(100 * dormant_value(0, True, 1.0, 0, 300, 0.1))


def test_plot_dormant_vs_replay_ratio(runs):
    fig = plot_dormant_vs_replay_ratio(final_dormant(runs, tau=0.1, fraction=0.1))
    assert len(fig.axes) == 2
    lines = by_label(panel(fig, "Breakout, τ = 0.1"))
    assert set(lines) == {"DQN", "DQN+ReDo"}
    np.testing.assert_allclose(lines["DQN"].get_xdata(), RATIOS)
    expected = [
        100 * np.mean([dormant_value(0, False, rr, s, TOTAL, 0.1) for s in SEEDS]) for rr in RATIOS
    ]
    np.testing.assert_allclose(lines["DQN"].get_ydata(), expected)
    assert fig.axes[0].get_xscale() == "log"
    assert "last 10%" in fig.get_suptitle()


def test_plot_returns(runs):
    curves = return_curves(runs, window=250)
    fig = plot_returns(curves)
    assert len(fig.axes) == 4  # 2 replay ratios x 2 games
    lines = by_label(panel(fig, "Freeway, replay ratio 0.25"))
    assert set(lines) == {"DQN", "DQN+ReDo"}
    levels = [level(1, True, 0.25, s) for s in SEEDS]
    np.testing.assert_allclose(lines["DQN+ReDo"].get_ydata()[-1], np.mean(levels) * 0.975)
    np.testing.assert_allclose(lines["DQN+ReDo"].get_xdata(), [250, 500, 750, 1000])
    assert "return" in fig.axes[0].get_ylabel()


def test_plot_aggregate(runs):
    scored = normalise_per_game(final_returns(runs), random_returns(runs))
    ci = bootstrap_ci(scored, n_resamples=200)
    assert len(ci) == 4 and (ci["runs"] == 4).all() and (ci["strata"] == 2).all()
    # the best setting is DQN+ReDo at ratio 1 in both games: IQM of its 4 scores, which
    # average 1 per game
    best = ci.set_index(["method", "replay_ratio"]).loc[("DQN+ReDo", 1.0)]
    assert best["estimate"] == pytest.approx(
        iqm(scored.query("method == 'DQN+ReDo' and replay_ratio == 1")["score"])
    )
    fig = plot_aggregate(ci)
    (ax,) = fig.axes
    assert len(ax.containers) == 2  # one errorbar set per method
    ys = {c.get_label(): c.lines[0].get_ydata() for c in ax.containers}
    np.testing.assert_allclose(ys["DQN+ReDo"], ci[ci["method"] == "DQN+ReDo"]["estimate"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.25", "1"]
    assert "95%" in ax.get_title()


def test_figures_refuse_to_average_several_settings(runs, tmp_path):
    write_synthetic_run(tmp_path / "extra", "MinAtar/Breakout-v1", True, 1.0, 0, tau=0.3)
    more = [*runs, *load_runs(tmp_path)]
    with pytest.raises(ValueError, match=r"differ in \['redo_tau', 'redo_variant'\]"):
        plot_dormant_curves(dormant_curves(more))
    with pytest.raises(ValueError, match="select one setting"):
        plot_aggregate(pd.concat([bootstrap_ci(hand_final().assign(score=0.5))] * 2))


def test_figures_refuse_to_average_redo_variants(runs, tmp_path):
    write_synthetic_run(
        tmp_path / "extra", "MinAtar/Breakout-v1", True, 1.0, 0, redo_step_mode="elementwise"
    )
    more = [*runs, *load_runs(tmp_path)]
    with pytest.raises(ValueError, match=r"differ in \['redo_step_mode', 'redo_variant'\]"):
        plot_returns(return_curves(more, window=250))


def test_plot_layer_dormant_curves(runs):
    fig = plot_layer_dormant_curves(layer_dormant_curves(runs, tau=0.1))
    assert len(fig.axes) == 2  # 1 layer x 2 games
    lines = by_label(panel(fig, "Breakout, fc1"))
    assert sorted(lines) == [
        "DQN+ReDo, replay ratio 0.25",
        "DQN+ReDo, replay ratio 1",
        "DQN, replay ratio 0.25",
        "DQN, replay ratio 1",
    ]
    np.testing.assert_allclose(lines["DQN, replay ratio 1"].get_ydata(), 0.0)
    assert "τ = 0.1" in fig._suptitle.get_text()
    two = pd.concat(
        [layer_dormant_curves(runs, 0.1), layer_dormant_curves(runs, 0.1).assign(tau=0.0)]
    )
    with pytest.raises(ValueError, match="several thresholds"):
        plot_layer_dormant_curves(two)


def test_plot_recycling(runs):
    fig = plot_recycling(recycling_curves(runs))
    assert len(fig.axes) == 4  # 2 measures x 2 games
    lines = by_label(panel(fig, "Breakout, recycled"))
    assert sorted(lines) == ["DQN+ReDo, replay ratio 0.25", "DQN+ReDo, replay ratio 1"]
    line = lines["DQN+ReDo, replay ratio 1"]
    np.testing.assert_allclose(line.get_ydata(), np.array(LOG_STEPS) // 100)


def test_plot_variants_shows_every_run(runs):
    final = with_variants(final_returns(runs))
    final = final[final["replay_ratio"] == 1.0]
    fig = plot_variants(final, "final_return", "final return", title="at ratio 1")
    assert [ax.get_title() for ax in fig.axes] == ["Breakout", "Freeway"]
    ax = panel(fig, "Freeway")
    order = variant_order(final["variant"])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == order
    markers = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert len(markers) == len(final[final["game"] == "Freeway"])  # one marker per run
    expected = sorted(final.loc[final["game"] == "Freeway", "final_return"])
    assert sorted(float(m.get_xdata()[0]) for m in markers) == pytest.approx(expected)
    bars = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    means = final[final["game"] == "Freeway"].groupby("variant")["final_return"].mean()
    assert sorted(float(b.get_xdata()[0]) for b in bars) == pytest.approx(sorted(means))
    assert "at ratio 1" in fig._suptitle.get_text()
