"""The paper's claims, one by one, judged on our runs with bootstrap confidence intervals.

A claim is a comparison in a stated direction ("ReDo has fewer dormant neurons than DQN").
:func:`difference_ci` estimates the difference between two groups of runs with a stratified
bootstrap (runs resampled within each game, as :func:`redo.analysis.stats.bootstrap_ci` does), and
:func:`verdict` reads the interval: *supported* when it excludes zero on the claimed side,
*contradicted* when it excludes zero on the other side, *not resolved* when it contains zero.
A verdict is about our runs at our scale, never about the paper's.

:func:`interaction_ci` estimates a difference of differences ("ReDo's gain grows with the
replay ratio") with one interval, from the same stratified resampling. :func:`judge` and
:func:`judge_interaction` apply either to the strata where every side has runs, so that a
grid still filling up gives a verdict on what is in, or :data:`NO_RUNS` when nothing is;
:func:`claim_row` writes one line of a claim table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from redo.analysis.stats import common_strata, stratified_resamples

Direction = Literal["greater", "less"]
VERDICTS = ("supported", "contradicted", "not resolved")
#: The verdict of a claim none of whose compared groups has runs in a common stratum yet.
NO_RUNS = "no runs yet"


def difference_ci(
    frame: pd.DataFrame,
    value_col: str,
    group_col: str,
    a: object,
    b: object,
    stratify_col: str = "game",
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``statistic(values of group a) - statistic(values of group b)``, with a percentile
    interval from resampling each (group, stratum) cell's runs with replacement.

    Every stratum must hold runs of both groups, so that the difference compares like with
    like (the same games on both sides); the error names the strata that do not.
    """
    _check_confidence(confidence)
    sides = {name: frame[frame[group_col] == name] for name in (a, b)}
    estimates, draws = _resampled_sides(
        sides, value_col, stratify_col, statistic, n_resamples, seed
    )
    lower, upper = _interval(draws[a] - draws[b], confidence)
    return {
        "estimate": float(estimates[a] - estimates[b]),
        "lower": lower,
        "upper": upper,
        "runs_a": len(sides[a]),
        "runs_b": len(sides[b]),
    }


def interaction_ci(
    frame: pd.DataFrame,
    value_col: str,
    group_col: str,
    a: object,
    b: object,
    by_col: str,
    high: object,
    low: object,
    stratify_col: str = "game",
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How much more group ``a`` beats ``b`` where ``by_col == high`` than where it is
    ``low``: ``[s(a, high) - s(b, high)] - [s(a, low) - s(b, low)]``, ``s`` being
    ``statistic`` of a cell's values pooled over strata, with one percentile interval.

    For "ReDo's gain grows with the replay ratio" it is ReDo's gain over DQN at replay ratio 1
    minus its gain at 0.25: one interval for the interaction, not two separate tests whose
    verdicts would say nothing about their difference. The bootstrap is stratified as in
    :func:`difference_ci`: in every resample each (group, ``by_col``, stratum) cell's runs are
    redrawn with replacement from that cell alone, so each game keeps its number of runs in
    each of the four groups. All four must have runs in the same strata.

    Returns ``estimate``, ``lower``, ``upper``, the four gains' parts ``a_high``, ``b_high``,
    ``a_low`` and ``b_low`` (the statistic of each group) and ``runs``: the runs of each
    group, keyed ``"a_high"`` and so on.
    """
    _check_confidence(confidence)
    cells = {"a_high": (a, high), "b_high": (b, high), "a_low": (a, low), "b_low": (b, low)}
    sides = {
        name: frame[(frame[group_col] == group) & (frame[by_col] == level)]
        for name, (group, level) in cells.items()
    }
    estimates, draws = _resampled_sides(
        sides, value_col, stratify_col, statistic, n_resamples, seed
    )

    def interaction(values: Mapping[str, Any]) -> Any:
        return (values["a_high"] - values["b_high"]) - (values["a_low"] - values["b_low"])

    lower, upper = _interval(interaction(draws), confidence)
    return {
        "estimate": float(interaction(estimates)),
        "lower": lower,
        "upper": upper,
        **{name: float(value) for name, value in estimates.items()},
        "runs": {name: len(side) for name, side in sides.items()},
    }


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _check_same_strata(sides: Mapping[Hashable, pd.DataFrame], stratify_col: str) -> None:
    """Every side must hold runs in the same, nonempty set of strata, so that a difference
    compares like with like; the error names each side's strata."""
    strata = {name: set(side[stratify_col]) for name, side in sides.items()}
    first = next(iter(strata.values()))
    if not first or any(s != first for s in strata.values()):
        listed = " and ".join(f"{sorted(map(str, s))}" for s in strata.values())
        names = ", ".join(map(repr, sides))
        raise ValueError(f"groups {names} must have runs in the same {stratify_col}s, got {listed}")


def _resampled_sides(
    sides: Mapping[Hashable, pd.DataFrame],
    value_col: str,
    stratify_col: str,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int,
    seed: int,
) -> tuple[dict[Hashable, float], dict[Hashable, np.ndarray]]:
    """:func:`_resampled` for each of ``sides`` in turn, from one generator seeded with
    ``seed``, after checking that they share their strata: each side's estimate and draws."""
    _check_same_strata(sides, stratify_col)
    rng = np.random.default_rng(seed)
    estimates, draws = {}, {}
    for name, side in sides.items():
        estimates[name], draws[name] = _resampled(
            side, value_col, stratify_col, statistic, n_resamples, rng
        )
    return estimates, draws


def _resampled(
    side: pd.DataFrame,
    value_col: str,
    stratify_col: str,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray]:
    """The statistic of one group's values pooled over strata, and of each stratified
    resample of them."""
    cells = [g[value_col].to_numpy(float) for _, g in side.groupby(stratify_col)]
    pooled = stratified_resamples(cells, n_resamples, rng)
    return statistic(np.concatenate(cells)), np.array([statistic(row) for row in pooled])


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    lower, upper = np.percentile(draws, [tail, 100 - tail])
    return float(lower), float(upper)


def verdict(lower: float, upper: float, direction: Direction) -> str:
    """What the interval of a difference says about a claim that it is ``direction`` 0."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if lower > 0:
        return "supported" if direction == "greater" else "contradicted"
    if upper < 0:
        return "supported" if direction == "less" else "contradicted"
    return "not resolved"


def judge(
    frame: pd.DataFrame,
    value_col: str,
    group_col: str,
    a: object,
    b: object,
    direction: Direction,
    stratify_col: str = "game",
    **options: Any,
) -> dict[str, Any]:
    """:func:`difference_ci` of ``a`` and ``b`` on the strata where both have runs, with its
    :func:`verdict` on the claim that ``a - b`` is ``direction`` 0.

    ``options`` go to :func:`difference_ci` (``statistic``, ``n_resamples``, ``confidence``,
    ``seed``). Returns its keys and ``strata`` (the strata compared), ``runs`` (the runs
    compared), ``confidence`` and ``verdict``; with no common stratum, NaN estimates,
    no runs and the verdict :data:`NO_RUNS`.
    """
    strata = common_strata(frame, group_col, [a, b], stratify_col)
    used = frame[frame[stratify_col].isin(strata)]
    confidence = options.get("confidence", 0.95)
    if not strata:
        return _nothing(confidence) | {"runs_a": 0, "runs_b": 0}
    result = difference_ci(used, value_col, group_col, a, b, stratify_col=stratify_col, **options)
    return result | {
        "strata": strata,
        "runs": result["runs_a"] + result["runs_b"],
        "confidence": confidence,
        "verdict": verdict(result["lower"], result["upper"], direction),
    }


def judge_interaction(
    frame: pd.DataFrame,
    value_col: str,
    group_col: str,
    a: object,
    b: object,
    by_col: str,
    high: object,
    low: object,
    direction: Direction,
    stratify_col: str = "game",
    **options: Any,
) -> dict[str, Any]:
    """:func:`interaction_ci` on the strata where all four groups have runs, with its
    :func:`verdict`; the keys of :func:`judge` (``runs`` the total of the four groups')."""
    groups = [(a, high), (b, high), (a, low), (b, low)]
    strata = common_strata(frame, [group_col, by_col], groups, stratify_col)
    used = frame[frame[stratify_col].isin(strata)]
    confidence = options.get("confidence", 0.95)
    if not strata:
        return _nothing(confidence)
    result = interaction_ci(
        used, value_col, group_col, a, b, by_col, high, low, stratify_col=stratify_col, **options
    )
    return result | {
        "strata": strata,
        "runs": sum(result["runs"].values()),
        "confidence": confidence,
        "verdict": verdict(result["lower"], result["upper"], direction),
    }


def _nothing(confidence: float) -> dict[str, Any]:
    nan = math.nan
    return {
        "estimate": nan,
        "lower": nan,
        "upper": nan,
        "strata": [],
        "runs": 0,
        "confidence": confidence,
        "verdict": NO_RUNS,
    }


def claim_row(
    claim: str,
    paper: str,
    judged: Mapping[str, Any],
    planned: Sequence[int] | None = None,
    strata_name: str = "games",
    digits: int = 3,
) -> dict[str, str]:
    """One row of a claim table: the claim, the paper's number, our estimate with its
    interval, the runs and strata it rests on, how many of its planned runs are in, and its
    verdict.

    ``judged`` is what :func:`judge` or :func:`judge_interaction` returned; ``planned``, if
    given, is ``(in, planned)``: how many of the runs the claim needs are in, so that a verdict
    on a partial grid says so ("-" for a claim whose runs are not planned, but made here).
    """
    if judged["verdict"] == NO_RUNS:
        ours, runs = "-", "-"
    else:
        ours = (
            f"{judged['estimate']:+.{digits}f} "
            f"[{judged['lower']:+.{digits}f}, {judged['upper']:+.{digits}f}]"
        )
        count = (
            f"{judged['runs_a']} vs {judged['runs_b']}" if "runs_a" in judged else judged["runs"]
        )
        runs = f"{count} runs; {strata_name}: {', '.join(map(str, judged['strata']))}"
    return {
        "claim": claim,
        "paper (approximate)": paper,
        f"ours: estimate [{100 * judged['confidence']:g}% CI]": ours,
        "runs compared": runs,
        "planned runs in": "-" if planned is None else f"{planned[0]} of {planned[1]}",
        "verdict at this scale": judged["verdict"],
    }


__all__ = [
    "NO_RUNS",
    "VERDICTS",
    "claim_row",
    "difference_ci",
    "interaction_ci",
    "judge",
    "judge_interaction",
    "verdict",
]
