"""Claims: the bootstrap interval of a difference and the verdict it gives."""

from __future__ import annotations

import pandas as pd
import pytest

from redo.analysis.claims import difference_ci, verdict


def frame(values_a, values_b, games=("g1", "g2")):
    rows = []
    for group, values in (("a", values_a), ("b", values_b)):
        for i, value in enumerate(values):
            rows.append({"group": group, "game": games[i % len(games)], "value": value})
    return pd.DataFrame(rows)


def test_difference_of_means_by_hand():
    data = frame([1.0, 3.0, 5.0, 7.0], [0.0, 1.0, 2.0, 3.0])
    result = difference_ci(data, "value", "group", "a", "b")
    assert result["estimate"] == pytest.approx(4.0 - 1.5)
    assert result["lower"] <= result["estimate"] <= result["upper"]
    assert (result["runs_a"], result["runs_b"]) == (4, 4)


def test_one_run_per_cell_has_no_spread():
    """With one run per (group, game), every resample is the data itself."""
    data = frame([2.0, 4.0], [1.0, 1.0])
    result = difference_ci(data, "value", "group", "a", "b")
    assert result["lower"] == result["upper"] == result["estimate"] == pytest.approx(2.0)


def test_resamples_stay_within_games():
    """Game g1 is high for both groups, g2 low: resampling within games keeps the difference
    exactly 1; pooling games would let it swing between -9 and 11."""
    data = frame([11.0, 1.0, 11.0, 1.0], [10.0, 0.0, 10.0, 0.0])
    result = difference_ci(data, "value", "group", "a", "b", n_resamples=500)
    assert result["lower"] == pytest.approx(1.0) and result["upper"] == pytest.approx(1.0)


def test_seeded_and_checked():
    data = frame([1.0, 3.0, 5.0, 7.0], [0.0, 1.0, 2.0, 4.0])
    assert difference_ci(data, "value", "group", "a", "b", seed=3) == difference_ci(
        data, "value", "group", "a", "b", seed=3
    )
    with pytest.raises(ValueError, match="same games"):
        difference_ci(frame([1.0], [1.0, 2.0]), "value", "group", "a", "b")
    with pytest.raises(ValueError, match="confidence"):
        difference_ci(data, "value", "group", "a", "b", confidence=1.0)


@pytest.mark.parametrize(
    ("lower", "upper", "direction", "expected"),
    [
        (0.1, 0.5, "greater", "supported"),
        (0.1, 0.5, "less", "contradicted"),
        (-0.5, -0.1, "less", "supported"),
        (-0.5, -0.1, "greater", "contradicted"),
        (-0.1, 0.1, "greater", "not resolved"),
        (0.0, 0.3, "greater", "not resolved"),
    ],
)
def test_verdict(lower, upper, direction, expected):
    assert verdict(lower, upper, direction) == expected
