"""From run records to the paper's figures and aggregate statistics.

The book's figures are drawn in three steps, each testable on its own:

1. **Tidy tables** (:func:`dormant_curves`, :func:`return_curves`, :func:`final_returns`,
   :func:`final_dormant`): one row per observation, with the columns of :data:`ID_COLUMNS`
   that say which run it came from. Everything is read from the configs stored in the run
   records (``run.json``), never from folder names, so a run moved or renamed is still
   grouped correctly. The config's ReDo threshold ``tau`` becomes the column ``redo_tau``,
   because ``tau`` in :func:`dormant_curves` is the threshold a fraction was *measured* at.
2. **Statistics** on those tables: per-game normalisation (:func:`normalise_per_game`), the
   interquartile mean (:func:`iqm`) and stratified bootstrap intervals (:func:`bootstrap_ci`),
   as rliable (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical Precipice")
   recommends for few runs per game. These are pure functions on DataFrames and arrays, so
   tests can feed them hand-made numbers.
3. **Figures** (``plot_*``) that take tidy tables and return a matplotlib ``Figure``, and
   :func:`describe_runs`, the caption that says how many runs, seeds and steps a figure shows
   and where and with which code the runs were made.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from redo.records.run import Run

#: Method names as the paper writes them, by the config's ``redo`` flag.
METHOD_NAMES: dict[bool, str] = {False: "DQN", True: "DQN+ReDo"}
#: One colour per method in every figure, so the methods read the same across the book.
METHOD_COLOURS: dict[str, str] = {"DQN": "tab:blue", "DQN+ReDo": "tab:red"}
#: Line styles for a second grouping (e.g. replay ratios), in sorted order of its values.
LINE_STYLES = ("-", "--", ":", "-.")

#: The columns that say which run a row came from. ``run`` (the folder) tells runs apart;
#: the others come from the run's config and are what tables are grouped by. The four ReDo
#: settings after ``total_steps`` matter for ablations only.
ID_COLUMNS: tuple[str, ...] = (
    "run",
    "env_id",
    "game",
    "method",
    "replay_ratio",
    "redo_tau",
    "seed",
    "total_steps",
    "redo_period",
    "redo_init",
    "redo_bias",
    "redo_step_mode",
)
#: Config keys that :data:`ID_COLUMNS` and the random-policy returns are read from.
_CONFIG_KEYS = (
    "env_id",
    "redo",
    "replay_ratio",
    "tau",
    "seed",
    "total_steps",
    "redo_period",
    "redo_init",
    "redo_bias",
    "redo_step_mode",
    "learning_starts",
    "epsilon_start",
)

#: The band around a mean over seeds in the line figures: the range over seeds. With the
#: few seeds an RL experiment affords, a range hides nothing and needs no distributional
#: assumption, where a normal-theory band over 3 seeds would be mostly guesswork.
BAND_LABEL = "band: min-max over seeds"


# --- identifying runs -----------------------------------------------------------------------


def game_name(env_id: str) -> str:
    """The short game name of an env id, as figure panels are titled: ``MinAtar/Breakout-v1``
    and ``ALE/Breakout-v5`` are both ``Breakout``, ``CartPole-v1`` is ``CartPole``."""
    return re.sub(r"-v\d+$", "", env_id.rsplit("/", 1)[-1])


def _identity(run: Run) -> dict[str, Any]:
    """The :data:`ID_COLUMNS` of one run, read from its config."""
    config = run.config
    missing = [key for key in _CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(
            f"{run.folder}: config lacks {missing}; the analysis reads DQNConfig.to_dict() records"
        )
    return {
        "run": str(run.folder),
        "env_id": config["env_id"],
        "game": game_name(config["env_id"]),
        "method": METHOD_NAMES[bool(config["redo"])],
        "replay_ratio": float(config["replay_ratio"]),
        "redo_tau": float(config["tau"]),
        "seed": int(config["seed"]),
        "total_steps": int(config["total_steps"]),
        "redo_period": int(config["redo_period"]),
        "redo_init": config["redo_init"],
        "redo_bias": config["redo_bias"],
        "redo_step_mode": config["redo_step_mode"],
    }


def _runs(runs: Iterable[Run]) -> list[Run]:
    runs = list(runs)
    if not runs:
        raise ValueError("no runs given")
    return runs


def _with_identity(run: Run, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the run's identifying columns in front."""
    identity = _identity(run)
    return table.assign(**identity)[[*identity, *table.columns]]


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def _window_start(identity: Mapping[str, Any], fraction: float) -> float:
    """Start of the last ``fraction`` of a run's budget; the window is ``(start, total]``.

    The budget is the config's ``total_steps``, not the steps reached: a run that stopped early
    then has nothing in its window (NaN) instead of passing off mid-training numbers as final.
    """
    return (1 - fraction) * identity["total_steps"]


# --- tidy tables ----------------------------------------------------------------------------


def dormant_column(tau: float) -> str:
    """The metrics.csv column of the fraction of dormant neurons (all hidden layers pooled)
    at threshold ``tau``, as :func:`redo.agent.dqn.dormant_columns` names it."""
    return f"dormant/tau={tau:g}"


def _dormant_values(run: Run, tau: float) -> pd.Series:
    column = dormant_column(tau)
    if column not in run.metrics.columns:
        logged = sorted(c for c in run.metrics.columns if re.fullmatch(r"dormant/tau=[^/]+", c))
        raise ValueError(f"{run.folder}: no column {column!r} in metrics.csv; it logs {logged}")
    return run.metrics[column]


def dormant_curves(runs: Iterable[Run], taus: Sequence[float] = (0.0, 0.1)) -> pd.DataFrame:
    """Fraction of dormant neurons over training, long: one row per run, logged row and tau.

    Columns: :data:`ID_COLUMNS`, ``env_step``, ``tau`` (the threshold the fraction was
    measured at) and ``dormant_fraction`` (in [0, 1], over all hidden neurons). Runs that have
    not logged a row yet add no rows.
    """
    frames = [
        _with_identity(
            run,
            pd.DataFrame(
                {
                    "env_step": run.metrics["env_step"],
                    "tau": float(tau),
                    "dormant_fraction": _dormant_values(run, tau),
                }
            ),
        )
        for run in _runs(runs)
        if len(run.metrics)
        for tau in taus
    ]
    if not frames:
        raise ValueError("no run has logged a metrics row yet")
    return pd.concat(frames, ignore_index=True)


def return_curves(runs: Iterable[Run], window: int) -> pd.DataFrame:
    """Episode returns over training, smoothed on a grid of ``window`` env steps.

    An episode belongs to the bin in which it *ended*: bin ``k`` holds the episodes ending in
    ``((k - 1) * window, k * window]`` and is labelled with its end, ``env_step = k * window``.
    The grid is the same for every run, so curves of different seeds can be averaged point by
    point. Columns: :data:`ID_COLUMNS`, ``env_step``, ``episode_return`` (mean return of the
    bin's episodes) and ``episodes`` (their number). Bins without an episode have no row.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer number of env steps, got {window!r}")
    frames = []
    for run in _runs(runs):
        episodes = run.episodes
        bin_end = (np.ceil(episodes["env_step"] / window) * window).astype("int64")
        binned = episodes.groupby(bin_end.rename("env_step"))["episode_return"]
        table = binned.agg(episode_return="mean", episodes="size").reset_index()
        frames.append(_with_identity(run, table))
    return pd.concat(frames, ignore_index=True)


def final_returns(runs: Iterable[Run], fraction: float = 0.1) -> pd.DataFrame:
    """One row per run: its mean episode return over the last ``fraction`` of training.

    An episode counts if it *ended* in ``((1 - fraction) * total_steps, total_steps]``
    (``total_steps`` from the config), so each episode counts once and the window holds only
    play near the end of training. Columns: :data:`ID_COLUMNS`, ``fraction``,
    ``final_return`` (NaN when no episode ended in the window) and ``episodes``.
    """
    _check_fraction(fraction)
    rows = []
    for run in _runs(runs):
        identity = _identity(run)
        ends = run.episodes["env_step"]
        in_window = run.episodes.loc[ends > _window_start(identity, fraction), "episode_return"]
        rows.append(
            identity
            | {"fraction": fraction, "final_return": in_window.mean(), "episodes": len(in_window)}
        )
    return pd.DataFrame(rows)


def final_dormant(runs: Iterable[Run], tau: float, fraction: float = 0.1) -> pd.DataFrame:
    """One row per run: its mean dormant fraction at ``tau`` over the last ``fraction`` of
    training (logged rows with ``env_step`` in ``((1 - fraction) * total_steps, total_steps]``).

    Columns: :data:`ID_COLUMNS`, ``tau``, ``fraction``, ``dormant_fraction`` (NaN when no row
    was logged in the window) and ``rows`` (the number of logged rows averaged).
    """
    return _window_dormant(
        runs, tau, fraction, lambda steps, identity: steps > _window_start(identity, fraction)
    )


def early_dormant(runs: Iterable[Run], tau: float, fraction: float = 0.1) -> pd.DataFrame:
    """One row per run: its mean dormant fraction at ``tau`` over its first logged
    ``fraction`` of training (rows with ``env_step`` in ``[first, first + fraction *
    total_steps]``, ``first`` being the run's first logged row, just after learning starts).

    The counterpart of :func:`final_dormant`, with the same columns, to compare a run's
    start with its end.
    """
    return _window_dormant(
        runs,
        tau,
        fraction,
        lambda steps, identity: steps <= steps.min() + fraction * identity["total_steps"],
    )


def _window_dormant(
    runs: Iterable[Run],
    tau: float,
    fraction: float,
    in_window: Callable[[pd.Series, Mapping[str, Any]], pd.Series],
) -> pd.DataFrame:
    """Each run's mean dormant fraction over the logged rows that ``in_window`` selects."""
    _check_fraction(fraction)
    rows = []
    for run in _runs(runs):
        identity = _identity(run)
        if len(run.metrics):
            values = _dormant_values(run, tau)[in_window(run.metrics["env_step"], identity)]
        else:
            values = pd.Series([])
        rows.append(
            identity
            | {
                "tau": float(tau),
                "fraction": fraction,
                "dormant_fraction": values.mean(),
                "rows": len(values),
            }
        )
    return pd.DataFrame(rows)


# --- normalisation --------------------------------------------------------------------------


def random_returns(runs: Iterable[Run]) -> pd.Series:
    """Per game, the mean return of a uniformly random policy, from the runs' own episodes.

    Before ``learning_starts`` the agent acts with epsilon = ``epsilon_start`` = 1, i.e. at
    random, so every episode that *ended* at or before ``learning_starts`` was played by a
    random policy. Those episodes are pooled over all runs of a game (each episode weighs the
    same). MinAtar has no published random or human scores, so this gives every game the same
    baseline, measured with the same environment version and settings as the runs themselves.
    Short episodes are slightly over-represented (an episode still running at
    ``learning_starts`` is left out); with many episodes per run that bias is small.

    Returns a Series indexed by game, named ``random_return``; NaN for a game where no episode
    ended before learning started.
    """
    pooled: dict[str, list[pd.Series]] = {}
    for run in _runs(runs):
        config = run.config
        game = _identity(run)["game"]
        if config["epsilon_start"] != 1:
            raise ValueError(
                f"{run.folder}: epsilon_start is {config['epsilon_start']}, not 1, so its "
                "episodes before learning_starts were not played by a random policy"
            )
        ends = run.episodes["env_step"]
        early = run.episodes.loc[ends <= config["learning_starts"], "episode_return"]
        pooled.setdefault(game, []).append(early)
    means = {game: pd.concat(parts).mean() for game, parts in pooled.items()}
    return pd.Series(means, name="random_return", dtype=float).rename_axis("game")


def reference_returns(
    final: pd.DataFrame, by: Sequence[str] = ("method", "replay_ratio")
) -> pd.Series:
    """Per game, the best mean final return over the groups ``by`` (method x replay ratio).

    This is the score 1 of :func:`normalise_per_game`: the best setting in the experiment
    itself, since MinAtar has no human reference. Runs whose ``final_return`` is NaN are left
    out of their group's mean.
    """
    means = final.groupby(["game", *by])["final_return"].mean()
    return means.groupby(level="game").max().rename("reference_return")


def normalise_per_game(
    final: pd.DataFrame,
    random_returns: Mapping[str, float] | pd.Series,
    reference: Mapping[str, float] | pd.Series | None = None,
) -> pd.DataFrame:
    """``final`` with the score ``(R - R_random) / (R_ref - R_random)`` per game.

    ``R`` is a run's ``final_return``, ``R_random`` the game's random-policy return (see
    :func:`random_returns`) and ``R_ref`` the game's reference return, by default
    :func:`reference_returns` of ``final``: the highest mean final return of any method x
    replay ratio in that game. So 0 is random play and 1 the best setting of the experiment in
    every game, which makes scores of games with different return scales poolable for
    :func:`iqm` and :func:`bootstrap_ci`. Adds the columns ``random_return``,
    ``reference_return`` and ``score``.

    Raises ValueError for a game without a baseline or reference, or whose reference is not
    above random play (the scale would be undefined or upside down).
    """
    random = pd.Series(random_returns, dtype=float)
    ref = reference_returns(final) if reference is None else pd.Series(reference, dtype=float)
    out = final.assign(
        random_return=final["game"].map(random), reference_return=final["game"].map(ref)
    )
    lacking = sorted(
        out.loc[out[["random_return", "reference_return"]].isna().any(axis=1), "game"].unique()
    )
    if lacking:
        raise ValueError(f"no random or reference return for game(s) {lacking}")
    flat = sorted(out.loc[out["reference_return"] <= out["random_return"], "game"].unique())
    if flat:
        raise ValueError(f"reference return is not above the random return in game(s) {flat}")
    span = out["reference_return"] - out["random_return"]
    return out.assign(score=(out["final_return"] - out["random_return"]) / span)


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


# --- figures --------------------------------------------------------------------------------


def _check_one_run_per_seed(line: pd.DataFrame, x: str) -> None:
    """A line averages seeds of one setting; runs of several settings (two ReDo thresholds,
    say) would be averaged silently, so name the columns that tell them apart."""
    if line[[x, "seed"]].duplicated().any():
        varying = [c for c in ID_COLUMNS[1:] if c in line and c != "seed" and line[c].nunique() > 1]
        raise ValueError(
            f"one line would average several runs per seed (they differ in {varying}); "
            "select one setting first"
        )


def _facet_lines(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    row: str,
    col: str,
    style: str | None,
    titles: Callable[[Any, Any], str],
    style_label: Callable[[Any], str] = str,
    marker: str | None = None,
    sharey: str = "row",
) -> Figure:
    """A grid of panels (``row`` x ``col``), one line per method (colour) and ``style`` value
    (line style): the mean over seeds of ``y`` at each ``x``, with a min-max band.

    Drawn with matplotlib from a pandas aggregation rather than with seaborn's ``relplot``,
    whose per-point aggregation took 33 s for one game of 3 seeds x 5000 logged rows (min-max
    band; far longer with its default bootstrap band), against about 1 s for five games here.
    """
    rows, cols = sorted(data[row].unique()), sorted(data[col].unique())
    styles = sorted(data[style].unique()) if style else [""]
    data = data.assign(_style=data[style] if style else "")
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(3.4 * len(cols) + 0.4, 2.7 * len(rows) + 1.0),
        squeeze=False,
        sharex=True,
        sharey=sharey,
        constrained_layout=True,
    )
    handles: dict[str, Any] = {}
    for (i, r), (j, c) in itertools.product(enumerate(rows), enumerate(cols)):
        ax = axes[i, j]
        panel = data[(data[row] == r) & (data[col] == c)]
        for (method, s), line in panel.groupby(["method", "_style"]):
            _check_one_run_per_seed(line, x)
            stats = line.groupby(x)[y].agg(["mean", "min", "max"])
            colour = METHOD_COLOURS.get(method)
            label = method if style is None else f"{method}, {style_label(s)}"
            (handles[label],) = ax.plot(
                stats.index,
                stats["mean"],
                color=colour,
                linestyle=LINE_STYLES[styles.index(s) % len(LINE_STYLES)],
                marker=marker,
                label=label,
            )
            ax.fill_between(
                stats.index, stats["min"], stats["max"], color=colour, alpha=0.2, linewidth=0
            )
        ax.set_title(titles(r, c), fontsize="medium")
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="outside lower center",
        ncols=data["method"].nunique(),  # a column per method, its line styles below
        frameon=False,
    )
    return fig


def _label_axes(fig: Figure, xlabel: str, ylabel: str, title: str) -> Figure:
    """Label only the outer axes of a grid, and title the figure with what the lines show."""
    grid = np.asarray(fig.axes).reshape(fig.axes[0].get_gridspec().get_geometry())
    for ax in grid[-1, :]:
        ax.set_xlabel(xlabel)
    for ax in grid[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(f"{title}\n(mean over seeds; {BAND_LABEL})")
    return fig


def _tau_label(tau: float) -> str:
    return f"τ = {tau:g}"


def plot_dormant_curves(curves: pd.DataFrame) -> Figure:
    """Dormant neurons (%) over training: a panel per game (columns) and per threshold (rows),
    colour by method, line style by replay ratio; mean over seeds with a min-max band.

    ``curves`` is a :func:`dormant_curves` table.
    """
    data = curves.assign(dormant_pct=100 * curves["dormant_fraction"])
    fig = _facet_lines(
        data,
        x="env_step",
        y="dormant_pct",
        row="tau",
        col="game",
        style="replay_ratio",
        style_label=lambda rr: f"replay ratio {rr:g}",
        titles=lambda tau, game: f"{game}, {_tau_label(tau)}",
    )
    return _label_axes(
        fig,
        "environment steps",
        "dormant neurons (%)",
        "Dormant neurons during training",
    )


def plot_dormant_vs_replay_ratio(final_dormant: pd.DataFrame) -> Figure:
    """Dormant neurons (%) at the end of training against the replay ratio (log scale), a
    panel per game (and a row per threshold), colour by method; mean over seeds with a band.

    ``final_dormant`` is a :func:`final_dormant` table (or several concatenated).
    """
    data = final_dormant.assign(dormant_pct=100 * final_dormant["dormant_fraction"])
    fig = _facet_lines(
        data,
        x="replay_ratio",
        y="dormant_pct",
        row="tau",
        col="game",
        style=None,
        marker="o",
        titles=lambda tau, game: f"{game}, {_tau_label(tau)}",
    )
    ratios = sorted(data["replay_ratio"].unique())
    for ax in fig.axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.minorticks_off()
    last = ", ".join(f"{100 * f:g}%" for f in sorted(data["fraction"].unique()))
    return _label_axes(
        fig,
        "replay ratio (gradient steps per env step)",
        "dormant neurons (%)",
        f"Dormant neurons in the last {last} of training",
    )


def plot_returns(curves: pd.DataFrame) -> Figure:
    """Episode return over training: a panel per game (columns) and replay ratio (rows),
    colour by method; mean over seeds with a min-max band. Panels of one game share the y axis.

    ``curves`` is a :func:`return_curves` table.
    """
    fig = _facet_lines(
        curves,
        x="env_step",
        y="episode_return",
        row="replay_ratio",
        col="game",
        style=None,
        titles=lambda rr, game: f"{game}, replay ratio {rr:g}",
        sharey="col",
    )
    return _label_axes(
        fig,
        "environment steps",
        "episode return (game score)",
        "Return during training",
    )


def plot_aggregate(ci_table: pd.DataFrame, ylabel: str = "IQM of normalised score") -> Figure:
    """The aggregate score per method and replay ratio: point estimate with its interval.

    ``ci_table`` is a :func:`bootstrap_ci` table grouped by ``method`` and ``replay_ratio``.
    Methods are drawn side by side at each replay ratio.
    """
    if ci_table[["method", "replay_ratio"]].duplicated().any():
        raise ValueError(
            "ci_table has several rows per method and replay ratio; select one setting first"
        )
    ratios = sorted(ci_table["replay_ratio"].unique())
    methods = sorted(ci_table["method"].unique())
    fig, ax = plt.subplots(figsize=(1.2 * len(ratios) + 3.5, 3.4), constrained_layout=True)
    for k, (method, rows) in enumerate(ci_table.groupby("method", sort=True)):
        offset = (k - (len(methods) - 1) / 2) * 0.15
        x = [ratios.index(r) + offset for r in rows["replay_ratio"]]
        estimate, lower, upper = (
            rows[c].to_numpy(dtype=float) for c in ("estimate", "lower", "upper")
        )
        ax.errorbar(
            x,
            estimate,
            yerr=[estimate - lower, upper - estimate],
            fmt="o",
            capsize=4,
            color=METHOD_COLOURS.get(method),
            label=method,
        )
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_xlim(-0.5, len(ratios) - 0.5)
    ax.set_xlabel("replay ratio (gradient steps per env step)")
    ax.set_ylabel(ylabel)
    levels = ", ".join(f"{100 * c:g}%" for c in sorted(ci_table["confidence"].unique()))
    ax.set_title(f"Aggregate over games ({levels} stratified bootstrap intervals)")
    ax.legend(frameon=False)
    return fig


# --- captions -------------------------------------------------------------------------------


def _listing(values: Iterable[Any], fmt: Callable[[Any], str] = str) -> str:
    return ", ".join(fmt(v) for v in sorted(set(values)))


def _span(counts: Iterable[int]) -> str:
    """``3`` or ``2-3``: how many of something there are, when that varies."""
    counts = list(counts)
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}-{high}"


def _hardware(provenance: Mapping[str, Any]) -> str:
    hardware = provenance.get("hardware") or {}
    if hardware.get("gpu"):
        return f"GPU {hardware['gpu']}"
    return f"CPU {hardware.get('cpu', 'unknown')} ({hardware.get('logical_cores', '?')} cores)"


def _commit(provenance: Mapping[str, Any]) -> str:
    git = provenance.get("git")
    if not git:
        return "unknown (not run from a git checkout)"
    return git["commit"][:10] + (" (with uncommitted changes)" if git["dirty"] else "")


def describe_runs(runs: Iterable[Run]) -> str:
    """A caption for a figure drawn from ``runs``: what was run, how long, where and with
    which code, so that a figure in the book says where its numbers come from.

    Hardware, dates and commits are read from every segment of every run, so a run resumed
    on another machine or with other code shows both.
    """
    runs = _runs(runs)
    ids = pd.DataFrame([_identity(run) for run in runs])
    settings = [c for c in ID_COLUMNS if c not in ("run", "seed")]
    segments = [s for run in runs for s in run.record["segments"]]
    provenances = [s["provenance"] for s in segments]
    budgets = _listing(ids["total_steps"], lambda n: f"{n:,}")
    short = int((ids["total_steps"] > [run.record["env_steps"] for run in runs]).sum())
    commits = sorted(set(map(_commit, provenances)))
    statuses = pd.Series([run.record["status"] for run in runs]).value_counts().sort_index()
    dates = [s["started_at"][:10] for s in segments] + [
        s["ended_at"][:10] for s in segments if s["ended_at"]
    ]
    first, last = min(dates), max(dates)
    hours = sum(float(run.record["wall_time_s"]) for run in runs) / 3600
    sentences = [
        f"{len(runs)} runs: games {_listing(ids['game'])}; methods {_listing(ids['method'])}; "
        f"replay ratios {_listing(ids['replay_ratio'], lambda r: f'{r:g}')}",
        f"{_span(ids.groupby(settings)['seed'].nunique())} seeds per setting "
        f"(seeds {_listing(ids['seed'])})",
        f"{budgets} environment steps per run"
        + (f", {short} of the runs stopped short of it" if short else ""),
        "Status: " + ", ".join(f"{n} {status}" for status, n in statuses.items()),
        f"Made {first}"
        + (f" to {last}" if last != first else "")
        + f" on {_listing(map(_hardware, provenances))}, {hours:.1f} run-hours in all "
        "(wall time summed over runs; the runs of one population shared their hours)",
        f"Code: redo at git commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}",
    ]
    return ". ".join(sentences) + "."


__all__ = [
    "BAND_LABEL",
    "ID_COLUMNS",
    "METHOD_COLOURS",
    "METHOD_NAMES",
    "bootstrap_ci",
    "describe_runs",
    "dormant_column",
    "dormant_curves",
    "early_dormant",
    "final_dormant",
    "final_returns",
    "game_name",
    "iqm",
    "normalise_per_game",
    "plot_aggregate",
    "plot_dormant_curves",
    "plot_dormant_vs_replay_ratio",
    "plot_returns",
    "random_returns",
    "reference_returns",
    "return_curves",
]
