"""The record ``run.json``: schema, required keys, validation, and counts."""

import json
import subprocess
import sys

import numpy as np
import pytest

from redo.records.record import (
    RECORD_FILE,
    RECORD_KEYS,
    SCHEMA_VERSION,
    RunRecordError,
    check_count,
    read_record,
)
from tests.records.runs import CONFIG, POPULATION, write_run


def test_schema_version_and_keys():
    assert SCHEMA_VERSION == 2
    assert "population" in RECORD_KEYS


def test_read_record_of_a_written_run(tmp_path):
    folder = write_run(tmp_path / "run", population=POPULATION)
    record = read_record(folder)
    assert record == json.loads((folder / RECORD_FILE).read_text())
    assert set(record) == set(RECORD_KEYS)
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["config"] == CONFIG
    assert record["population"] == POPULATION


def test_reading_a_record_needs_no_pandas_or_torch():
    """So a command line can check run folders cheaply."""
    code = "import sys, redo.records.record; print(sorted({'pandas', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def damage(folder, kind):
    """Damage the record of a good run folder in one way."""
    path = folder / RECORD_FILE
    record = json.loads(path.read_text())
    if kind == "no run.json":
        path.unlink()
    elif kind == "bad json":
        path.write_text("{not json")
    elif kind == "not an object":
        path.write_text("[1, 2]")
    elif kind == "schema 99":
        path.write_text(json.dumps(record | {"schema_version": 99}))
    elif kind == "no schema":
        del record["schema_version"]
        path.write_text(json.dumps(record))
    elif kind == "missing key":
        del record["config"]
        path.write_text(json.dumps(record))
    elif kind == "no population":
        del record["population"]
        path.write_text(json.dumps(record))
    elif kind == "status":
        path.write_text(json.dumps(record | {"status": "done"}))
    elif kind == "config":
        path.write_text(json.dumps(record | {"config": [1]}))


RECORD_DAMAGE = {
    "no run.json": "not a run folder",
    "bad json": "not valid JSON",
    "not an object": "must hold a JSON object, got list",
    "schema 99": "unknown schema_version 99",
    "no schema": "unknown schema_version None",
    "missing key": r"lacks required key\(s\) \['config'\]",
    "no population": r"lacks required key\(s\) \['population'\]",
    "status": "status 'done' is not one of",
    "config": "config must be a JSON object",
}


@pytest.mark.parametrize("kind", RECORD_DAMAGE)
def test_damaged_record_raises_run_record_error(tmp_path, kind):
    folder = write_run(tmp_path / "run")
    damage(folder, kind)
    with pytest.raises(RunRecordError, match=RECORD_DAMAGE[kind]) as info:
        read_record(folder)
    assert str(folder) in str(info.value)


def test_a_record_of_schema_1_is_refused_with_a_clear_message(tmp_path):
    """A record written before populations were recorded (schema 1, no ``population``)."""
    folder = write_run(tmp_path / "run")
    path = folder / RECORD_FILE
    record = json.loads(path.read_text())
    del record["population"]
    path.write_text(json.dumps(record | {"schema_version": 1}))
    with pytest.raises(RunRecordError) as info:
        read_record(folder)
    message = str(info.value)
    assert str(folder) in message
    assert "schema_version 1" in message and RECORD_FILE in message
    assert f"reads schema_version {SCHEMA_VERSION}" in message


def test_run_record_error_is_a_value_error():
    assert issubclass(RunRecordError, ValueError)


@pytest.mark.parametrize("value", [0, 7, np.int64(5), np.uint8(3)])
def test_check_count_accepts_non_negative_integers(value):
    assert check_count("steps", value) == int(value)
    assert type(check_count("steps", value)) is int


@pytest.mark.parametrize("value", [-1, 1.0, 2.5, True, "3", None, np.float64(1.0)])
def test_check_count_refuses_everything_else(value):
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        check_count("steps", value)
