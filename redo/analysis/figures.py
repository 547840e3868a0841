"""The book's figures: each takes a tidy table of :mod:`redo.analysis.tables` and returns a
matplotlib ``Figure``."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from redo.analysis.tables import BAND_LABEL, ID_COLUMNS, METHOD_COLOURS, variant_order

#: Line styles for a second grouping (e.g. replay ratios), in sorted order of its values.
LINE_STYLES = ("-", "--", ":", "-.")

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


def _curves_over_training(
    data: pd.DataFrame,
    *,
    y: str,
    row: str,
    titles: Callable[[Any, Any], str],
    ylabel: str,
    title: str,
    sharey: str = "row",
) -> Figure:
    """``y`` against the environment step: a panel per game (columns) and per value of
    ``row``, colour by method, line style by replay ratio; mean over seeds with a min-max
    band."""
    fig = _facet_lines(
        data,
        x="env_step",
        y=y,
        row=row,
        col="game",
        style="replay_ratio",
        style_label=lambda rr: f"replay ratio {rr:g}",
        titles=titles,
        sharey=sharey,
    )
    return _label_axes(fig, "environment steps", ylabel, title)


def plot_dormant_curves(curves: pd.DataFrame) -> Figure:
    """Dormant neurons (%) over training: a panel per game (columns) and per threshold (rows),
    colour by method, line style by replay ratio; mean over seeds with a min-max band.

    ``curves`` is a :func:`dormant_curves` table.
    """
    return _curves_over_training(
        curves.assign(dormant_pct=100 * curves["dormant_fraction"]),
        y="dormant_pct",
        row="tau",
        titles=lambda tau, game: f"{game}, {_tau_label(tau)}",
        ylabel="dormant neurons (%)",
        title="Dormant neurons during training",
    )


def plot_layer_dormant_curves(curves: pd.DataFrame) -> Figure:
    """Dormant neurons (%) over training, layer by layer: a panel per game (columns) and per
    hidden layer (rows), colour by method, line style by replay ratio; mean over seeds with a
    min-max band.

    ``curves`` is a :func:`layer_dormant_curves` table, at one threshold.
    """
    taus = sorted(curves["tau"].unique())
    if len(taus) != 1:
        raise ValueError(f"curves hold several thresholds {taus}; select one first")
    return _curves_over_training(
        curves.assign(dormant_pct=100 * curves["dormant_fraction"]),
        y="dormant_pct",
        row="layer",
        titles=lambda layer, game: f"{game}, {layer}",
        ylabel="dormant neurons of the layer (%)",
        title=f"Dormant neurons per layer during training, {_tau_label(taus[0])}",
    )


def plot_recycling(curves: pd.DataFrame) -> Figure:
    """Neurons ReDo recycles per check over training, and how many of them the check before
    had recycled too: a panel per game (columns) and per measure (rows), line style by replay
    ratio; mean over seeds with a min-max band.

    ``curves`` is a :func:`recycling_curves` table.
    """
    return _curves_over_training(
        curves,
        y="neurons",
        row="measure",
        titles=lambda measure, game: f"{game}, {measure}",
        ylabel="neurons per check",
        title="What ReDo recycles",
        sharey="all",
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


#: Markers of the seeds in :func:`plot_variants`, in sorted order of the seeds.
SEED_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_variants(
    table: pd.DataFrame,
    value_col: str,
    xlabel: str,
    order: list[str] | None = None,
    title: str = "",
) -> Figure:
    """One value per run and variant: a panel per game, a row per variant, a marker per seed
    (every run shown) and a bar at the mean over seeds. Colour by method.

    ``table`` has the columns ``game``, ``variant``, ``method``, ``seed`` and ``value_col``
    (e.g. a :func:`final_returns` table with :func:`with_variants`); ``order`` lists the
    variants from top to bottom (by default :func:`variant_order`).
    """
    order = order if order is not None else variant_order(table["variant"])
    games = sorted(table["game"].unique())
    seeds = sorted(table["seed"].unique())
    fig, axes = plt.subplots(
        1,
        len(games),
        figsize=(4.2 * len(games) + 2.5, 0.42 * len(order) + 1.6),
        squeeze=False,
        sharey=True,
        constrained_layout=True,
    )
    for ax, game in zip(axes[0], games, strict=True):
        panel = table[table["game"] == game]
        for y, name in enumerate(order):
            runs = panel[panel["variant"] == name].dropna(subset=[value_col])
            if runs.empty:
                continue
            ax.plot([runs[value_col].mean()] * 2, [y - 0.3, y + 0.3], color="0.3", linewidth=2)
            for _, run in runs.iterrows():
                k = seeds.index(run["seed"])
                ax.plot(
                    run[value_col],
                    y + (k - (len(seeds) - 1) / 2) * 0.12,
                    linestyle="none",
                    marker=SEED_MARKERS[k % len(SEED_MARKERS)],
                    color=METHOD_COLOURS.get(run["method"], "0.5"),
                    markersize=6,
                )
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_title(game, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    methods = sorted(table["method"].unique())
    handles = [
        Line2D([], [], color=METHOD_COLOURS.get(m, "0.5"), marker="o", linestyle="none")
        for m in methods
    ] + [
        Line2D([], [], color="0.4", marker=SEED_MARKERS[k % len(SEED_MARKERS)], linestyle="none")
        for k in range(len(seeds))
    ]
    labels = [*methods, *(f"seed {seed}" for seed in seeds)]
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(title + ("\n" if title else "") + "(markers: one run per seed; bar: their mean)")
    return fig


__all__ = [
    "SEED_MARKERS",
    "plot_aggregate",
    "plot_dormant_curves",
    "plot_dormant_vs_replay_ratio",
    "plot_layer_dormant_curves",
    "plot_recycling",
    "plot_returns",
    "plot_variants",
]
