"""Aggregate statistics over few runs per game: the interquartile mean and stratified
bootstrap intervals, as rliable (Agarwal et al., 2021) recommends. Pure functions on
DataFrames and arrays, so tests can feed them hand-made numbers."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

# --- aggregate statistics -------------------------------------------------------------------


def iqm(values: ArrayLike, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean along ``axis``: the mean of the middle values after dropping the
    lowest and highest ``floor(n / 4)`` of the ``n`` values.

    This is ``scipy.stats.trim_mean(values, 0.25, axis)``, which rliable uses: it cuts
    ``int(0.25 * n)`` values from each end, so for n not divisible by 4 *more* than half of the
    values are kept (n = 5: the middle 3; n = 6: the middle 4), and for n < 4 nothing is cut.
    The IQM is robust to the outlier runs RL produces, yet, unlike the median, it averages
    the middle half of the runs rather than resting on one or two. Returns a float for 1-D input, else an array without ``axis``.
    """
    x = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of no values")
    if np.isnan(x).any():
        raise ValueError("iqm of values with NaN; drop runs without a final return first")
    cut = n // 4
    result = np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)
    return float(result) if result.ndim == 0 else result


def _group_rng(seed: int, key: tuple[Hashable, ...]) -> np.random.Generator:
    """A generator for one group, seeded by ``seed`` and the group's values: a group's interval
    then does not move when other groups (another method, say) are added to the table."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def stratified_resamples(
    strata: Sequence[np.ndarray], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_resamples, total runs)``: each row redraws every stratum's runs with replacement
    from that stratum only, so every resample has each game's number of runs."""
    return np.concatenate(
        [s[rng.integers(0, len(s), size=(n_resamples, len(s)))] for s in strata], axis=1
    )


def common_strata(
    frame: pd.DataFrame,
    group_cols: str | Sequence[str],
    groups: Sequence[Any],
    stratify_col: str = "game",
) -> list[Any]:
    """The strata (games) in which every one of ``groups`` has at least one row, sorted.

    ``groups`` are values of ``group_cols`` (one column: plain values; several: tuples). On a
    grid that is still filling up, comparing groups on these strata only compares like with
    like: a game that one side lacks would otherwise weigh on the other side alone.
    """
    cols = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    strata_of: dict[tuple[Any, ...], set[Any]] = {}
    keys = frame[cols].itertuples(index=False, name=None)
    for key, stratum in zip(keys, frame[stratify_col], strict=True):
        strata_of.setdefault(key, set()).add(stratum)
    wanted = [g if isinstance(g, tuple) else (g,) for g in groups]
    if not wanted:
        return []
    return sorted(set.intersection(*(strata_of.get(g, set()) for g in wanted)))


def bootstrap_ci(
    frame: pd.DataFrame,
    statistic: Callable[[np.ndarray], Any] = iqm,
    group_cols: Sequence[str] = ("method", "replay_ratio"),
    stratify_col: str = "game",
    value_col: str = "score",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Point estimate and stratified-bootstrap percentile interval of ``statistic`` per group.

    Within each group (e.g. method x replay ratio) the runs of each stratum (game) are
    resampled with replacement, and ``statistic`` is recomputed on the pooled resampled scores,
    as rliable's ``StratifiedBootstrap`` does: the uncertainty is over runs, while every
    resample keeps every game with its number of runs, so no game drops out by chance. The
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled statistics. A stratum with one run cannot vary, so with one run per game the
    interval is the point estimate.

    ``statistic`` must reduce the last axis of a 2-D array (resamples x runs) to one value per
    resample, as :func:`iqm` does; for the mean pass ``functools.partial(np.mean, axis=-1)``.
    Returns one row per group: ``group_cols``, ``estimate``, ``lower``, ``upper``, ``runs``,
    ``strata`` and ``confidence``.
    """
    if frame.empty:
        raise ValueError("no runs to bootstrap: the frame is empty")
    if not group_cols:
        raise ValueError("group_cols must name at least one column")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not np.isfinite(frame[value_col].to_numpy(dtype=float)).all():
        raise ValueError(f"{value_col} holds NaN or infinite values; drop those runs first")
    rows = []
    for key, group in frame.groupby(list(group_cols), sort=True):
        strata = [g[value_col].to_numpy(dtype=float) for _, g in group.groupby(stratify_col)]
        stats = np.asarray(
            statistic(stratified_resamples(strata, n_resamples, _group_rng(seed, key)))
        )
        if stats.shape != (n_resamples,):
            raise ValueError(
                f"statistic must reduce the last axis to one value per resample; got shape "
                f"{stats.shape} for {n_resamples} resamples"
            )
        lower, upper = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
        rows.append(
            dict(zip(group_cols, key, strict=True))
            | {
                "estimate": float(statistic(np.concatenate(strata))),
                "lower": float(lower),
                "upper": float(upper),
                "runs": len(group),
                "strata": len(strata),
                "confidence": confidence,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "bootstrap_ci",
    "common_strata",
    "iqm",
    "stratified_resamples",
]
