"""Writing run folders: rows, crash safety, checkpoints, resume at a step, populations."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from redo.records.reader import load_checkpoint, load_run
from redo.records.record import (
    CHECKPOINT_FILE,
    EPISODES_FILE,
    METRICS_FILE,
    RECORD_FILE,
)
from redo.records.writer import RunWriter
from tests.records.runs import (
    CONFIG,
    EPISODES,
    POPULATION,
    ROWS,
    interrupted_run,
    write_run,
)


def without_wall_time(metrics):
    return metrics.drop(columns="wall_time_s").reset_index(drop=True)


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
        ({"env_step": 1, "grad_step": 0, "a\nb": 1.0}, ValueError, "line breaks"),
    ],
)
def test_bad_rows_are_rejected(tmp_path, row, error, match):
    with RunWriter(tmp_path / "run", CONFIG) as writer, pytest.raises(error, match=match):
        writer.log_metrics(row)


def test_metric_values_read_back_exactly(tmp_path):
    values = [0.1, 1 / 3, 1e-300, -2.5e17, float("inf")]
    with RunWriter(tmp_path / "run", CONFIG) as writer:
        for step, value in enumerate(values):
            writer.log_metrics({"env_step": step, "grad_step": step, "x": value, "n": step})
    metrics = load_run(tmp_path / "run").metrics
    assert metrics["x"].tolist() == values
    assert metrics["n"].tolist() == list(range(len(values)))


def test_existing_run_is_never_overwritten(tmp_path):
    folder = write_run(tmp_path / "run")
    before = (folder / METRICS_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="resume it from its checkpoint"):
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
    assert run.record["segments"][-1]["status"] == "interrupted"
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
    for call in (writer.sync, lambda: writer.mark(1), writer.finish):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_close_takes_finished_or_interrupted_only(tmp_path):
    writer = RunWriter(tmp_path / "run", CONFIG)
    with pytest.raises(ValueError, match="status"):
        writer.close("running")
    writer.close("interrupted")
    assert load_run(tmp_path / "run").record["status"] == "interrupted"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names open files via /proc")
def test_sync_and_mark(tmp_path, monkeypatch):
    """``sync`` fsyncs both tables; ``mark`` records the checkpointed step in run.json."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    writer = RunWriter(tmp_path / "run", CONFIG)
    writer.log_metrics(ROWS[0])
    monkeypatch.setattr(os, "fsync", fsync)
    writer.sync()
    assert sorted(synced) == [EPISODES_FILE, METRICS_FILE]
    writer.mark(500)  # the caller's own checkpoint (a population's) holds the state at 500
    record = load_run(tmp_path / "run").record
    assert record["env_steps"] == 500
    assert record["segments"][-1]["env_step_end"] == 500
    assert record["status"] == "running"
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()
    with pytest.raises(ValueError, match="env_step"):
        writer.mark(-1)
    writer.finish()


def test_save_checkpoint_writes_the_runs_own_checkpoint(tmp_path):
    with RunWriter(tmp_path / "run", CONFIG) as writer:
        writer.log_metrics(ROWS[0])
        writer.save_checkpoint({"env_step": np.int64(150), "weights": torch.zeros(3)})
        assert json.loads((tmp_path / "run" / RECORD_FILE).read_text())["env_steps"] == 150
    state = load_checkpoint(tmp_path / "run")
    assert state["env_step"] == 150 and torch.equal(state["weights"], torch.zeros(3))


# --- resume -----------------------------------------------------------------------------------


def test_resume_drops_rows_after_checkpoint_and_accumulates_time(tmp_path):
    folder = interrupted_run(tmp_path / "run")
    with pytest.warns(UserWarning, match="truncated"):
        first = load_run(folder)
    state = load_checkpoint(folder)
    assert state["env_step"] == 200
    assert isinstance(state["rng"], tuple)
    with (
        pytest.warns(UserWarning, match="truncated"),
        RunWriter(folder, CONFIG, resume_at=state["env_step"]) as writer,
    ):
        resumed = load_run(folder)  # no warning: the truncated line is gone for good
        assert resumed.record["status"] == "running"
        assert resumed.record["env_steps"] == 200
        assert resumed.metrics["env_step"].tolist() == [100, 200]
        assert resumed.episodes["env_step"].tolist() == [150]
        writer.log_metrics(ROWS[2])
        writer.log_episode(*EPISODES[1])
    run = load_run(folder)
    assert run.metrics["env_step"].tolist() == [100, 200, 300]
    assert run.episodes["env_step"].tolist() == [150, 250]
    assert list(run.metrics.columns) == list(first.metrics.columns)
    pd.testing.assert_frame_equal(without_wall_time(run.metrics), without_wall_time(first.metrics))
    record = run.record
    assert record["status"] == "finished"
    assert record["started_at"] == first.record["started_at"]
    segments = record["segments"]
    assert [s["status"] for s in segments] == ["interrupted", "finished"]
    assert [s["env_step_start"] for s in segments] == [0, 200]
    assert math.isclose(record["wall_time_s"], sum(s["wall_time_s"] for s in segments))
    assert run.metrics["wall_time_s"].iloc[-1] >= segments[0]["wall_time_s"]


@pytest.mark.parametrize(
    ("step", "metric_steps", "episode_steps"),
    [
        (0, [], []),
        (100, [100], []),
        (150, [100], [150]),  # a row logged at the resume step itself is kept
        (250, [100, 200], [150, 250]),
        (300, [100, 200, 300], [150, 250, 300]),
    ],
)
def test_resume_at_drops_the_rows_logged_after_the_step(
    tmp_path, step, metric_steps, episode_steps
):
    folder = write_run(tmp_path / "run")
    before = load_run(folder)
    with RunWriter(folder, CONFIG, resume_at=step):
        run = load_run(folder)
    assert run.metrics["env_step"].tolist() == metric_steps
    assert run.episodes["env_step"].tolist() == episode_steps
    # the kept rows are the stored ones, exactly, and the header survives an empty table
    assert list(run.metrics.columns) == list(before.metrics.columns)
    kept = before.metrics[before.metrics["env_step"] <= step]
    pd.testing.assert_frame_equal(run.metrics, kept.reset_index(drop=True), check_dtype=False)
    assert run.record["env_steps"] == step
    assert run.record["segments"][-1]["env_step_start"] == step


def test_resume_keeps_the_metric_columns_of_the_stored_run(tmp_path):
    folder = write_run(tmp_path / "run")
    with RunWriter(folder, CONFIG, resume_at=0) as writer:  # every row dropped, header kept
        with pytest.raises(ValueError, match=r"missing \['loss', 'dormant_fraction'\]"):
            writer.log_metrics({"env_step": 10, "grad_step": 1, "q": 1.0})
        writer.log_metrics(ROWS[0])
    assert load_run(folder).metrics["env_step"].tolist() == [100]


def test_resume_of_a_run_without_rows(tmp_path):
    RunWriter(tmp_path / "run", CONFIG).close("interrupted")
    with RunWriter(tmp_path / "run", CONFIG, resume_at=0) as writer:
        writer.log_metrics({"env_step": 5, "grad_step": 0, "q": 1.0})
    run = load_run(tmp_path / "run")
    assert run.metrics["q"].tolist() == [1.0]
    assert len(run.record["segments"]) == 2


def test_resume_requires_the_same_config(tmp_path):
    folder = write_run(tmp_path / "run", checkpoint_at=200)
    changed = {**CONFIG, "seed": 4, "redo": {"tau": 0.025, "period": 1000}}
    with pytest.raises(ValueError, match=r"\['redo.tau', 'seed'\]"):
        RunWriter(folder, changed, resume_at=200)


def test_resume_needs_a_record_and_a_valid_step(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no run\.json; start a new run"):
        RunWriter(tmp_path / "empty", CONFIG, resume_at=0)
    folder = write_run(tmp_path / "run")
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="resume_at"):
            RunWriter(folder, CONFIG, resume_at=bad)


# --- populations ------------------------------------------------------------------------------


def test_population_is_stored_in_the_record(tmp_path):
    write_run(tmp_path / "single")
    write_run(tmp_path / "member", population=POPULATION)
    assert json.loads((tmp_path / "single" / RECORD_FILE).read_text())["population"] is None
    stored = json.loads((tmp_path / "member" / RECORD_FILE).read_text())["population"]
    assert stored == POPULATION
    assert load_run(tmp_path / "member").population == POPULATION


def test_resume_in_the_same_population(tmp_path):
    folder = write_run(tmp_path / "run", population=POPULATION)
    with RunWriter(folder, CONFIG, resume_at=200, population=dict(POPULATION)) as writer:
        writer.log_metrics(ROWS[2])
    run = load_run(folder)
    assert run.population == POPULATION
    assert len(run.record["segments"]) == 2


@pytest.mark.parametrize(
    ("stored", "given"),
    [
        (POPULATION, None),
        (None, POPULATION),
        (POPULATION, POPULATION | {"index": 3}),
        (POPULATION, POPULATION | {"id": "pop-b"}),
        (POPULATION, POPULATION | {"size": 8}),
    ],
)
def test_resume_in_another_population_is_refused_and_changes_nothing(tmp_path, stored, given):
    folder = write_run(tmp_path / "run", population=stored)
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    with pytest.raises(ValueError, match="population"):
        RunWriter(folder, CONFIG, resume_at=100, population=given)
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before


# --- checkpoints and atomic writes ------------------------------------------------------------


def test_checkpoint_must_hold_env_step(tmp_path):
    with RunWriter(tmp_path / "run", CONFIG) as writer, pytest.raises(ValueError, match="env_step"):
        writer.save_checkpoint({"weights": torch.ones(1)})


def test_atomic_writes_leave_no_temp_files(tmp_path):
    folder = write_run(tmp_path / "run", checkpoint_at=100)
    with RunWriter(folder, CONFIG, resume_at=load_checkpoint(folder)["env_step"]) as writer:
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


def test_config_is_stored_as_it_reads_back(tmp_path):
    """Tuples become lists before the run starts, so a resume compares what was stored."""
    config = {"env_id": "CartPole-v1", "sizes": (64, 64)}
    RunWriter(tmp_path / "run", config).close("interrupted")
    assert load_run(tmp_path / "run").config == {"env_id": "CartPole-v1", "sizes": [64, 64]}
    RunWriter(tmp_path / "run", config, resume_at=0).finish()
