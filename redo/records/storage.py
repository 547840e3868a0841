"""Crash-safe writing: whole files replaced atomically, CSV rows appended one at a time.

A crash leaves the old or the new version of a replaced file, never half of one (a temp file
in the same folder, fsync, ``os.replace``, fsync of the folder). Rows are appended and flushed
one at a time, so an interrupted run keeps every row logged before the interruption.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
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
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: on POSIX the directory entry is the directory's own data."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def append_row(path: Path, header: Sequence[str], values: Sequence[object]) -> None:
    """Append one CSV row (with the header first if the file is empty) and flush it to the OS.

    Opening per row keeps no handle that an unclosed writer could leak; logging events are
    rare enough (per episode, per logging interval) that the cost does not matter.
    """
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if f.tell() == 0:
            writer.writerow(header)
        writer.writerow(values)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


__all__ = ["append_row", "atomic_write", "fsync_dir", "fsync_file", "json_bytes"]
