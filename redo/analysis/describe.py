"""Captions: what a figure's runs are, how long they ran, where and with which code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from redo.analysis.tables import ID_COLUMNS, run_identity, runs_given
from redo.records.reader import Run

# --- captions -------------------------------------------------------------------------------


def _listing(values: Iterable[Any], fmt: Callable[[Any], str] = str) -> str:
    return ", ".join(fmt(v) for v in sorted(set(values)))


def _named(noun: str, values: Iterable[Any], fmt: Callable[[Any], str] = str) -> str:
    """``games Breakout, Freeway`` or ``game Breakout``: a listing after its noun, singular
    where there is one value."""
    values = list(values)
    plural = "s" if len(set(values)) > 1 else ""
    return f"{noun}{plural} {_listing(values, fmt)}"


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
    runs = runs_given(runs)
    ids = pd.DataFrame([run_identity(run) for run in runs])
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
        f"{len(runs)} runs: {_named('game', ids['game'])}; {_named('method', ids['method'])}; "
        f"{_named('replay ratio', ids['replay_ratio'], lambda r: f'{r:g}')}",
        f"ReDo: {_listing(v for v in ids['redo_variant'] if v != 'no ReDo') or 'none'}",
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


def _value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def settings_table(
    configs: Iterable[Any],
    keys: Iterable[str],
    by: str = "replay_ratio",
    sources: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The settings ``keys`` of ``configs`` (``DQNConfig`` objects or their ``to_dict()``): a
    row per setting, a column per value of ``by`` (``"replay ratio 0.25"``, ...) holding the
    setting's values among those configs (several, comma-separated, where they differ), and a
    ``source`` column from ``sources`` (where a value comes from), if given."""
    dicts = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in configs]
    keys = list(keys)
    label = by.replace("_", " ")
    table = pd.DataFrame(
        {
            f"{label} {_value(level)}": [
                _listing((d[key] for d in dicts if d[by] == level), _value) for key in keys
            ]
            for level in sorted({d[by] for d in dicts})
        },
        index=pd.Index(keys, name="setting"),
    )
    if sources is not None:
        table["source"] = [sources.get(key, "") for key in keys]
    return table


__all__ = [
    "describe_runs",
    "settings_table",
]
