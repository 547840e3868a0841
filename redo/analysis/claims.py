"""The paper's claims, one by one, judged on our runs with bootstrap confidence intervals.

A claim is a comparison in a stated direction ("ReDo has fewer dormant neurons than DQN").
:func:`difference_ci` estimates the difference between two groups of runs with a stratified
bootstrap (runs resampled within each game, as :func:`redo.analysis.bootstrap_ci` does), and
:func:`verdict` reads the interval: *supported* when it excludes zero on the claimed side,
*contradicted* when it excludes zero on the other side, *not resolved* when it contains zero.
A verdict is about our runs at our scale, never about the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd

from redo.analysis.stats import stratified_resamples

Direction = Literal["greater", "less"]
VERDICTS = ("supported", "contradicted", "not resolved")


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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    sides = {name: frame[frame[group_col] == name] for name in (a, b)}
    strata = {name: set(side[stratify_col]) for name, side in sides.items()}
    if not strata[a] or strata[a] != strata[b]:
        raise ValueError(
            f"groups {a!r} and {b!r} must have runs in the same {stratify_col}s, got "
            f"{sorted(map(str, strata[a]))} and {sorted(map(str, strata[b]))}"
        )
    rng = np.random.default_rng(seed)
    estimates, draws = {}, {}
    for name, side in sides.items():
        cells = [g[value_col].to_numpy(float) for _, g in side.groupby(stratify_col)]
        estimates[name] = statistic(np.concatenate(cells))
        pooled = stratified_resamples(cells, n_resamples, rng)
        draws[name] = np.array([statistic(row) for row in pooled])
    differences = draws[a] - draws[b]
    tail = 100 * (1 - confidence) / 2
    lower, upper = np.percentile(differences, [tail, 100 - tail])
    return {
        "estimate": float(estimates[a] - estimates[b]),
        "lower": float(lower),
        "upper": float(upper),
        "runs_a": len(sides[a]),
        "runs_b": len(sides[b]),
    }


def verdict(lower: float, upper: float, direction: Direction) -> str:
    """What the interval of a difference says about a claim that it is ``direction`` 0."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if lower > 0:
        return "supported" if direction == "greater" else "contradicted"
    if upper < 0:
        return "supported" if direction == "less" else "contradicted"
    return "not resolved"
