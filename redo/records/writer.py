"""Writing one run folder incrementally and crash-safely (the layout: :mod:`redo.records.reader`)."""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch

from redo.records.provenance import collect_provenance
from redo.records.reader import parse_table
from redo.records.record import (
    CHECKPOINT_FILE,
    EPISODE_COLUMNS,
    EPISODES_FILE,
    METRIC_BASE_COLUMNS,
    METRICS_FILE,
    RECORD_FILE,
    RUN_FILES,
    SCHEMA_VERSION,
    PathLike,
    check_count,
    read_record,
)
from redo.records.storage import append_row, atomic_write, fsync_file, json_bytes


def _as_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it will read back from run.json (tuples become lists), so comparisons on
    resume see what was stored, and a config that cannot be stored fails before any file does.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError) as err:
        raise TypeError(f"config must be JSON-serialisable: {err}") from err


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cell(name: str, value: object) -> int | str:
    """A metric value as CSV text that reads back exactly (``repr`` of a float round-trips)."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return repr(float(value))
    raise TypeError(
        f"metric {name!r} must be a real number, got {type(value).__name__}; "
        "convert tensors with .item()"
    )


def _check_metric_names(names: Sequence[object]) -> None:
    bad = [n for n in names if not isinstance(n, str) or not n or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"metric names must be non-empty strings without line breaks, got {bad!r}")


def _new_segment(provenance: dict[str, Any], env_step: int) -> dict[str, Any]:
    return {
        "started_at": _now(),
        "ended_at": None,
        "status": "running",
        "wall_time_s": 0.0,
        "env_step_start": env_step,
        "env_step_end": env_step,
        "provenance": provenance,
    }


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_same_config(folder: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """A resumed run must continue the same experiment, or its curves would mix two."""
    old, new = _flatten(stored), _flatten(given)
    keys = sorted(
        k for k in old.keys() | new.keys() if k not in old or k not in new or old[k] != new[k]
    )
    if keys:
        diffs = "; ".join(
            f"{k}: stored {old.get(k, '<absent>')!r}, given {new.get(k, '<absent>')!r}"
            for k in keys
        )
        raise ValueError(
            f"cannot resume {folder}: the config differs from the stored one at {keys} ({diffs})"
        )


def _truncate_table(
    folder: Path, name: str, required: Sequence[str], env_step: int
) -> list[str] | None:
    """Drop rows logged after ``env_step`` (the resumed run logs them again) and any truncated
    last line, atomically. Returns the header, or None when no row was written yet."""
    table = parse_table(folder, name, required)
    text = (
        ""
        if table is None
        else table[table["env_step"] <= env_step].to_csv(index=False, lineterminator="\n")
    )
    atomic_write(folder / name, lambda f: f.write(text.encode("utf-8")))
    return None if table is None else list(table.columns)


class RunWriter:
    """Write one run folder incrementally and crash-safely.

    ``RunWriter(folder, config)`` starts a new run and refuses (``FileExistsError``) a folder
    that already holds run files, so no earlier result is ever overwritten. A
    ``FileExistsError`` rather than a ``ValueError`` because the arguments are fine; the
    file system is not in the state they need.

    ``RunWriter(folder, config, resume_at=step)`` continues a run from the caller's checkpoint
    taken at env step ``step`` (the run's own ``checkpoint.pt``, or a population's): rows logged
    after it are dropped (the resumed loop logs them again), the config must equal the stored
    one, and the original start time is kept while wall time adds up over segments.

    ``population`` (``{"id", "size", "index"}``, or None for the single-agent loop) is stored
    in the record.

    As a context manager it marks the run ``"interrupted"`` when an exception (including
    ``KeyboardInterrupt``) escapes, and ``"finished"`` on a normal exit unless :meth:`close`
    or :meth:`finish` was called already.
    """

    def __init__(
        self,
        folder: PathLike,
        config: Mapping[str, Any],
        device: str | torch.device = "cpu",
        resume_at: int | None = None,
        population: Mapping[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.config = _as_json(config)
        provenance = collect_provenance(device)
        self._clock_start = time.monotonic()
        self._closed = False
        self._metric_columns: tuple[str, ...] | None = None
        self.population = None if population is None else dict(population)
        if resume_at is None:
            self._start(provenance)
        else:
            self._resume(provenance, check_count("resume_at", resume_at))
        self._write_record()

    def _start(self, provenance: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = [name for name in RUN_FILES if (self.folder / name).exists()]
        if existing:
            raise FileExistsError(
                f"{self.folder} already holds a run ({', '.join(existing)}); resume it from its "
                "checkpoint, or choose another folder"
            )
        self._prior_wall_time = 0.0
        self._record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "config": self.config,
            "provenance": provenance,
            "started_at": _now(),
            "ended_at": None,
            "wall_time_s": 0.0,
            "env_steps": 0,
            "segments": [_new_segment(provenance, 0)],
            "population": self.population,
        }
        for name in (METRICS_FILE, EPISODES_FILE):
            (self.folder / name).touch()  # headers come with the first row

    def _resume(self, provenance: dict[str, Any], step: int) -> None:
        if not (self.folder / RECORD_FILE).is_file():
            raise FileNotFoundError(
                f"cannot resume {self.folder}: it holds no {RECORD_FILE}; start a new run"
            )
        record = read_record(self.folder)
        _check_same_config(self.folder, record["config"], self.config)
        if record["population"] != self.population:
            raise ValueError(
                f"cannot resume {self.folder}: it was trained in population "
                f"{record['population']}, not {self.population}; resume it where it started"
            )
        header = _truncate_table(self.folder, METRICS_FILE, METRIC_BASE_COLUMNS, step)
        self._metric_columns = None if header is None else tuple(header)
        _truncate_table(self.folder, EPISODES_FILE, EPISODE_COLUMNS, step)
        record.update(status="running", ended_at=None, provenance=provenance, env_steps=step)
        record["segments"].append(_new_segment(provenance, step))
        self._prior_wall_time = float(record["wall_time_s"])
        self._record = record

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._closed:
            self.close("finished" if exc_type is None else "interrupted")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the run in {self.folder} is closed; resume it to write more")

    def _wall_time(self) -> float:
        return self._prior_wall_time + (time.monotonic() - self._clock_start)

    def _reach(self, env_step: int) -> None:
        self._record["env_steps"] = max(self._record["env_steps"], env_step)

    def _write_record(self) -> None:
        elapsed = time.monotonic() - self._clock_start
        self._record["segments"][-1].update(
            wall_time_s=elapsed, env_step_end=self._record["env_steps"]
        )
        self._record["wall_time_s"] = self._prior_wall_time + elapsed
        data = json_bytes(self._record)
        atomic_write(self.folder / RECORD_FILE, lambda f: f.write(data))

    def _sync_tables(self) -> None:
        """fsync the CSVs, so that rows up to a durable checkpoint are durable too."""
        for name in (METRICS_FILE, EPISODES_FILE):
            fsync_file(self.folder / name)

    def _columns_for(self, row: Mapping[str, object]) -> tuple[str, ...]:
        """The metrics.csv columns; the first row fixes them so every row fills every column."""
        names = tuple(key for key in row if key not in METRIC_BASE_COLUMNS)
        if self._metric_columns is None:
            _check_metric_names(names)
            self._metric_columns = (*METRIC_BASE_COLUMNS, *names)
        fixed = self._metric_columns[len(METRIC_BASE_COLUMNS) :]
        missing = [k for k in fixed if k not in row]
        extra = [k for k in names if k not in fixed]
        if missing or extra:
            raise ValueError(
                f"metric keys must stay those of the first row {list(fixed)}: "
                f"missing {missing}, extra {extra}"
            )
        return self._metric_columns

    def log_metrics(self, row: Mapping[str, float | int]) -> None:
        """Append one logging event. ``row`` holds ``env_step``, ``grad_step`` and the metrics;
        ``wall_time_s`` is measured here, so that every run measures it the same way."""
        self._check_open()
        if "wall_time_s" in row:
            raise ValueError("do not pass wall_time_s: the writer measures it")
        env_step = check_count("env_step", row.get("env_step"))
        grad_step = check_count("grad_step", row.get("grad_step"))
        columns = self._columns_for(row)
        metrics = [_cell(k, row[k]) for k in columns[len(METRIC_BASE_COLUMNS) :]]
        values = [env_step, grad_step, repr(self._wall_time()), *metrics]
        append_row(self.folder / METRICS_FILE, columns, values)
        self._reach(env_step)

    def log_episode(self, env_step: int, episode_return: float, episode_length: int) -> None:
        """Append one finished episode."""
        self._check_open()
        values = [
            check_count("env_step", env_step),
            _cell("episode_return", episode_return),
            check_count("episode_length", episode_length),
        ]
        append_row(self.folder / EPISODES_FILE, EPISODE_COLUMNS, values)
        self._reach(values[0])

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Atomically replace the run's ``checkpoint.pt`` with ``state``, which must hold
        ``env_step``: a resume drops the rows logged after it."""
        self._check_open()
        if "env_step" not in state:
            raise ValueError("a checkpoint must hold 'env_step', the env step it was taken at")
        env_step = check_count("checkpoint env_step", state["env_step"])
        self.sync()
        snapshot = dict(state)
        atomic_write(self.folder / CHECKPOINT_FILE, lambda f: torch.save(snapshot, f))
        self.mark(env_step)

    def sync(self) -> None:
        """Make every row logged so far durable (fsync the tables): call it before a
        checkpoint is written, so that the rows up to a durable checkpoint are durable too."""
        self._check_open()
        self._sync_tables()

    def mark(self, env_step: int) -> None:
        """Record in ``run.json`` that the run's state at ``env_step`` is checkpointed."""
        self._check_open()
        self._reach(check_count("checkpoint env_step", env_step))
        self._write_record()

    def close(self, status: Literal["finished", "interrupted"]) -> None:
        """Record the end of this segment with ``status``; the writer accepts no more rows."""
        if status not in ("finished", "interrupted"):
            raise ValueError(f"status must be 'finished' or 'interrupted', got {status!r}")
        self._check_open()
        self._sync_tables()
        now = _now()
        self._record.update(status=status, ended_at=now)
        self._record["segments"][-1].update(status=status, ended_at=now)
        self._write_record()
        self._closed = True

    def finish(self) -> None:
        """Mark the run finished."""
        self.close("finished")


__all__ = ["RunWriter"]
