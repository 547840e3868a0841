"""Analysis: tidy tables, normalisation, IQM and stratified bootstrap, figures and captions.

The tables and figures are checked on synthetic run records written with ``RunWriter``, whose
values are known functions of each run's settings, so every number can be checked by hand.
"""

import functools
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from synthetic_runs import (
    GAMES,
    LEARNED_ENDS,
    LOG_STEPS,
    RANDOM_BASE,
    RATIOS,
    SEEDS,
    TOTAL,
    dormant_value,
    level,
    write_synthetic_run,
)

from redo.analysis.tables import (
    ID_COLUMNS,
    bootstrap_ci,
    describe_runs,
    dormant_curves,
    early_dormant,
    final_dormant,
    final_returns,
    game_name,
    iqm,
    normalise_per_game,
    plot_aggregate,
    plot_dormant_curves,
    plot_dormant_vs_replay_ratio,
    plot_returns,
    random_returns,
    reference_returns,
    return_curves,
)
from redo.agent.config import DQNConfig
from redo.records.run import RunWriter, load_runs

mean = functools.partial(np.mean, axis=-1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """16 runs: 2 games x 2 methods x 2 replay ratios x 2 seeds, in folders whose names say
    nothing about the run, so the analysis must read the configs."""
    root = tmp_path_factory.mktemp("runs")
    grid = itertools.product(GAMES, (False, True), RATIOS, SEEDS)
    for i, (env_id, redo, rr, seed) in enumerate(grid):
        write_synthetic_run(root / f"batch{i % 3}" / f"run{i:02d}", env_id, redo, rr, seed)
    return load_runs(root)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def panel(fig, title):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


# --- identifying runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "game"),
    [
        ("MinAtar/Breakout-v1", "Breakout"),
        ("MinAtar/SpaceInvaders-v1", "SpaceInvaders"),
        ("ALE/Breakout-v5", "Breakout"),
        ("CartPole-v1", "CartPole"),
        ("MountainCar-v0", "MountainCar"),
    ],
)
def test_game_name(env_id, game):
    assert game_name(env_id) == game


def test_config_without_dqn_settings_is_refused(tmp_path):
    with RunWriter(tmp_path / "r", {"env_id": "CartPole-v1", "seed": 0}) as writer:
        writer.log_episode(10, 1.0, 10)
    with pytest.raises(ValueError, match=r"config lacks \[.*'redo'"):
        final_returns(load_runs(tmp_path))


# --- tidy tables ------------------------------------------------------------------------------


def test_dormant_curves(runs):
    curves = dormant_curves(runs, taus=(0.0, 0.1))
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "tau", "dormant_fraction"]
    assert len(curves) == 16 * len(LOG_STEPS) * 2
    assert curves.groupby(["game", "method", "replay_ratio", "seed"]).ngroups == 16
    assert set(curves["method"]) == {"DQN", "DQN+ReDo"}
    expected = [
        dormant_value(
            GAMES[r.env_id], r.method == "DQN+ReDo", r.replay_ratio, r.seed, r.env_step, r.tau
        )
        for r in curves.itertuples()
    ]
    np.testing.assert_allclose(curves["dormant_fraction"], expected)
    # the config's ReDo threshold is the paper's rule for each replay ratio
    assert dict(zip(curves["replay_ratio"], curves["redo_tau"], strict=True)) == {
        0.25: 0.025,
        1.0: 0.1,
    }


def test_dormant_curves_names_the_logged_thresholds(runs):
    with pytest.raises(ValueError, match=r"dormant/tau=0.05.*'dormant/tau=0', 'dormant/tau=0.025'"):
        dormant_curves(runs, taus=(0.05,))


def test_return_curves_bins_episodes_by_their_end(runs):
    curves = return_curves(runs, window=250)
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "episode_return", "episodes"]
    one = curves[
        (curves["game"] == "Breakout")
        & (curves["method"] == "DQN+ReDo")
        & (curves["replay_ratio"] == 1.0)
        & (curves["seed"] == 1)
    ].set_index("env_step")
    lvl = level(0, True, 1.0, 1)
    # (0, 250]: episodes ending at 100, 200 (random play, 2 and 4) and 250 (100)
    assert one.loc[250, "episodes"] == 3
    assert one.loc[250, "episode_return"] == pytest.approx((2 + 4 + 100) / 3)
    assert one.loc[500, "episode_return"] == pytest.approx(lvl * 0.5)
    assert one.loc[750, "episode_return"] == pytest.approx(lvl * 0.7)
    assert one.loc[1000, "episode_return"] == pytest.approx(lvl * (0.95 + 1.0) / 2)
    assert list(one.index) == [250, 500, 750, 1000]


def test_return_curves_rejects_a_bad_window(runs):
    with pytest.raises(ValueError, match="window"):
        return_curves(runs, window=0)


@pytest.mark.parametrize(
    ("fraction", "ends"),
    [(0.1, (950, 1000)), (0.5, (700, 950, 1000)), (1.0, (100, 200, 250, *LEARNED_ENDS))],
)
def test_final_returns(runs, fraction, ends):
    final = final_returns(runs, fraction=fraction)
    assert len(final) == 16
    assert list(final.columns) == [*ID_COLUMNS, "fraction", "final_return", "episodes"]
    assert (final["episodes"] == len(ends)).all()
    for row in final.itertuples():
        game, redo = GAMES[row.env_id], row.method == "DQN+ReDo"
        returns = {
            100: RANDOM_BASE[row.game] + row.seed,
            200: RANDOM_BASE[row.game] + row.seed + 2,
            250: 100.0,
        } | {e: level(game, redo, row.replay_ratio, row.seed) * e / TOTAL for e in LEARNED_ENDS}
        assert row.final_return == pytest.approx(np.mean([returns[e] for e in ends]))


def test_final_returns_of_a_run_stopped_early_is_nan(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "r", config) as writer:
        writer.log_episode(400, 20.0, 400)
    (row,) = final_returns(load_runs(tmp_path)).itertuples()
    assert np.isnan(row.final_return)
    assert row.episodes == 0


def test_final_dormant(runs):
    final = final_dormant(runs, tau=0.025, fraction=0.25)  # rows at 800, 900, 1000
    assert len(final) == 16
    assert (final["rows"] == 3).all()
    assert (final["tau"] == 0.025).all()
    for row in final.itertuples():
        values = [
            dormant_value(
                GAMES[row.env_id], row.method == "DQN+ReDo", row.replay_ratio, row.seed, s, 0.025
            )
            for s in (800, 900, 1000)
        ]
        assert row.dormant_fraction == pytest.approx(np.mean(values))


def test_early_dormant(runs):
    early = early_dormant(runs, tau=0.1, fraction=0.15)  # first row 300: rows at 300, 400
    assert len(early) == 16
    assert (early["rows"] == 2).all()
    for row in early.itertuples():
        values = [
            dormant_value(
                GAMES[row.env_id], row.method == "DQN+ReDo", row.replay_ratio, row.seed, s, 0.1
            )
            for s in (300, 400)
        ]
        assert row.dormant_fraction == pytest.approx(np.mean(values))


def test_fractions_outside_zero_one_are_refused(runs):
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            final_returns(runs, fraction=bad)
        with pytest.raises(ValueError, match="fraction"):
            final_dormant(runs, tau=0.1, fraction=bad)


# --- normalisation ----------------------------------------------------------------------------


def test_random_returns_pool_the_episodes_before_learning_starts(runs):
    random = random_returns(runs)
    # per game 8 runs, each with returns base + seed and base + seed + 2 (seeds 0 and 1);
    # the episode ending at 250 > learning_starts is not random play
    assert random.to_dict() == pytest.approx({"Breakout": 1.0 + 1.5, "Freeway": 0.0 + 1.5})
    assert random.name == "random_return"


def test_random_returns_need_a_random_policy(tmp_path):
    write_synthetic_run(tmp_path / "r", "MinAtar/Breakout-v1", False, 1.0, 0, epsilon_start=0.5)
    with pytest.raises(ValueError, match="epsilon_start"):
        random_returns(load_runs(tmp_path))


def hand_final():
    rows = [
        ("A", "DQN", 1.0, [3, 5]),
        ("A", "DQN+ReDo", 1.0, [7, 9]),
        ("A", "DQN", 0.25, [10, 2]),
        ("B", "DQN", 1.0, [0, 2]),
        ("B", "DQN+ReDo", 1.0, [4, 4]),
        ("B", "DQN", 0.25, [-1, 1]),
    ]
    return pd.DataFrame(
        [
            {"game": g, "method": m, "replay_ratio": rr, "seed": s, "final_return": r}
            for g, m, rr, returns in rows
            for s, r in enumerate(returns)
        ]
    )


def test_normalise_per_game_by_hand():
    final = hand_final()
    assert reference_returns(final).to_dict() == {"A": 8.0, "B": 4.0}
    scored = normalise_per_game(final, {"A": 1.0, "B": -4.0})
    score = scored.set_index(["game", "method", "replay_ratio", "seed"])["score"]
    assert score["A", "DQN", 1.0, 1] == pytest.approx((5 - 1) / (8 - 1))
    assert score["B", "DQN", 1.0, 0] == pytest.approx((0 + 4) / (4 + 4))
    assert score["B", "DQN", 0.25, 0] == pytest.approx((-1 + 4) / (4 + 4))
    # the best setting of each game scores 1 on average
    best = scored.groupby(["game", "method", "replay_ratio"])["score"].mean()
    assert best["A", "DQN+ReDo", 1.0] == pytest.approx(1.0)
    assert best["B", "DQN+ReDo", 1.0] == pytest.approx(1.0)
    assert list(scored.columns) == [*final.columns, "random_return", "reference_return", "score"]
    assert "score" not in final.columns  # pure: the input is left alone


def test_normalise_per_game_with_a_given_reference():
    scored = normalise_per_game(hand_final(), pd.Series({"A": 0.0, "B": 0.0}), {"A": 20, "B": 2})
    assert scored["score"].tolist() == pytest.approx(
        [3 / 20, 5 / 20, 7 / 20, 9 / 20, 10 / 20, 2 / 20, 0, 1, 2, 2, -0.5, 0.5]
    )


def test_normalise_per_game_refuses_undefined_scales():
    with pytest.raises(ValueError, match=r"game\(s\) \['B'\]"):
        normalise_per_game(hand_final(), {"A": 1.0})
    with pytest.raises(ValueError, match=r"not above the random return in game\(s\) \['B'\]"):
        normalise_per_game(hand_final(), {"A": 1.0, "B": 4.0})


# --- IQM --------------------------------------------------------------------------------------


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([0, 1, 2, 3, 100]) == 2.0  # n = 5: floor(5/4) = 1 cut per end, middle 3 kept
    assert iqm([10, 1, 2, 3, 4, -50]) == 2.5  # n = 6: middle 4 kept
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100, -100]) == 3.0  # n = 9: 2 cut, mean of 1..5
    assert iqm([5, 1, 0]) == 2.0  # n < 4: nothing is cut
    np.testing.assert_allclose(iqm([[1, 2, 3, 4], [0, 0, 8, 100]]), [2.5, 4.0])
    np.testing.assert_allclose(iqm([[1, 0], [2, 0], [3, 8], [4, 100]], axis=0), [2.5, 4.0])


def test_iqm_matches_scipy_trim_mean():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in range(1, 14):
        x = rng.standard_cauchy((3, n))
        np.testing.assert_allclose(iqm(x), stats.trim_mean(x, 0.25, axis=-1))


def test_iqm_refuses_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        iqm([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="no values"):
        iqm([])


# --- stratified bootstrap ---------------------------------------------------------------------


def scores_frame(values_by_stratum, group="DQN"):
    return pd.DataFrame(
        [
            {"method": group, "game": stratum, "score": v}
            for stratum, values in values_by_stratum.items()
            for v in values
        ]
    )


def test_bootstrap_with_one_run_per_stratum_is_the_point_estimate():
    ci = bootstrap_ci(scores_frame({"A": [1.0], "B": [5.0], "C": [9.0]}), group_cols=["method"])
    (row,) = ci.itertuples()
    assert (row.estimate, row.lower, row.upper) == (5.0, 5.0, 5.0)
    assert (row.runs, row.strata, row.method) == (3, 3, "DQN")


def test_bootstrap_resamples_within_strata():
    seen = []

    def recording_mean(x):
        seen.append(x)
        return x.mean(axis=-1)

    frame = scores_frame({"A": [0.0, 1.0], "B": [10.0]})
    ci = bootstrap_ci(frame, recording_mean, ["method"], n_resamples=500)
    resamples = seen[0]
    assert resamples.shape == (500, 3)
    # every resample keeps game B's one run and two draws from game A's
    assert ((resamples == 10.0).sum(axis=1) == 1).all()
    assert set(np.unique(resamples)) == {0.0, 1.0, 10.0}
    # so the mean lies in {10/3, 11/3, 12/3}; each end has probability 1/4 > 2.5%
    (row,) = ci.itertuples()
    assert row.estimate == pytest.approx(11 / 3)
    assert (row.lower, row.upper) == pytest.approx((10 / 3, 12 / 3))


def test_bootstrap_is_deterministic_and_per_group():
    rng = np.random.default_rng(1)
    one = scores_frame({"A": rng.normal(size=6), "B": rng.normal(size=5)})
    two = pd.concat([one, scores_frame({"A": rng.normal(size=6)}, group="DQN+ReDo")])
    first = bootstrap_ci(one, group_cols=["method"], seed=3)
    pd.testing.assert_frame_equal(first, bootstrap_ci(one, group_cols=["method"], seed=3))
    # adding another group leaves this group's interval where it was
    pd.testing.assert_frame_equal(first, bootstrap_ci(two, group_cols=["method"], seed=3).iloc[:1])
    other = bootstrap_ci(one, group_cols=["method"], seed=4)
    assert other["estimate"].iloc[0] == first["estimate"].iloc[0]
    assert other["lower"].iloc[0] != first["lower"].iloc[0]


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(2)
    frame = scores_frame({g: rng.lognormal(size=10) for g in "ABCDE"})
    (row,) = bootstrap_ci(frame, group_cols=["method"]).itertuples()
    assert row.lower < row.estimate < row.upper
    assert row.estimate == pytest.approx(iqm(frame["score"]))
    assert row.runs == 50


def test_bootstrap_coverage_on_normal_samples():
    """The percentile interval of the mean of n = 30 N(0, 1) draws covers 0 about 95% of the
    time and is about 2 * 1.96 / sqrt(30) wide."""
    rng = np.random.default_rng(3)
    trials, n = 200, 30
    frame = pd.DataFrame(
        {
            "trial": np.repeat(np.arange(trials), n),
            "game": "A",
            "score": rng.normal(size=trials * n),
        }
    )
    ci = bootstrap_ci(frame, mean, group_cols=["trial"], n_resamples=1000)
    coverage = ((ci["lower"] < 0) & (ci["upper"] > 0)).mean()
    assert 0.88 <= coverage <= 0.99
    width = (ci["upper"] - ci["lower"]).mean()
    assert width == pytest.approx(2 * 1.96 / np.sqrt(n), rel=0.1)


def test_bootstrap_refuses_bad_input():
    frame = scores_frame({"A": [1.0, 2.0]})
    with pytest.raises(ValueError, match="one value per resample"):
        bootstrap_ci(frame, np.mean, ["method"])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(scores_frame({"A": [1.0, np.nan]}), group_cols=["method"])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(frame, group_cols=["method"], confidence=1.0)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(frame.iloc[:0], group_cols=["method"])


# --- figures ----------------------------------------------------------------------------------


def test_plot_dormant_curves(runs):
    fig = plot_dormant_curves(dormant_curves(runs, taus=(0.0, 0.1)))
    assert len(fig.axes) == 4  # 2 thresholds x 2 games
    ax = panel(fig, "Freeway, τ = 0.1")
    lines = by_label(ax)
    assert len(lines) == 4 and len(ax.collections) == 4  # 2 methods x 2 ratios, with bands
    line = lines["DQN, replay ratio 0.25"]
    assert line.get_linestyle() == "-" and lines["DQN, replay ratio 1"].get_linestyle() == "--"
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


# --- captions ---------------------------------------------------------------------------------


def test_describe_runs(runs):
    text = describe_runs(runs)
    assert text.startswith("16 runs: games Breakout, Freeway; methods DQN, DQN+ReDo;")
    assert "replay ratios 0.25, 1" in text
    assert "2 seeds per setting (seeds 0, 1)" in text
    assert "1,000 environment steps per run." in text
    assert "Status: 16 finished" in text
    prov = runs[0].record["provenance"]
    assert prov["hardware"]["cpu"] in text
    assert runs[0].record["started_at"][:10] in text
    git = prov["git"]
    assert (git["commit"][:10] if git else "not run from a git checkout") in text


def test_describe_runs_flags_runs_stopped_short(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "a", config) as writer:
        writer.log_episode(400, 20.0, 400)
    writer = RunWriter(tmp_path / "b", config | {"seed": 1})
    writer.log_episode(1000, 20.0, 400)
    writer.close("interrupted")
    text = describe_runs(load_runs(tmp_path))
    assert "1 of the runs stopped short of it" in text
    assert "Status: 1 finished, 1 interrupted" in text
    assert "2 seeds per setting (seeds 0, 1)" in text


def test_figures_refuse_to_average_several_settings(runs, tmp_path):
    write_synthetic_run(tmp_path / "extra", "MinAtar/Breakout-v1", True, 1.0, 0, tau=0.3)
    more = [*runs, *load_runs(tmp_path)]
    with pytest.raises(ValueError, match=r"differ in \['redo_tau'\]"):
        plot_dormant_curves(dormant_curves(more))
    with pytest.raises(ValueError, match="select one setting"):
        plot_aggregate(pd.concat([bootstrap_ci(hand_final().assign(score=0.5))] * 2))
