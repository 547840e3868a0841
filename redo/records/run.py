"""Run records: one training run = one folder that the book's figures can trust.

Every figure in the book is drawn from runs kept in ``book/data/``, so a run must be small,
diffable, readable with pandas alone, and carry its own provenance (full config, code version,
hardware, timing). Plain files in a folder give all of that; a database or event files do not.

A run folder holds:

``run.json``
    The record: ``schema_version``, ``status`` (``running`` | ``finished`` | ``interrupted``),
    ``config`` (the caller's full configuration), ``provenance`` (package version, git commit
    and dirty flag, torch/python versions, platform, device, hardware), ``started_at`` and
    ``ended_at`` (ISO 8601 UTC), ``wall_time_s`` (summed over segments), ``env_steps`` (the
    furthest env step reached) and ``segments``: one entry per process that worked on the run
    (the first one and each resume), with its own times, status, env step range and provenance.
    The top-level ``provenance`` is that of the latest segment.
``metrics.csv``
    One row per logging event: ``env_step, grad_step, wall_time_s``, then the metric columns of
    the first row, which are fixed for the rest of the run. ``wall_time_s`` is measured by the
    writer and counts the wall time of earlier segments too.
``episodes.csv``
    One row per finished episode: ``env_step, episode_return, episode_length``.
``checkpoint.pt``
    Optional: the latest ``torch.save`` of the caller's training state; it must hold ``env_step``.

Crash safety: ``run.json`` and ``checkpoint.pt`` are replaced atomically (a temp file in the same
folder, fsync, ``os.replace``), so a crash leaves the old or the new file, never half of one.
CSV rows are appended and flushed one at a time, so an interrupted run keeps every row logged
before the interruption; a last row cut short by a crash is dropped by the reader with a
warning. A process killed outright (SIGKILL, power loss) cannot mark itself: its record keeps
``status == "running"`` and the times and env steps of its last checkpoint.

Concurrent writers on one folder are not detected: one run folder belongs to one process.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
import os
import platform
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import pandas as pd
import torch

#: Bumped whenever the layout of a run folder changes in a way old readers would misread.
SCHEMA_VERSION = 1

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
)
STATUSES = ("running", "finished", "interrupted")

#: git runs once per run start; a hung git (network file system, lock) must not hang training.
GIT_TIMEOUT_S = 5.0

PathLike = str | os.PathLike[str]
TableName = Literal["metrics", "episodes"]


class RunRecordError(ValueError):
    """A folder that cannot be read as a run; the message names the folder and the problem."""


@dataclass(frozen=True, eq=False)
class Run:
    """One loaded run. ``eq=False``: DataFrames have no single truth value to compare by."""

    folder: Path
    record: dict[str, Any]
    config: dict[str, Any]
    metrics: pd.DataFrame
    episodes: pd.DataFrame


# --- provenance -----------------------------------------------------------------------------


def collect_provenance(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Everything needed to tell later where and with which code a run was made."""
    dev = _parse_device(device)
    return {
        "package_version": _package_version(),
        "git": _git_state(Path(__file__).resolve().parent),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "hardware": _hardware(dev),
    }


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch device string such as 'cpu' or 'cuda:0', got {device!r}"
        ) from err


def _package_version() -> str:
    """The installed distribution's version; a bare source tree falls back to ``__version__``."""
    try:
        return metadata.version("redo-book")
    except metadata.PackageNotFoundError:
        import redo

        return str(getattr(redo, "__version__", "unknown"))


def _git(args: Sequence[str], cwd: Path) -> str | None:
    """stdout of a git command, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_state(source_dir: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout the package runs from; None outside a checkout.

    The package's own ``__init__.py`` must be tracked, so that a copy installed into a virtual
    environment that happens to sit inside some repository does not borrow that repository's
    commit. Untracked files do not count as dirty: run folders written into the checkout
    (``book/data``) would otherwise mark every later run dirty.
    """
    if _git(["ls-files", "--error-unmatch", "--", "__init__.py"], source_dir) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], source_dir)
    changes = _git(["status", "--porcelain", "--untracked-files=no"], source_dir)
    if commit is None or changes is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(changes.strip())}


def _hardware(dev: torch.device) -> dict[str, Any]:
    """CPU, core and thread counts and GPU: what timings in the book depend on."""
    cuda = dev.type == "cuda" and torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(dev) if cuda else None,
    }


def _cpu_model() -> str:
    """The marketing name from /proc/cpuinfo (Linux); ``platform.processor()`` is often empty."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


# --- low-level file writing -----------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace ``path`` with what ``write`` produces, all or nothing.

    The temp file sits in the same folder because ``os.replace`` is atomic only within one file
    system; it is opened with ``open`` rather than ``mkstemp`` so that it gets the usual
    umask permissions, not 0600.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: on POSIX the directory entry is the directory's own data."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _append_row(path: Path, header: Sequence[str], values: Sequence[object]) -> None:
    """Append one CSV row (with the header first if the file is empty) and flush it to the OS.

    Opening per row keeps no handle that an unclosed writer could leak; logging events are
    rare enough (per episode, per logging interval) that the cost does not matter.
    """
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if f.tell() == 0:
            writer.writerow(header)
        writer.writerow(values)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


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


# --- value checks ---------------------------------------------------------------------------


def _check_count(name: str, value: object) -> int:
    """Steps and lengths are non-negative integers (numpy integers included, bools not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


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


# --- reading --------------------------------------------------------------------------------


def _read_record(folder: Path) -> dict[str, Any]:
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


def _complete_text(path: Path) -> str:
    """The file's text without a last line cut short by a crash.

    Every row is written whole and ends in a newline, so anything after the last newline can
    only be a row the process died while writing: it is dropped, loudly, never guessed at.
    """
    data = path.read_bytes()
    complete, newline, partial = data.rpartition(b"\n")
    if partial:
        warnings.warn(
            f"{path}: dropped a truncated last line {partial.decode(errors='replace')!r} "
            "(the run was probably killed while writing it)",
            stacklevel=2,
        )
    return (complete + newline).decode("utf-8")


def _parse_table(folder: Path, name: str, required: Sequence[str]) -> pd.DataFrame | None:
    """The validated numeric table, or None when no row (hence no header) was written yet."""
    path = folder / name
    if not path.is_file():
        raise RunRecordError(f"{folder}: missing {name}")
    try:
        text = _complete_text(path)
        table = pd.read_csv(io.StringIO(text)) if text else None
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
    table = _parse_table(folder, name, required)
    if table is None:
        return _numeric(folder, name, pd.DataFrame(columns=list(required)))
    return table


def load_run(folder: PathLike) -> Run:
    """Load and validate one run folder; raise :class:`RunRecordError` if it is damaged."""
    folder = Path(folder)
    record = _read_record(folder)
    return Run(
        folder=folder,
        record=record,
        config=record["config"],
        metrics=_read_table(folder, METRICS_FILE, METRIC_BASE_COLUMNS),
        episodes=_read_table(folder, EPISODES_FILE, EPISODE_COLUMNS),
    )


def find_run_folders(root: PathLike) -> list[Path]:
    """Every folder under ``root`` (itself included) holding any run file, sorted by path.

    A folder with a ``metrics.csv`` but no ``run.json`` is a damaged run, so it is listed too:
    loading it then fails loudly instead of the run vanishing from a figure unnoticed.
    """
    root = Path(root)
    return sorted({path.parent for name in RUN_FILES for path in root.rglob(name)})


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
    _check_count("checkpoint env_step", state["env_step"])
    return state


# --- tidy tables for plotting ---------------------------------------------------------------


def _config_value(run: Run, key: str) -> object:
    """Look up a dotted key (``"redo.tau"`` reaches nested dicts); non-scalars become JSON text
    so that they can serve as a seaborn ``hue``."""
    value: object = run.config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{run.folder}: config has no key {key!r}")
        value = value[part]
    return json.dumps(value) if isinstance(value, list | dict) else value


def _with_config_columns(run: Run, table: TableName, config_keys: Sequence[str]) -> pd.DataFrame:
    frame: pd.DataFrame = getattr(run, table)
    clashes = [key for key in ("run", *config_keys) if key in frame.columns]
    if clashes:
        raise ValueError(f"config key(s) {clashes} clash with {table} columns of {run.folder}")
    columns = {"run": str(run.folder)} | {key: _config_value(run, key) for key in config_keys}
    return frame.assign(**columns)[[*columns, *frame.columns]]


def concat_runs(
    runs: Iterable[Run], table: TableName = "metrics", config_keys: Sequence[str] = ()
) -> pd.DataFrame:
    """One long (tidy) table of many runs' metrics or episodes, for seaborn.

    Columns: ``run`` (the folder, to tell runs apart, e.g. as seaborn ``units``), then the
    chosen ``config_keys`` (``"env_id"``, ``"seed"``, dotted for nested ones), then the table's
    own columns. Runs whose metric columns differ get NaN where a column is absent.
    """
    if table not in ("metrics", "episodes"):
        raise ValueError(f"table must be 'metrics' or 'episodes', got {table!r}")
    frames = [_with_config_columns(run, table, config_keys) for run in runs]
    if not frames:
        raise ValueError("no runs to concatenate")
    return pd.concat(frames, ignore_index=True)


# --- writing --------------------------------------------------------------------------------


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
    table = _parse_table(folder, name, required)
    text = (
        ""
        if table is None
        else table[table["env_step"] <= env_step].to_csv(index=False, lineterminator="\n")
    )
    _atomic_write(folder / name, lambda f: f.write(text.encode("utf-8")))
    return None if table is None else list(table.columns)


class RunWriter:
    """Write one run folder incrementally and crash-safely.

    ``RunWriter(folder, config)`` starts a new run and refuses (``FileExistsError``) a folder
    that already holds run files, so no earlier result is ever overwritten. A
    ``FileExistsError`` rather than a ``ValueError`` because the arguments are fine; the
    file system is not in the state they need.

    ``RunWriter(folder, config, resume=True)`` continues a run from its ``checkpoint.pt``: the
    checkpoint is loaded into :attr:`checkpoint`, rows logged after its ``env_step`` are dropped
    (the resumed loop logs them again), the config must equal the stored one, and the original
    start time is kept while wall time adds up over segments.

    As a context manager it marks the run ``"interrupted"`` when an exception (including
    ``KeyboardInterrupt``) escapes, and ``"finished"`` on a normal exit unless :meth:`close`
    or :meth:`finish` was called already.
    """

    def __init__(
        self,
        folder: PathLike,
        config: Mapping[str, Any],
        device: str | torch.device = "cpu",
        resume: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.config = _as_json(config)
        provenance = collect_provenance(device)
        self._clock_start = time.monotonic()
        self._closed = False
        self._metric_columns: tuple[str, ...] | None = None
        #: The loaded training state when resuming, else None.
        self.checkpoint: dict[str, Any] | None = None
        if resume:
            self.checkpoint = self._resume(provenance)
        else:
            self._start(provenance)
        self._write_record()

    def _start(self, provenance: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = [name for name in RUN_FILES if (self.folder / name).exists()]
        if existing:
            raise FileExistsError(
                f"{self.folder} already holds a run ({', '.join(existing)}); pass resume=True to "
                "continue it from its checkpoint, or choose another folder"
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
        }
        for name in (METRICS_FILE, EPISODES_FILE):
            (self.folder / name).touch()  # headers come with the first row

    def _resume(self, provenance: dict[str, Any]) -> dict[str, Any]:
        if not (self.folder / RECORD_FILE).is_file():
            raise FileNotFoundError(
                f"cannot resume {self.folder}: it holds no {RECORD_FILE}; "
                "start a new run with resume=False"
            )
        record = _read_record(self.folder)
        _check_same_config(self.folder, record["config"], self.config)
        checkpoint = load_checkpoint(self.folder)
        step = int(checkpoint["env_step"])
        header = _truncate_table(self.folder, METRICS_FILE, METRIC_BASE_COLUMNS, step)
        self._metric_columns = None if header is None else tuple(header)
        _truncate_table(self.folder, EPISODES_FILE, EPISODE_COLUMNS, step)
        record.update(status="running", ended_at=None, provenance=provenance, env_steps=step)
        record["segments"].append(_new_segment(provenance, step))
        self._prior_wall_time = float(record["wall_time_s"])
        self._record = record
        return checkpoint

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
        data = _json_bytes(self._record)
        _atomic_write(self.folder / RECORD_FILE, lambda f: f.write(data))

    def _sync_tables(self) -> None:
        """fsync the CSVs, so that rows up to a durable checkpoint are durable too."""
        for name in (METRICS_FILE, EPISODES_FILE):
            _fsync_file(self.folder / name)

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
        env_step = _check_count("env_step", row.get("env_step"))
        grad_step = _check_count("grad_step", row.get("grad_step"))
        columns = self._columns_for(row)
        metrics = [_cell(k, row[k]) for k in columns[len(METRIC_BASE_COLUMNS) :]]
        values = [env_step, grad_step, repr(self._wall_time()), *metrics]
        _append_row(self.folder / METRICS_FILE, columns, values)
        self._reach(env_step)

    def log_episode(self, env_step: int, episode_return: float, episode_length: int) -> None:
        """Append one finished episode."""
        self._check_open()
        values = [
            _check_count("env_step", env_step),
            _cell("episode_return", episode_return),
            _check_count("episode_length", episode_length),
        ]
        _append_row(self.folder / EPISODES_FILE, EPISODE_COLUMNS, values)
        self._reach(values[0])

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Atomically replace ``checkpoint.pt`` with ``state``, which must hold ``env_step``:
        a resume drops the rows logged after it."""
        self._check_open()
        if "env_step" not in state:
            raise ValueError("a checkpoint must hold 'env_step', the env step it was taken at")
        env_step = _check_count("checkpoint env_step", state["env_step"])
        self._sync_tables()
        snapshot = dict(state)
        _atomic_write(self.folder / CHECKPOINT_FILE, lambda f: torch.save(snapshot, f))
        self._reach(env_step)
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
