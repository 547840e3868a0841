"""Reading run records: one training run = one folder that the book's figures can trust.

Every figure in the book is drawn from runs kept in ``book/data/``, so a run must be small,
diffable, readable with pandas alone, and carry its own provenance (full config, code version,
hardware, timing). Plain files in a folder give all of that; a database or event files do not.

A run folder holds:

``run.json``
    The record: ``schema_version``, ``status`` (``running`` | ``finished`` | ``interrupted``),
    ``config`` (the caller's full configuration), ``provenance`` (package version, git commit
    and dirty flag, torch/python versions, platform, device, hardware), ``started_at`` and
    ``ended_at`` (ISO 8601 UTC), ``wall_time_s`` (summed over segments), ``env_steps`` (the
    furthest env step reached), ``population`` (the population the run was trained in: its
    ``id``, ``size`` and the run's ``index`` in it; null for the single-agent loop) and
    ``segments``: one entry per process that worked on the run (the first one and each
    resume), with its own times, status, env step range and provenance. The top-level
    ``provenance`` is that of the latest segment.
``metrics.csv``
    One row per logging event: ``env_step, grad_step, wall_time_s``, then the metric columns of
    the first row, which are fixed for the rest of the run. ``wall_time_s`` is measured by the
    writer and counts the wall time of earlier segments too.
``episodes.csv``
    One row per finished episode: ``env_step, episode_return, episode_length``.
``checkpoint.pt``
    Optional: the latest ``torch.save`` of the caller's training state; it must hold ``env_step``.
    (A population keeps one checkpoint for all its agents in its own folder instead.)

Copies of long runs (``book/data``) may hold ``metrics.csv.gz`` and ``episodes.csv.gz``
instead of the plain tables; the reader takes either.

Crash safety: ``run.json`` and ``checkpoint.pt`` are replaced atomically (a temp file in the same
folder, fsync, ``os.replace``), so a crash leaves the old or the new file, never half of one.
CSV rows are appended and flushed one at a time, so an interrupted run keeps every row logged
before the interruption; a last row cut short by a crash is dropped by the reader with a
warning. A process killed outright (SIGKILL, power loss) cannot mark itself: its record keeps
``status == "running"`` and the times and env steps of its last checkpoint.

Concurrent writers on one folder are not detected: one run folder belongs to one process.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from redo.records.record import (
    CHECKPOINT_FILE,
    EPISODE_COLUMNS,
    EPISODES_FILE,
    METRIC_BASE_COLUMNS,
    METRICS_FILE,
    RECORD_FILE,
    PathLike,
    RunRecordError,
    check_count,
    read_record,
)


@dataclass(frozen=True, eq=False)
class Run:
    """One loaded run. ``eq=False``: DataFrames have no single truth value to compare by."""

    folder: Path
    record: dict[str, Any]
    config: dict[str, Any]
    metrics: pd.DataFrame
    episodes: pd.DataFrame

    @property
    def population(self) -> dict[str, Any] | None:
        """The population the run was trained in (``id``, ``size``, ``index``), or None for a
        run of the single-agent loop. It says how a run was computed, never what it is: runs
        of one setting are alike however they were packed."""
        return self.record["population"]


def _complete_text(path: Path) -> str:
    """The file's text without a last line cut short by a crash (gzip-compressed if its name
    ends in ``.gz``, as the copies of long runs in ``book/data`` are).

    Every row is written whole and ends in a newline, so anything after the last newline can
    only be a row the process died while writing: it is dropped, loudly, never guessed at.
    """
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # not gzip, cut short, corrupt
            raise RunRecordError(
                f"{path.parent}: {path.name} is not a valid gzip file: {err}"
            ) from err
    complete, newline, partial = data.rpartition(b"\n")
    if partial:
        warnings.warn(
            f"{path}: dropped a truncated last line {partial.decode(errors='replace')!r} "
            "(the run was probably killed while writing it)",
            stacklevel=2,
        )
    return (complete + newline).decode("utf-8")


def parse_table(folder: Path, name: str, required: Sequence[str]) -> pd.DataFrame | None:
    """The validated numeric table, or None when no row (hence no header) was written yet."""
    path = table_path(folder, name)
    if not path.is_file():
        raise RunRecordError(f"{folder}: missing {name}")
    try:
        text = _complete_text(path)
        table = pd.read_csv(io.StringIO(text)) if text else None
    except RunRecordError:
        raise
    except ValueError as err:  # pandas' parser errors and UnicodeDecodeError
        raise RunRecordError(f"{folder}: {name} is not valid CSV: {err}") from err
    if table is None:
        return None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RunRecordError(
            f"{folder}: {name} lacks required column(s) {missing}; has {list(table.columns)}"
        )
    return _numeric(folder, name, table)


def _numeric(folder: Path, name: str, table: pd.DataFrame) -> pd.DataFrame:
    """Convert every column to numbers, naming the first cell that is not one."""
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise RunRecordError(
                f"{folder}: {name} column {column!r} has a non-numeric value "
                f"{table[column].iloc[row]!r} on line {row + 2}"
            )
        table[column] = values
    return table


def _read_table(folder: Path, name: str, required: Sequence[str]) -> pd.DataFrame:
    table = parse_table(folder, name, required)
    if table is None:
        return _numeric(folder, name, pd.DataFrame(columns=list(required)))
    return table


def load_run(folder: PathLike) -> Run:
    """Load and validate one run folder; raise :class:`RunRecordError` if it is damaged."""
    folder = Path(folder)
    record = read_record(folder)
    return Run(
        folder=folder,
        record=record,
        config=record["config"],
        metrics=_read_table(folder, METRICS_FILE, METRIC_BASE_COLUMNS),
        episodes=_read_table(folder, EPISODES_FILE, EPISODE_COLUMNS),
    )


def table_path(folder: Path, name: str) -> Path:
    """``folder/name``, or its compressed copy ``folder/name.gz`` when only that exists."""
    path = folder / name
    compressed = path.with_name(path.name + ".gz")
    return compressed if not path.exists() and compressed.exists() else path


def find_run_folders(root: PathLike) -> list[Path]:
    """Every folder under ``root`` (itself included) holding a record or a table, sorted.

    A folder with a ``metrics.csv`` but no ``run.json`` is a damaged run, so it is listed too:
    loading it then fails loudly instead of the run vanishing from a figure unnoticed. A
    checkpoint alone does not make a run: a population keeps its checkpoint in its own folder.
    """
    root = Path(root)
    tables = (METRICS_FILE, EPISODES_FILE)
    names = (RECORD_FILE, *tables, *(f"{name}.gz" for name in tables))
    return sorted({path.parent for name in names for path in root.rglob(name)})


def load_runs(root: PathLike, on_error: Literal["raise", "warn"] = "raise") -> list[Run]:
    """Load every run under ``root``, sorted by path.

    A damaged run raises :class:`RunRecordError`; with ``on_error="warn"`` it is skipped with a
    warning instead, so one broken folder does not block a figure but is never skipped silently.
    """
    if on_error not in ("raise", "warn"):
        raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    runs = []
    for folder in find_run_folders(root):
        try:
            runs.append(load_run(folder))
        except RunRecordError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping damaged run: {err}", stacklevel=2)
    return runs


def load_checkpoint(folder: PathLike, *, weights_only: bool = False) -> dict[str, Any]:
    """The run's checkpoint, with tensors on the CPU.

    Tensors are mapped to the CPU so that a run checkpointed on a GPU resumes anywhere;
    ``load_state_dict`` moves them to the model's device. ``weights_only=False`` by default
    because training states hold numpy RNG states and replay buffers; it unpickles arbitrary
    objects, so pass ``weights_only=True`` for folders you did not write yourself.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run saved no checkpoint, so it cannot be resumed; "
            "start a new run in another folder"
        )
    state = torch.load(path, map_location="cpu", weights_only=weights_only)
    if not isinstance(state, dict) or "env_step" not in state:
        raise RunRecordError(f"{folder}: {CHECKPOINT_FILE} must hold a dict with an 'env_step'")
    check_count("checkpoint env_step", state["env_step"])
    return state


__all__ = [
    "Run",
    "find_run_folders",
    "load_checkpoint",
    "load_run",
    "load_runs",
    "parse_table",
    "table_path",
]
