"""From run records to tidy tables: the first of the three steps the book's figures take.

1. **Tidy tables** (this module: :func:`dormant_curves`, :func:`return_curves`,
   :func:`final_returns`, :func:`final_dormant` and the rest): one row per observation, with
   the columns of :data:`ID_COLUMNS` that say which run it came from. Everything is read from
   the configs stored in the run records (``run.json``), never from folder names, so a run
   moved or renamed is still grouped correctly, and never from the population a run was
   trained in. The config's ReDo threshold ``tau`` becomes the column ``redo_tau``, because
   ``tau`` in :func:`dormant_curves` is the threshold a fraction was *measured* at. Per-game
   normalisation (:func:`normalise_per_game`) lives here too.
2. **Statistics** on those tables (:mod:`redo.analysis.stats`, :mod:`redo.analysis.claims`):
   the interquartile mean and stratified bootstrap intervals, as rliable (Agarwal et al.,
   2021) recommends for few runs per game; pure functions, so tests feed them hand-made
   numbers.
3. **Figures** (:mod:`redo.analysis.figures`) that take tidy tables and return a matplotlib
   ``Figure``, and captions (:mod:`redo.analysis.describe`) that say how many runs, seeds and
   steps a figure shows and where and with which code the runs were made.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from redo.agent.config import REDO_OPTIONS, DQNConfig, describe_redo
from redo.records.reader import Run, load_runs
from redo.records.record import PathLike

METHOD_NAMES: dict[bool, str] = {False: "DQN", True: "DQN+ReDo"}
#: One colour per method in every figure, so the methods read the same across the book.
METHOD_COLOURS: dict[str, str] = {"DQN": "tab:blue", "DQN+ReDo": "tab:red"}

#: The columns that say which run a row came from. ``run`` (the folder) tells runs apart;
#: the others come from the run's config and are what tables are grouped by; how a run was
#: packed into a population is not among them, so runs of one setting are alike however they
#: were trained. The ReDo settings after ``total_steps`` matter for ablations only;
#: ``redo_variant`` names the ReDo in words (:func:`redo.agent.config.describe_redo`).
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
    *REDO_OPTIONS,
    "redo_variant",
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
    *REDO_OPTIONS,
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


def run_identity(run: Run) -> dict[str, Any]:
    """The :data:`ID_COLUMNS` of one run, read from its config."""
    missing = [key for key in _CONFIG_KEYS if key not in run.config]
    if missing:
        raise ValueError(
            f"{run.folder}: config lacks {missing}; the analysis reads DQNConfig.to_dict() records"
        )
    return {"run": str(run.folder), **config_identity(run.config)}


def config_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`ID_COLUMNS` but ``run`` of a run's settings (a ``DQNConfig.to_dict()``):
    what a planned run and a finished one are matched by (:func:`coverage`)."""
    return {
        "env_id": config["env_id"],
        "game": game_name(config["env_id"]),
        "method": METHOD_NAMES[bool(config["redo"])],
        "replay_ratio": float(config["replay_ratio"]),
        "redo_tau": float(config["tau"]),
        "seed": int(config["seed"]),
        "total_steps": int(config["total_steps"]),
        "redo_period": int(config["redo_period"]),
        **{key: config[key] for key in REDO_OPTIONS},
        "redo_variant": describe_redo(config),
    }


def runs_given(runs: Iterable[Run]) -> list[Run]:
    runs = list(runs)
    if not runs:
        raise ValueError("no runs given")
    return runs


def _with_identity(run: Run, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the run's identifying columns in front."""
    identity = run_identity(run)
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
        for run in runs_given(runs)
        if len(run.metrics)
        for tau in taus
    ]
    if not frames:
        raise ValueError("no run has logged a metrics row yet")
    return pd.concat(frames, ignore_index=True)


def layer_dormant_curves(runs: Iterable[Run], tau: float = 0.1) -> pd.DataFrame:
    """Fraction of dormant neurons over training, layer by layer: one row per run, logged row
    and hidden layer.

    Columns: :data:`ID_COLUMNS`, ``env_step``, ``tau``, ``layer`` (the layer's name, as the
    metrics column ``dormant/tau=<tau>/<layer>`` gives it: ``conv1`` and ``fc1`` for the
    MinAtar network) and ``dormant_fraction`` (of that layer's neurons). Runs that have not
    logged a row yet add no rows.
    """
    prefix = dormant_column(tau) + "/"
    frames = []
    for run in runs_given(runs):
        columns = [c for c in run.metrics.columns if c.startswith(prefix)]
        if not len(run.metrics):
            continue
        if not columns:
            raise ValueError(f"{run.folder}: metrics.csv logs no per-layer column {prefix}<layer>")
        for column in columns:
            table = pd.DataFrame(
                {
                    "env_step": run.metrics["env_step"],
                    "tau": float(tau),
                    "layer": column.removeprefix(prefix),
                    "dormant_fraction": run.metrics[column],
                }
            )
            frames.append(_with_identity(run, table))
    if not frames:
        raise ValueError("no run has logged a metrics row yet")
    return pd.concat(frames, ignore_index=True)


#: The metrics column that says a row's fractions were measured just before a ReDo reset,
#: on the batch that decided it (:mod:`redo.agent.metrics`).
BEFORE_RESET_COLUMN = "redo/scored_before_reset"


def before_reset_share(runs: Iterable[Run]) -> float:
    """Of the logged rows of the ReDo runs among ``runs``, the share whose dormant fractions
    were measured *before* a reset, on the batch that decided it: at those rows a ReDo run's
    share is the most it ever shows, just before recycling. NaN when no ReDo run logs the
    column :data:`BEFORE_RESET_COLUMN`."""
    flags = [
        run.metrics[BEFORE_RESET_COLUMN]
        for run in runs
        if run.config.get("redo") and BEFORE_RESET_COLUMN in run.metrics.columns
    ]
    values = pd.concat(flags) if flags else pd.Series([], dtype=float)
    return float(values.mean()) if len(values) else float("nan")


#: The metrics columns of what ReDo recycled in a row's interval, by the name
#: :func:`recycling_curves` gives each measure (:mod:`redo.agent.metrics`).
RECYCLING_COLUMNS: dict[str, str] = {
    "recycled": "redo/recycled",
    "recycled again": "redo/recycled_again",
}


def recycling_curves(runs: Iterable[Run]) -> pd.DataFrame:
    """What ReDo recycled over training, per check, long: one row per ReDo run, logged row
    with at least one check, and measure.

    Columns: :data:`ID_COLUMNS`, ``env_step``, ``measure`` (``"recycled"``: neurons recycled;
    ``"recycled again"``: those of them the check before had recycled too, i.e. that one
    period after their reset were dormant again) and ``neurons`` (per check, the mean over the
    row's checks). Runs without ReDo or without the column ``redo/calls`` add no rows, and a
    run whose metrics lack a measure's column (runs recorded before ``redo/recycled_again``
    was logged) adds no rows for it. With no such rows at all the table is empty.
    """
    frames = []
    for run in runs_given(runs):
        if not run.config.get("redo") or "redo/calls" not in run.metrics.columns:
            continue
        metrics = run.metrics
        checks = metrics["redo/calls"].diff().fillna(metrics["redo/calls"])
        at_check = checks > 0
        for measure, column in RECYCLING_COLUMNS.items():
            if column not in metrics.columns:
                continue
            table = pd.DataFrame(
                {
                    "env_step": metrics["env_step"][at_check],
                    "measure": measure,
                    "neurons": metrics[column][at_check] / checks[at_check],
                }
            )
            frames.append(_with_identity(run, table))
    if not frames:  # an empty frame in the concat would make every column an object column
        return pd.DataFrame(columns=[*ID_COLUMNS, "env_step", "measure", "neurons"])
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
    for run in runs_given(runs):
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
    for run in runs_given(runs):
        identity = run_identity(run)
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
    for run in runs_given(runs):
        identity = run_identity(run)
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
    for run in runs_given(runs):
        config = run.config
        game = run_identity(run)["game"]
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
    drop_undefined: bool = False,
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
    above random play (the scale would be undefined or upside down); with
    ``drop_undefined=True`` the rows of such games are left out instead (compare the games
    of the result with those of ``final`` to say which).
    """
    random = pd.Series(random_returns, dtype=float)
    ref = reference_returns(final) if reference is None else pd.Series(reference, dtype=float)
    out = final.assign(
        random_return=final["game"].map(random), reference_return=final["game"].map(ref)
    )
    lacking = sorted(
        out.loc[out[["random_return", "reference_return"]].isna().any(axis=1), "game"].unique()
    )
    flat = sorted(out.loc[out["reference_return"] <= out["random_return"], "game"].unique())
    if drop_undefined:
        out = out[~out["game"].isin([*lacking, *flat])]
        lacking = flat = []
    if lacking:
        raise ValueError(f"no random or reference return for game(s) {lacking}")
    if flat:
        raise ValueError(f"reference return is not above the random return in game(s) {flat}")
    span = out["reference_return"] - out["random_return"]
    return out.assign(score=(out["final_return"] - out["random_return"]) / span)


# --- what is in, of what was planned --------------------------------------------------------


def finished_runs(folders: PathLike | Iterable[PathLike]) -> list[Run]:
    """The finished runs under ``folders`` (one folder or several), sorted by path.

    A folder that does not exist yet holds no run, so a chapter reads a campaign's data folder
    before its first run is copied there; a damaged run is skipped with a warning
    (:func:`redo.records.reader.load_runs`), and a run still running is left out.
    """
    folders = [folders] if isinstance(folders, str | os.PathLike) else list(folders)
    runs = [
        run
        for folder in folders
        if Path(folder).is_dir()
        for run in load_runs(folder, on_error="warn")
    ]
    return [run for run in runs if run.record["status"] == "finished"]


#: The columns a planned run and a finished one are matched by: all of :data:`ID_COLUMNS`
#: but the folder, so a run counts wherever it lies and only with the planned settings.
MATCH_COLUMNS: tuple[str, ...] = ID_COLUMNS[1:]


def coverage(planned: Iterable[Mapping[str, Any] | Any], runs: Iterable[Run]) -> pd.DataFrame:
    """Which planned runs are in: one row per planned run, in the plan's order.

    ``planned`` are the planned runs' settings (``DQNConfig`` objects, as
    :meth:`redo.population.campaign.Plan.runs` gives them, or their ``to_dict()``); ``runs``
    the runs at hand, of which only the finished ones count. Columns: :data:`MATCH_COLUMNS`,
    ``run`` (the folder of the finished run with those settings, or None) and ``finished``.
    """
    found: dict[tuple[Any, ...], str] = {}
    for run in runs:
        if run.record["status"] == "finished":
            identity = run_identity(run)
            found.setdefault(tuple(identity[c] for c in MATCH_COLUMNS), identity["run"])
    rows = []
    for config in planned:
        identity = config_identity(config.to_dict() if hasattr(config, "to_dict") else config)
        folder = found.get(tuple(identity[c] for c in MATCH_COLUMNS))
        rows.append(identity | {"run": folder, "finished": folder is not None})
    return pd.DataFrame(rows, columns=[*MATCH_COLUMNS, "run", "finished"])


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def coverage_grid(
    table: pd.DataFrame,
    index: Sequence[str] = ("game",),
    columns: Sequence[str] = ("method", "replay_ratio"),
) -> pd.DataFrame:
    """A :func:`coverage` table as a grid: a row per ``index`` value, a column per
    ``columns`` value (labelled ``"DQN, 0.25"`` and so on), and in each cell how many of its
    planned runs are in and which seeds are still to come (``"1 of 3, seeds 1, 2 to come"``).
    A cell that nothing was planned for is empty; with no ``columns``, the one column is
    ``runs in``."""
    keys = [*index, *columns]

    def cell(group: pd.DataFrame) -> str:
        text = f"{int(group['finished'].sum())} of {len(group)}"
        missing = sorted(group.loc[~group["finished"], "seed"])
        if missing:
            text += (
                f", seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} to come"
            )
        return text

    cells = {key: cell(group) for key, group in table.groupby(keys, sort=True)}
    return _grid(cells, index, columns, "runs in")


def spread_grid(
    table: pd.DataFrame,
    value_col: str,
    index: Sequence[str] = ("game",),
    columns: Sequence[str] = ("method", "replay_ratio"),
    digits: int = 1,
) -> pd.DataFrame:
    """One value per run (a :func:`final_returns` or :func:`final_dormant` table, say) as a
    grid laid out as :func:`coverage_grid`'s: in each cell the mean over the cell's runs and,
    in brackets, the lowest and highest of them (``"31.2 [30.6, 33.7]"``), so that every
    seed's spread is in the numbers. Runs whose value is NaN are left out; a cell without
    runs is empty."""
    keys = [*index, *columns]
    values = table.dropna(subset=[value_col]).groupby(keys, sort=True)[value_col]
    cells = {
        key: f"{v.mean():.{digits}f} [{v.min():.{digits}f}, {v.max():.{digits}f}]"
        for key, v in values
    }
    return _grid(cells, index, columns, value_col)


def _grid(
    cells: Mapping[tuple, str], index: Sequence[str], columns: Sequence[str], name: str
) -> pd.DataFrame:
    """Cells keyed by their ``(*index, *columns)`` values as a table: a row per ``index``
    value, a column per ``columns`` value labelled ``"DQN, 0.25"`` (both sorted), ``""``
    where a cell is missing; with no ``columns``, one column called ``name``."""
    if not cells:
        return pd.DataFrame()
    keys = [*index, *columns]
    series = pd.Series(
        list(cells.values()),
        index=pd.MultiIndex.from_tuples(list(cells), names=keys),
        dtype=object,
    )
    if not len(columns):
        return series.to_frame(name)
    grid = series.unstack(list(range(len(index), len(keys)))).sort_index(axis=1).fillna("")
    grid.columns = [
        ", ".join(map(_label, c if isinstance(c, tuple) else (c,))) for c in grid.columns
    ]
    return grid


# --- ablation variants ----------------------------------------------------------------------

#: The name of a run without ReDo, and of the paper's ReDo, in :func:`ablation_variant`.
DQN_VARIANT = "DQN (no ReDo)"
PAPER_REDO = "the paper's ReDo"
#: The paper's control for its selection rule: as many neurons per layer, chosen at random.
RANDOM_SELECTION = "ReDo, random selection"


def ablation_variant(identity: Mapping[str, Any]) -> str:
    """What a run changes with respect to the paper's ReDo, in a few words, from its
    identity (a row of any tidy table): ``"the paper's ReDo"``, ``"ReDo, Adam step:
    elementwise"``, ``"ReDo, tau = 0"``, ``"ReDo, F = 250"``, ``"whole network reset every
    50,000"`` (selection ``all``: every weight redrawn every F gradient steps, the output layer
    included; no threshold is read) or ``"DQN (no ReDo)"``.

    The paper's ReDo is the family default of :class:`redo.agent.config.DQNConfig` with ReDo
    on: dormant neurons at the paper's tau for the run's replay ratio, every F = 1000 gradient
    steps, new weights from the layer's own initial distribution, bias 0, Adam's step kept.
    """
    if identity["method"] == METHOD_NAMES[False]:
        return DQN_VARIANT
    paper = _paper_redo(identity["env_id"], float(identity["replay_ratio"]))
    labels = {
        "redo_score": "score:",
        "redo_init": "init:",
        "redo_bias": "bias:",
        "redo_step_mode": "Adam step:",
    }
    changes = [
        f"{label} {identity[key]}" for key, label in labels.items() if identity[key] != paper[key]
    ]
    if identity["redo_selection"] == "all":
        return ", ".join([f"whole network reset every {identity['redo_period']:,}", *changes])
    if identity["redo_selection"] != paper["redo_selection"]:
        changes.insert(0, f"{identity['redo_selection']} selection")
    if identity["redo_tau"] != paper["tau"]:
        changes.append(f"tau = {identity['redo_tau']:g}")
    if identity["redo_period"] != paper["redo_period"]:
        changes.append(f"F = {identity['redo_period']:,}")
    return "ReDo, " + ", ".join(changes) if changes else PAPER_REDO


@functools.cache
def _paper_redo(env_id: str, replay_ratio: float) -> dict[str, Any]:
    return DQNConfig.for_env(env_id, redo=True, replay_ratio=replay_ratio).to_dict()


def with_variants(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``variant`` column: :func:`ablation_variant` of each row."""
    columns = [c for c in MATCH_COLUMNS if c in table.columns]
    names = {
        key: ablation_variant(dict(zip(columns, key, strict=True)))
        for key in table[columns].drop_duplicates().itertuples(index=False, name=None)
    }
    return table.assign(
        variant=[names[key] for key in table[columns].itertuples(index=False, name=None)]
    )


def variant_order(variants: Iterable[str]) -> list[str]:
    """The variants for a figure or table: DQN, the paper's ReDo, then the others sorted."""
    firsts = (DQN_VARIANT, PAPER_REDO)
    return sorted(set(variants), key=lambda v: (firsts.index(v) if v in firsts else 2, v))


def variant_summary(
    final: pd.DataFrame, dormant: pd.DataFrame, reference: str = PAPER_REDO
) -> pd.DataFrame:
    """Per game and variant: the runs and their seeds, the mean, lowest and highest final
    return, the mean final dormant share, and how the variant's returns lie with respect to
    the ``reference`` variant's in that game.

    ``final`` and ``dormant`` are :func:`final_returns` and :func:`final_dormant` tables with
    a ``variant`` column (:func:`with_variants`). The last column, ``returns vs reference``,
    says ``"all above"`` (every seed's return above every seed of the reference),
    ``"all below"``, ``"overlapping"``, or is empty for the reference itself and for a game
    where the reference has no run.
    """
    keys = ["game", "variant"]
    returns = final.groupby(keys)["final_return"]
    summary = pd.DataFrame(
        {
            "runs": returns.size(),
            "seeds": final.groupby(keys)["seed"].agg(lambda s: ", ".join(map(str, sorted(s)))),
            "return mean": returns.mean(),
            "return min": returns.min(),
            "return max": returns.max(),
            "dormant mean": dormant.groupby(keys)["dormant_fraction"].mean(),
        }
    ).reindex(returns.size().index)

    def against(row: pd.Series) -> str:
        game, name = row.name
        if name == reference or (game, reference) not in summary.index:
            return ""
        ref = summary.loc[(game, reference)]
        if row["return min"] > ref["return max"]:
            return "all above"
        if row["return max"] < ref["return min"]:
            return "all below"
        return "overlapping"

    summary["returns vs reference"] = summary.apply(against, axis=1) if len(summary) else []
    order = variant_order(summary.index.get_level_values("variant"))
    return summary.sort_index(
        key=lambda level: level.map(order.index) if level.name == "variant" else level
    )


__all__ = [
    "BAND_LABEL",
    "BEFORE_RESET_COLUMN",
    "DQN_VARIANT",
    "ID_COLUMNS",
    "MATCH_COLUMNS",
    "METHOD_COLOURS",
    "METHOD_NAMES",
    "PAPER_REDO",
    "RANDOM_SELECTION",
    "RECYCLING_COLUMNS",
    "ablation_variant",
    "before_reset_share",
    "config_identity",
    "coverage",
    "coverage_grid",
    "dormant_column",
    "dormant_curves",
    "early_dormant",
    "final_dormant",
    "final_returns",
    "finished_runs",
    "game_name",
    "layer_dormant_curves",
    "normalise_per_game",
    "random_returns",
    "recycling_curves",
    "reference_returns",
    "return_curves",
    "spread_grid",
    "variant_order",
    "variant_summary",
    "with_variants",
]
