"""A run folder's layout and its record, ``run.json``: names, schema, validation.

Reading a record needs no pandas, so that a command line can check run folders cheaply; the
tables are read by :mod:`redo.records.reader`.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

RECORD_FILE = "run.json"
METRICS_FILE = "metrics.csv"
EPISODES_FILE = "episodes.csv"
CHECKPOINT_FILE = "checkpoint.pt"
#: Any of these in a folder means a run lives there (perhaps a damaged one).
RUN_FILES = (RECORD_FILE, METRICS_FILE, EPISODES_FILE, CHECKPOINT_FILE)

METRIC_BASE_COLUMNS = ("env_step", "grad_step", "wall_time_s")
EPISODE_COLUMNS = ("env_step", "episode_return", "episode_length")
RECORD_KEYS = (
    "schema_version",
    "status",
    "config",
    "provenance",
    "started_at",
    "ended_at",
    "wall_time_s",
    "env_steps",
    "segments",
    "population",
)
STATUSES = ("running", "finished", "interrupted")


PathLike = str | os.PathLike[str]


class RunRecordError(ValueError):
    """A folder that cannot be read as a run; the message names the folder and the problem."""


def check_count(name: str, value: object) -> int:
    """Steps and lengths are non-negative integers (numpy integers included, bools not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD_FILE
    if not path.is_file():
        raise RunRecordError(f"{folder}: not a run folder (no {RECORD_FILE})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise RunRecordError(f"{folder}: {RECORD_FILE} is not valid JSON: {err}") from err
    _check_record(folder, record)
    return record


def _check_record(folder: Path, record: object) -> None:
    if not isinstance(record, dict):
        raise RunRecordError(
            f"{folder}: {RECORD_FILE} must hold a JSON object, got {type(record).__name__}"
        )
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunRecordError(
            f"{folder}: unknown schema_version {version!r} in {RECORD_FILE}; "
            f"this version of redo reads schema_version {SCHEMA_VERSION}"
        )
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise RunRecordError(f"{folder}: {RECORD_FILE} lacks required key(s) {missing}")
    if record["status"] not in STATUSES:
        raise RunRecordError(f"{folder}: status {record['status']!r} is not one of {STATUSES}")
    if not isinstance(record["config"], dict):
        raise RunRecordError(f"{folder}: config must be a JSON object")


__all__ = [
    "CHECKPOINT_FILE",
    "EPISODES_FILE",
    "EPISODE_COLUMNS",
    "METRICS_FILE",
    "METRIC_BASE_COLUMNS",
    "RECORD_FILE",
    "RECORD_KEYS",
    "RUN_FILES",
    "SCHEMA_VERSION",
    "STATUSES",
    "PathLike",
    "RunRecordError",
    "check_count",
    "read_record",
]
