"""Claims: the bootstrap interval of a difference and the verdict it gives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from redo.analysis.claims import (
    NO_RUNS,
    claim_row,
    difference_ci,
    interaction_ci,
    judge,
    judge_interaction,
    verdict,
)


def frame(values_a, values_b, games=("g1", "g2")):
    rows = []
    for group, values in (("a", values_a), ("b", values_b)):
        for i, value in enumerate(values):
            rows.append({"group": group, "game": games[i % len(games)], "value": value})
    return pd.DataFrame(rows, columns=["group", "game", "value"])


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


# --- the interaction ------------------------------------------------------------------------


def grid(cells):
    """A method x replay ratio x game table from ``{(method, ratio, game): [values]}``."""
    return pd.DataFrame(
        [
            {"method": m, "replay_ratio": r, "game": g, "seed": i, "score": v}
            for (m, r, g), values in cells.items()
            for i, v in enumerate(values)
        ]
    )


def hand_grid():
    """ReDo gains 1 over DQN at ratio 0.25 and 3 at ratio 1 in game A; in game B, 0 and 2."""
    return grid(
        {
            ("ReDo", 1.0, "A"): [5.0, 7.0],  # mean 6
            ("DQN", 1.0, "A"): [3.0, 3.0],
            ("ReDo", 0.25, "A"): [4.0, 4.0],  # mean 4
            ("DQN", 0.25, "A"): [3.0, 3.0],  # mean 3
            ("ReDo", 1.0, "B"): [2.0, 2.0],
            ("DQN", 1.0, "B"): [0.0, 0.0],
            ("ReDo", 0.25, "B"): [1.0, 1.0],
            ("DQN", 0.25, "B"): [1.0, 1.0],
        }
    )


def interaction(frame, **options):
    return interaction_ci(
        frame, "score", "method", "ReDo", "DQN", "replay_ratio", 1.0, 0.25, **options
    )


def test_interaction_by_hand():
    """Pooled over games: gain at 1 = (6 + 2) / 2 - (3 + 0) / 2 = 2.5; at 0.25 = 2.5 - 2 = 0.5;
    the interaction is 2."""
    result = interaction(hand_grid())
    assert result["estimate"] == pytest.approx(2.0)
    assert result["a_high"] == pytest.approx(4.0) and result["b_high"] == pytest.approx(1.5)
    assert result["a_low"] == pytest.approx(2.5) and result["b_low"] == pytest.approx(2.0)
    assert result["runs"] == {"a_high": 4, "b_high": 4, "a_low": 4, "b_low": 4}
    assert result["lower"] <= result["estimate"] <= result["upper"]


def test_interaction_is_the_difference_of_the_two_gains():
    frame = hand_grid()
    gains = {
        ratio: difference_ci(
            frame[frame["replay_ratio"] == ratio], "score", "method", "ReDo", "DQN"
        )["estimate"]
        for ratio in (1.0, 0.25)
    }
    assert interaction(frame)["estimate"] == pytest.approx(gains[1.0] - gains[0.25])


def test_interaction_resamples_runs_within_each_cell():
    """Only cell (ReDo, 1, A) varies: its two runs 5 and 7. A resample of that cell has mean 5,
    6 or 7, so the interaction (2 at mean 6) moves by (mean - 6) / 2 and stays in [1.5, 2.5];
    a bootstrap that pooled games or cells would move values between cells."""
    result = interaction(hand_grid(), n_resamples=4000)
    assert 1.5 <= result["lower"] < 2.0 < result["upper"] <= 2.5
    # only the extremes 5,5 (1/4) and 7,7 (1/4) reach the bounds: a 95% interval touches them
    assert result["lower"] == pytest.approx(1.5) and result["upper"] == pytest.approx(2.5)


def test_interaction_with_one_run_per_cell_has_no_spread():
    frame = grid({(m, r, "A"): [v] for (m, r), v in {
        ("ReDo", 1.0): 4.0, ("DQN", 1.0): 1.0, ("ReDo", 0.25): 2.0, ("DQN", 0.25): 2.0,
    }.items()})  # fmt: skip
    result = interaction(frame)
    assert result["lower"] == result["upper"] == result["estimate"] == pytest.approx(3.0)


def test_interaction_with_the_same_gain_everywhere_is_zero():
    """When ReDo adds exactly 1 to every run at both ratios, the gains cancel in every
    resample whose DQN and ReDo cells draw the same runs; the estimate is exactly 0."""
    rng = np.random.default_rng(0)
    cells = {}
    for game in ("A", "B", "C"):
        for ratio in (0.25, 1.0):
            dqn = rng.normal(size=3)
            cells[("DQN", ratio, game)] = list(dqn)
            cells[("ReDo", ratio, game)] = list(dqn + 1)
    result = interaction(grid(cells), n_resamples=1000)
    assert result["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert result["lower"] < 0 < result["upper"]


def test_interaction_statistic_and_seed():
    frame = hand_grid()
    median = interaction(frame, statistic=np.median)
    # medians of the pooled cells: (3.5 - 1.5) - (2.5 - 2) = 1.5
    assert median["estimate"] == pytest.approx(1.5)
    assert interaction(frame, seed=5) == interaction(frame, seed=5)


def test_interaction_needs_the_same_games_in_every_cell():
    frame = hand_grid()
    lacking = frame[
        ~((frame["method"] == "DQN") & (frame["replay_ratio"] == 0.25) & (frame["game"] == "B"))
    ]
    with pytest.raises(ValueError, match="same games"):
        interaction(lacking)
    with pytest.raises(ValueError, match="confidence"):
        interaction(frame, confidence=0)


# --- judging on what is in ------------------------------------------------------------------


def test_judge_compares_the_games_both_sides_have():
    """Game g3 has runs of group a only: it is left out, and the result is that of g1, g2."""
    data = frame([1.0, 3.0, 5.0, 7.0], [0.0, 1.0, 2.0, 3.0])
    extra = pd.DataFrame([{"group": "a", "game": "g3", "value": 100.0}])
    judged = judge(pd.concat([data, extra]), "value", "group", "a", "b", "greater", seed=1)
    plain = difference_ci(data, "value", "group", "a", "b", seed=1)
    assert {k: judged[k] for k in plain} == plain
    assert judged["strata"] == ["g1", "g2"] and judged["runs"] == 8
    assert judged["verdict"] == verdict(plain["lower"], plain["upper"], "greater")
    assert judged["confidence"] == 0.95


def test_judge_without_runs_says_so():
    data = frame([1.0, 2.0], [], games=("g1",))
    for empty in (data, data.iloc[:0]):
        judged = judge(empty, "value", "group", "a", "b", "less")
        assert judged["verdict"] == NO_RUNS and judged["runs"] == 0 and judged["strata"] == []
        assert math.isnan(judged["estimate"])


def test_judge_interaction_uses_the_complete_games():
    frame_ = hand_grid()
    partial = frame_[
        ~((frame_["method"] == "DQN") & (frame_["replay_ratio"] == 0.25) & (frame_["game"] == "B"))
    ]
    judged = judge_interaction(
        partial, "score", "method", "ReDo", "DQN", "replay_ratio", 1.0, 0.25, "greater"
    )
    only_a = interaction(frame_[frame_["game"] == "A"])
    assert judged["strata"] == ["A"] and judged["estimate"] == pytest.approx(only_a["estimate"])
    assert judged["runs"] == 8 and judged["verdict"] == "supported"  # 2 to 2.5 > 0
    nothing = judge_interaction(
        frame_[frame_["replay_ratio"] == 1.0],
        "score", "method", "ReDo", "DQN", "replay_ratio", 1.0, 0.25, "greater",
    )  # fmt: skip
    assert nothing["verdict"] == NO_RUNS


def test_claim_row():
    judged = judge(frame([1.0, 3.0, 5.0, 7.0], [0.0, 1.0, 2.0, 3.0]), "value", "group", "a", "b",
                   "greater", n_resamples=200)  # fmt: skip
    row = claim_row("a beats b", "yes", judged, planned=(8, 12))
    assert list(row) == [
        "claim",
        "paper (approximate)",
        "ours: estimate [95% CI]",
        "runs compared",
        "planned runs in",
        "verdict at this scale",
    ]
    assert row["ours: estimate [95% CI]"].startswith("+2.500 [")
    assert row["runs compared"] == "4 vs 4 runs; games: g1, g2"
    assert row["planned runs in"] == "8 of 12"
    assert row["verdict at this scale"] == judged["verdict"]
    empty = claim_row("a beats b", "yes", judge(frame([], []), "value", "group", "a", "b", "less"))
    assert empty["ours: estimate [95% CI]"] == "-" and empty["verdict at this scale"] == NO_RUNS
    assert empty["planned runs in"] == "-"
    both = judge_interaction(
        hand_grid(), "score", "method", "ReDo", "DQN", "replay_ratio", 1.0, 0.25, "greater"
    )
    assert claim_row("grows", "yes", both)["runs compared"] == "16 runs; games: A, B"
