"""Crash-safe writing: atomic replacement of whole files and row-by-row appends."""

import json
import os
import stat

import pytest

from redo.records.storage import append_row, atomic_write, fsync_dir, fsync_file, json_bytes


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "f.json"
    atomic_write(path, lambda f: f.write(b"old"))
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_is_all_or_nothing(tmp_path):
    path = tmp_path / "f.json"
    atomic_write(path, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.json"]  # no temp file left behind


def test_atomic_write_uses_the_usual_permissions(tmp_path):
    """Not mkstemp's 0600: other users may read the runs in book/data."""
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f", lambda f: f.write(b"x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_append_row_writes_the_header_once(tmp_path):
    path = tmp_path / "t.csv"
    path.touch()
    append_row(path, ("a", "b"), (1, "0.5"))
    append_row(path, ("a", "b"), (2, "x,y"))
    assert path.read_text() == 'a,b\n1,0.5\n2,"x,y"\n'


def test_fsync_helpers_accept_files_and_folders(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fsync_file(path)
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_file(tmp_path / "absent")


def test_json_bytes_round_trip():
    data = {"a": [1, 2.5, None], "b": {"c": "é"}}
    encoded = json_bytes(data)
    assert encoded.endswith(b"\n")
    assert json.loads(encoded.decode("utf-8")) == data
    with pytest.raises(TypeError):
        json_bytes({"x": object()})
