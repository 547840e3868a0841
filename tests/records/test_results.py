"""Run records: round trip, crash safety, resume, and validation of damaged folders."""

import json
import math
import os
import platform
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import torch

from redo.records.run import (
    CHECKPOINT_FILE,
    EPISODES_FILE,
    METRICS_FILE,
    RECORD_FILE,
    SCHEMA_VERSION,
    RunRecordError,
    RunWriter,
    concat_runs,
    find_run_folders,
    load_checkpoint,
    load_run,
    load_runs,
)

CONFIG = {"env_id": "MinAtar/Breakout-v1", "seed": 3, "redo": {"tau": 0.1, "period": 1000}}
ROWS = [
    {"env_step": 100, "grad_step": 25, "loss": 0.5, "dormant_fraction": 0.125},
    {"env_step": 200, "grad_step": 50, "loss": float("nan"), "dormant_fraction": 0.25},
    {"env_step": 300, "grad_step": 75, "loss": 1e-7, "dormant_fraction": np.float32(0.5)},
]
EPISODES = [(150, 2.5, 150), (250, -1.0, 100), (300, 0.0, 50)]


def write_run(folder, config=CONFIG, checkpoint_at=None):
    """A finished run with ROWS and EPISODES; a checkpoint at ``checkpoint_at`` if given."""
    with RunWriter(folder, config) as writer:
        for row in ROWS:
            writer.log_metrics(row)
            if row["env_step"] == checkpoint_at:
                writer.save_checkpoint({"env_step": checkpoint_at, "weights": torch.ones(2)})
        for episode in EPISODES:
            writer.log_episode(*episode)
    return folder


def test_round_trip(tmp_path):
    run = load_run(write_run(tmp_path / "run", checkpoint_at=200))
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

    prov = record["provenance"]
    assert prov["torch_version"] == torch.__version__
    assert prov["python_version"] == platform.python_version()
    assert prov["device"] == "cpu"
    assert prov["hardware"]["logical_cores"] == os.cpu_count()
    assert prov["hardware"]["gpu"] is None
    assert isinstance(prov["package_version"], str) and prov["package_version"]
    git = prov["git"]
    assert git is None or (
        re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    )

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
    episodes = pd.DataFrame(EPISODES, columns=["env_step", "episode_return", "episode_length"])
    pd.testing.assert_frame_equal(run.episodes, episodes)
    assert load_checkpoint(run.folder)["env_step"] == 200


def test_metric_keys_are_fixed_by_the_first_row(tmp_path):
    with RunWriter(tmp_path / "run", CONFIG) as writer:
        writer.log_metrics({"env_step": 1, "grad_step": 0, "loss": 1.0, "q": 2.0})
        writer.log_metrics({"q": 3.0, "loss": 4.0, "grad_step": 1, "env_step": 2})  # order free
        with pytest.raises(ValueError, match=r"missing \['q'\], extra \['td'\]"):
            writer.log_metrics({"env_step": 3, "grad_step": 2, "loss": 1.0, "td": 2.0})
    metrics = load_run(tmp_path / "run").metrics
    assert metrics["q"].tolist() == [2.0, 3.0]


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [
        ({"grad_step": 0, "loss": 1.0}, ValueError, "env_step"),
        ({"env_step": -1, "grad_step": 0}, ValueError, "env_step"),
        ({"env_step": 1, "grad_step": 0, "wall_time_s": 1.0}, ValueError, "wall_time_s"),
        ({"env_step": 1, "grad_step": 0, "loss": "high"}, TypeError, "loss"),
        ({"env_step": 1, "grad_step": 0, "loss": torch.ones(3)}, TypeError, r"\.item\(\)"),
    ],
)
def test_bad_rows_are_rejected(tmp_path, row, error, match):
    with RunWriter(tmp_path / "run", CONFIG) as writer, pytest.raises(error, match=match):
        writer.log_metrics(row)


def test_existing_run_is_never_overwritten(tmp_path):
    folder = write_run(tmp_path / "run")
    before = (folder / METRICS_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="resume=True"):
        RunWriter(folder, CONFIG)
    assert (folder / METRICS_FILE).read_bytes() == before


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_exception_marks_run_interrupted_and_keeps_rows(tmp_path, exception):
    with pytest.raises(exception), RunWriter(tmp_path / "run", CONFIG) as writer:
        writer.log_metrics(ROWS[0])
        writer.log_episode(*EPISODES[0])
        raise exception
    run = load_run(tmp_path / "run")
    assert run.record["status"] == "interrupted"
    assert run.metrics["env_step"].tolist() == [100]
    assert run.episodes["env_step"].tolist() == [150]


def test_rows_are_on_disk_before_close_and_closed_writer_refuses(tmp_path):
    writer = RunWriter(tmp_path / "run", CONFIG)
    writer.log_metrics(ROWS[0])
    assert load_run(tmp_path / "run").record["status"] == "running"
    assert load_run(tmp_path / "run").metrics["env_step"].tolist() == [100]
    writer.finish()
    with pytest.raises(RuntimeError, match="closed"):
        writer.log_episode(1, 0.0, 1)


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    folder = write_run(tmp_path / "run")
    with (folder / METRICS_FILE).open("a") as f:
        f.write("400,100,0.1,0.")  # killed mid-row
    with pytest.warns(UserWarning, match="truncated last line"):
        run = load_run(folder)
    assert run.metrics["env_step"].tolist() == [100, 200, 300]


def interrupted_run(folder):
    """A run checkpointed at 200 that crashed after logging up to 300 and half a row."""
    with pytest.raises(RuntimeError), RunWriter(folder, CONFIG) as writer:
        for row in ROWS:
            writer.log_metrics(row)
            if row["env_step"] == 200:
                writer.save_checkpoint({"env_step": np.int64(200), "rng": np.random.get_state()})
        for episode in EPISODES:
            writer.log_episode(*episode)
        raise RuntimeError("crash")
    with (folder / EPISODES_FILE).open("a") as f:
        f.write("310,1.")
    return folder


def test_resume_drops_rows_after_checkpoint_and_accumulates_time(tmp_path):
    folder = interrupted_run(tmp_path / "run")
    with pytest.warns(UserWarning, match="truncated"):
        first = load_run(folder)
    with (
        pytest.warns(UserWarning, match="truncated"),
        RunWriter(folder, CONFIG, resume=True) as writer,
    ):
        assert writer.checkpoint["env_step"] == 200
        assert isinstance(writer.checkpoint["rng"], tuple)
        resumed = load_run(folder)
        assert resumed.record["status"] == "running"
        assert resumed.metrics["env_step"].tolist() == [100, 200]
        assert resumed.episodes["env_step"].tolist() == [150]
        writer.log_metrics(ROWS[2])
        writer.log_episode(*EPISODES[1])
    run = load_run(folder)
    assert run.metrics["env_step"].tolist() == [100, 200, 300]
    assert run.episodes["env_step"].tolist() == [150, 250]
    assert list(run.metrics.columns) == list(first.metrics.columns)
    record = run.record
    assert record["status"] == "finished"
    assert record["started_at"] == first.record["started_at"]
    segments = record["segments"]
    assert [s["status"] for s in segments] == ["interrupted", "finished"]
    assert [s["env_step_start"] for s in segments] == [0, 200]
    assert math.isclose(record["wall_time_s"], sum(s["wall_time_s"] for s in segments))
    assert run.metrics["wall_time_s"].iloc[-1] >= segments[0]["wall_time_s"]


def test_resume_requires_the_same_config(tmp_path):
    folder = write_run(tmp_path / "run", checkpoint_at=200)
    changed = {**CONFIG, "seed": 4, "redo": {"tau": 0.025, "period": 1000}}
    with pytest.raises(ValueError, match=r"\['redo.tau', 'seed'\]"):
        RunWriter(folder, changed, resume=True)


def test_resume_needs_a_checkpoint_and_a_record(tmp_path):
    folder = write_run(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        RunWriter(folder, CONFIG, resume=True)
    with pytest.raises(FileNotFoundError, match="resume=False"):
        RunWriter(tmp_path / "empty", CONFIG, resume=True)


def test_checkpoint_must_hold_env_step(tmp_path):
    with RunWriter(tmp_path / "run", CONFIG) as writer, pytest.raises(ValueError, match="env_step"):
        writer.save_checkpoint({"weights": torch.ones(1)})


def test_atomic_writes_leave_no_temp_files(tmp_path):
    folder = write_run(tmp_path / "run", checkpoint_at=100)
    with RunWriter(folder, CONFIG, resume=True) as writer:
        old = (folder / CHECKPOINT_FILE).read_bytes()
        with pytest.raises(TypeError, match="pickle"):
            writer.save_checkpoint({"env_step": 300, "gen": (i for i in range(3))})
        assert (folder / CHECKPOINT_FILE).read_bytes() == old
    files = {RECORD_FILE, METRICS_FILE, EPISODES_FILE, CHECKPOINT_FILE}
    assert set(os.listdir(folder)) == files


def test_unserialisable_config_fails_before_any_file(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        RunWriter(tmp_path / "run", {"net": torch.nn.Linear(1, 1)})
    assert not (tmp_path / "run").exists()


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


def test_concat_runs_adds_config_columns(tmp_path):
    runs = [write_run(tmp_path / f"s{seed}", {**CONFIG, "seed": seed}) for seed in (1, 2)]
    tidy = concat_runs(load_runs(tmp_path), config_keys=["env_id", "seed", "redo.tau"])
    assert list(tidy.columns[:4]) == ["run", "env_id", "seed", "redo.tau"]
    assert len(tidy) == 2 * len(ROWS)
    assert tidy.groupby("seed")["run"].first().tolist() == [str(r) for r in runs]
    assert (tidy["redo.tau"] == 0.1).all()
    episodes = concat_runs(load_runs(tmp_path), "episodes", ["seed"])
    assert list(episodes.columns) == ["run", "seed", "env_step", "episode_return", "episode_length"]
    with pytest.raises(ValueError, match="no key 'gamma'"):
        concat_runs(load_runs(tmp_path), config_keys=["gamma"])
