"""Aggregate statistics: the interquartile mean and stratified bootstrap intervals."""

import functools

import numpy as np
import pandas as pd
import pytest

from redo.analysis.stats import bootstrap_ci, common_strata, iqm, stratified_resamples
from tests.analysis.frames import scores_frame

mean = functools.partial(np.mean, axis=-1)


# --- IQM --------------------------------------------------------------------------------------


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([0, 1, 2, 3, 100]) == 2.0  # n = 5: floor(5/4) = 1 cut per end, middle 3 kept
    assert iqm([10, 1, 2, 3, 4, -50]) == 2.5  # n = 6: middle 4 kept
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100, -100]) == 3.0  # n = 9: 2 cut, mean of 1..5
    assert iqm([5, 1, 0]) == 2.0  # n < 4: nothing is cut
    np.testing.assert_allclose(iqm([[1, 2, 3, 4], [0, 0, 8, 100]]), [2.5, 4.0])
    np.testing.assert_allclose(iqm([[1, 0], [2, 0], [3, 8], [4, 100]], axis=0), [2.5, 4.0])


def test_iqm_of_one_dimension_is_a_float():
    assert type(iqm([1, 2, 3, 4])) is float
    assert isinstance(iqm([[1, 2], [3, 4]]), np.ndarray)


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


# --- stratified resampling --------------------------------------------------------------------


def test_stratified_resamples_draw_each_stratum_from_itself():
    strata = [np.array([0.0, 1.0]), np.array([10.0, 11.0, 12.0])]
    draws = stratified_resamples(strata, 300, np.random.default_rng(0))
    assert draws.shape == (300, 5)
    assert np.isin(draws[:, :2], strata[0]).all()
    assert np.isin(draws[:, 2:], strata[1]).all()
    assert set(np.unique(draws)) == {0.0, 1.0, 10.0, 11.0, 12.0}  # with replacement


# --- stratified bootstrap ---------------------------------------------------------------------


def test_bootstrap_with_one_run_per_stratum_is_the_point_estimate():
    ci = bootstrap_ci(scores_frame({"A": [1.0], "B": [5.0], "C": [9.0]}), group_cols=["method"])
    (row,) = ci.itertuples()
    assert (row.estimate, row.lower, row.upper) == (5.0, 5.0, 5.0)
    assert (row.runs, row.strata, row.method) == (3, 3, "DQN")
    assert list(ci.columns) == [
        "method",
        "estimate",
        "lower",
        "upper",
        "runs",
        "strata",
        "confidence",
    ]


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
    with pytest.raises(ValueError, match="group_cols"):
        bootstrap_ci(frame, group_cols=[])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(frame, group_cols=["method"], n_resamples=0)


def test_common_strata_are_those_every_group_has():
    frame = pd.DataFrame(
        {
            "method": ["DQN", "DQN", "ReDo", "ReDo", "DQN"],
            "replay_ratio": [1.0, 1.0, 1.0, 0.25, 0.25],
            "game": ["A", "B", "B", "A", "C"],
        }
    )
    assert common_strata(frame, "method", ["DQN", "ReDo"]) == ["A", "B"]
    assert common_strata(frame, "method", ["DQN"]) == ["A", "B", "C"]
    assert common_strata(frame, ["method", "replay_ratio"], [("DQN", 1.0), ("ReDo", 1.0)]) == ["B"]
    assert common_strata(frame, ["method", "replay_ratio"], [("DQN", 1.0), ("ReDo", 0.5)]) == []
    assert common_strata(frame.iloc[:0], "method", ["DQN", "ReDo"]) == []
    assert common_strata(frame, "method", []) == []
