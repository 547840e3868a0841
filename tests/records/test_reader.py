"""Reading run folders: tables, damaged folders, compressed copies, finding runs, checkpoints."""

import json
from datetime import datetime

import pandas as pd
import pytest
import torch

from redo.records.reader import (
    Run,
    find_run_folders,
    load_checkpoint,
    load_run,
    load_runs,
    parse_table,
    table_path,
)
from redo.records.record import (
    CHECKPOINT_FILE,
    EPISODE_COLUMNS,
    EPISODES_FILE,
    METRIC_BASE_COLUMNS,
    METRICS_FILE,
    RECORD_FILE,
    SCHEMA_VERSION,
    RunRecordError,
)
from redo.records.writer import RunWriter
from tests.records.runs import CONFIG, EPISODES, POPULATION, ROWS, compress, write_run


def test_round_trip(tmp_path):
    run = load_run(write_run(tmp_path / "run", checkpoint_at=200))
    assert isinstance(run, Run)
    record = run.record

    assert record["schema_version"] == SCHEMA_VERSION
    assert record["status"] == "finished"
    assert run.config == CONFIG
    assert record["env_steps"] == 300
    started, ended = (datetime.fromisoformat(record[k]) for k in ("started_at", "ended_at"))
    assert started.utcoffset().total_seconds() == 0
    assert started <= ended
    assert 0 < record["wall_time_s"] < 60
    assert len(record["segments"]) == 1

    expected = pd.DataFrame(ROWS).astype({"dormant_fraction": "float64"})
    metrics = run.metrics
    assert list(metrics.columns) == [
        "env_step",
        "grad_step",
        "wall_time_s",
        "loss",
        "dormant_fraction",
    ]
    pd.testing.assert_frame_equal(metrics.drop(columns="wall_time_s"), expected, check_dtype=False)
    assert metrics["wall_time_s"].is_monotonic_increasing
    episodes = pd.DataFrame(EPISODES, columns=list(EPISODE_COLUMNS))
    pd.testing.assert_frame_equal(run.episodes, episodes)
    assert load_checkpoint(run.folder)["env_step"] == 200


def test_a_run_without_rows_has_empty_tables_with_the_base_columns(tmp_path):
    RunWriter(tmp_path / "run", CONFIG).finish()
    run = load_run(tmp_path / "run")
    assert list(run.metrics.columns) == list(METRIC_BASE_COLUMNS) and run.metrics.empty
    assert list(run.episodes.columns) == list(EPISODE_COLUMNS) and run.episodes.empty
    assert parse_table(run.folder, METRICS_FILE, METRIC_BASE_COLUMNS) is None


def test_population_is_returned_by_the_run(tmp_path):
    assert load_run(write_run(tmp_path / "single")).population is None
    run = load_run(write_run(tmp_path / "member", population=POPULATION))
    assert run.population == POPULATION
    assert run.population == run.record["population"]


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    folder = write_run(tmp_path / "run")
    with (folder / METRICS_FILE).open("a") as f:
        f.write("400,100,0.1,0.")  # killed mid-row
    with pytest.warns(UserWarning, match="truncated last line"):
        run = load_run(folder)
    assert run.metrics["env_step"].tolist() == [100, 200, 300]


def corrupt(folder, kind):
    """Damage a good run folder in one way."""
    record_path, metrics_path = folder / RECORD_FILE, folder / METRICS_FILE
    record = json.loads(record_path.read_text())
    if kind == "no run.json":
        record_path.unlink()
    elif kind == "bad json":
        record_path.write_text("{not json")
    elif kind == "schema":
        record_path.write_text(json.dumps(record | {"schema_version": 99}))
    elif kind == "missing key":
        del record["config"]
        record_path.write_text(json.dumps(record))
    elif kind == "missing column":
        metrics_path.write_text(metrics_path.read_text().replace("grad_step", "grad_steps", 1))
    elif kind == "non-numeric":
        metrics_path.write_text(metrics_path.read_text().replace("0.125", "oops"))
    elif kind == "no episodes.csv":
        (folder / EPISODES_FILE).unlink()


DAMAGE = {
    "no run.json": "not a run folder",
    "bad json": "not valid JSON",
    "schema": "unknown schema_version 99",
    "missing key": r"lacks required key\(s\) \['config'\]",
    "missing column": r"lacks required column\(s\) \['grad_step'\]",
    "non-numeric": "column 'dormant_fraction' has a non-numeric value 'oops' on line 2",
    "no episodes.csv": "missing episodes.csv",
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_folder_raises_run_record_error(tmp_path, kind):
    folder = write_run(tmp_path / "run")
    corrupt(folder, kind)
    with pytest.raises(RunRecordError, match=DAMAGE[kind]) as info:
        load_run(folder)
    assert str(folder) in str(info.value)


def test_load_runs_finds_nested_runs_sorted_and_warns_on_damage(tmp_path):
    for name in ("b/seed1", "a/seed2", "a/seed1"):
        write_run(tmp_path / name)
    corrupt(tmp_path / "b/seed1", "no run.json")  # a folder with CSVs but no record
    assert find_run_folders(tmp_path) == [tmp_path / n for n in ("a/seed1", "a/seed2", "b/seed1")]
    with pytest.raises(RunRecordError, match="not a run folder"):
        load_runs(tmp_path)
    with pytest.warns(UserWarning, match="skipping damaged run"):
        runs = load_runs(tmp_path, on_error="warn")
    assert [r.folder for r in runs] == [tmp_path / "a/seed1", tmp_path / "a/seed2"]


def test_load_runs_refuses_a_bad_mode_and_a_missing_root(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_runs(tmp_path, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_runs(tmp_path / "absent")


# --- compressed tables ------------------------------------------------------------------------


def test_compressed_tables_read_as_the_plain_ones(tmp_path):
    plain = load_run(write_run(tmp_path / "plain", checkpoint_at=200))
    folder = compress(write_run(tmp_path / "packed", checkpoint_at=200))
    assert not (folder / METRICS_FILE).exists() and (folder / f"{METRICS_FILE}.gz").is_file()
    packed = load_run(folder)
    columns = [c for c in plain.metrics.columns if c != "wall_time_s"]
    pd.testing.assert_frame_equal(packed.metrics[columns], plain.metrics[columns])
    pd.testing.assert_frame_equal(packed.episodes, plain.episodes)
    assert load_runs(tmp_path / "packed")[0].metrics["env_step"].tolist() == [100, 200, 300]


def test_a_truncated_last_line_in_a_compressed_table_is_dropped_with_a_warning(tmp_path):
    folder = write_run(tmp_path / "run")
    with (folder / EPISODES_FILE).open("a") as f:
        f.write("310,1.")  # killed mid-row, then compressed as it was
    compress(folder)
    with pytest.warns(
        UserWarning, match=r"episodes\.csv\.gz: dropped a truncated last line '310,1\.'"
    ):
        run = load_run(folder)
    assert run.episodes["env_step"].tolist() == [150, 250, 300]


def test_a_damaged_compressed_table_raises_run_record_error(tmp_path):
    """A compressed table that is no gzip stream (e.g. a Git LFS pointer never fetched)."""
    folder = compress(write_run(tmp_path / "run"))
    (folder / f"{METRICS_FILE}.gz").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(RunRecordError, match=r"metrics\.csv\.gz") as info:
        load_run(folder)
    assert str(folder) in str(info.value)
    with pytest.warns(UserWarning, match="skipping damaged run"):
        assert load_runs(tmp_path, on_error="warn") == []


def test_a_cut_short_compressed_table_raises_run_record_error(tmp_path):
    folder = compress(write_run(tmp_path / "run"))
    path = folder / f"{EPISODES_FILE}.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(RunRecordError, match=r"episodes\.csv\.gz"):
        load_run(folder)


def test_table_path_prefers_the_plain_table(tmp_path):
    folder = write_run(tmp_path / "run")
    assert table_path(folder, METRICS_FILE) == folder / METRICS_FILE
    compress(folder, names=(METRICS_FILE,))
    assert table_path(folder, METRICS_FILE) == folder / f"{METRICS_FILE}.gz"
    assert table_path(folder, EPISODES_FILE) == folder / EPISODES_FILE
    (folder / METRICS_FILE).write_text("env_step,grad_step,wall_time_s\n")
    assert table_path(folder, METRICS_FILE) == folder / METRICS_FILE
    # with neither, the plain name, so that the error names the table the run should hold
    assert table_path(tmp_path, METRICS_FILE) == tmp_path / METRICS_FILE


def test_find_run_folders_finds_a_folder_of_compressed_tables_only(tmp_path):
    write_run(tmp_path / "a")
    folder = compress(write_run(tmp_path / "b"))
    (folder / RECORD_FILE).unlink()
    assert sorted(p.name for p in folder.iterdir()) == ["episodes.csv.gz", "metrics.csv.gz"]
    only_episodes = compress(write_run(tmp_path / "c"), names=(EPISODES_FILE,))
    for name in (RECORD_FILE, METRICS_FILE):
        (only_episodes / name).unlink()
    assert find_run_folders(tmp_path) == [tmp_path / "a", folder, only_episodes]
    with pytest.raises(RunRecordError, match="not a run folder"):
        load_runs(tmp_path)


# --- checkpoints ------------------------------------------------------------------------------


def test_load_checkpoint(tmp_path):
    folder = write_run(tmp_path / "run", checkpoint_at=100)
    state = load_checkpoint(folder)
    assert state["env_step"] == 100
    assert torch.equal(state["weights"], torch.ones(2))
    assert load_checkpoint(folder, weights_only=True)["env_step"] == 100


def test_load_checkpoint_of_a_run_without_one(tmp_path):
    folder = write_run(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="saved no checkpoint"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("state", "match"),
    [([1, 2], "must hold a dict"), ({"weights": 1}, "env_step"), ({"env_step": -5}, "env_step")],
)
def test_load_checkpoint_refuses_a_bad_state(tmp_path, state, match):
    folder = write_run(tmp_path / "run")
    torch.save(state, folder / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(folder)
