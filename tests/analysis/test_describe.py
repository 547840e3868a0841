"""Captions: what a figure's runs are, how long they ran, where and with which code."""

import json

import pytest

from redo.agent.config import DQNConfig
from redo.analysis.describe import describe_runs, settings_table
from redo.records.reader import load_runs
from redo.records.record import RECORD_FILE
from redo.records.writer import RunWriter
from tests.synthetic_runs import write_synthetic_run


def sentences(text):
    return text.rstrip(".").split(". ")


def test_describe_runs(runs):
    text = describe_runs(runs)
    assert text.startswith("16 runs: games Breakout, Freeway; methods DQN, DQN+ReDo;")
    assert "replay ratios 0.25, 1" in text
    assert "2 seeds per setting (seeds 0, 1)" in text
    assert "1,000 environment steps per run." in text
    assert "Status: 16 finished" in text
    prov = runs[0].record["provenance"]
    assert prov["hardware"]["cpu"] in text
    assert runs[0].record["started_at"][:10] in text
    git = prov["git"]
    assert (git["commit"][:10] if git else "not run from a git checkout") in text


def test_describe_runs_names_the_redo_variants(runs, tmp_path):
    assert "ReDo: the paper's ReDo" in sentences(describe_runs(runs))
    for seed in (0, 1):
        write_synthetic_run(
            tmp_path / f"e{seed}",
            "MinAtar/Breakout-v1",
            True,
            1.0,
            seed,
            redo_step_mode="elementwise",
        )
    write_synthetic_run(
        tmp_path / "r",
        "MinAtar/Breakout-v1",
        True,
        1.0,
        0,
        redo_selection="random",
        redo_bias="redraw",
    )
    text = describe_runs([*runs, *load_runs(tmp_path)])
    assert (
        "ReDo: ReDo with selection=random, bias=redraw, ReDo with step_mode=elementwise, "
        "the paper's ReDo"
    ) in sentences(text)
    # a variant is a setting of its own: the one run of selection=random makes the span 1-2
    assert "1-2 seeds per setting (seeds 0, 1)" in text


def test_describe_runs_without_redo(tmp_path):
    for seed in (0, 1):
        write_synthetic_run(tmp_path / f"s{seed}", "MinAtar/Breakout-v1", False, 1.0, seed)
    text = describe_runs(load_runs(tmp_path))
    assert "ReDo: none" in sentences(text)
    # one value takes its noun in the singular
    assert text.startswith("2 runs: game Breakout; method DQN; replay ratio 1.")


def test_describe_runs_counts_seeds_of_one_setting_however_they_were_packed(tmp_path):
    packings = (None, {"id": "p", "size": 2, "index": 0}, {"id": "q", "size": 4, "index": 3})
    for seed, population in enumerate(packings):
        write_synthetic_run(
            tmp_path / f"s{seed}", "MinAtar/Freeway-v1", True, 0.25, seed % 2, population=population
        )
    text = describe_runs(load_runs(tmp_path))
    assert text.startswith("3 runs: ")
    assert "2 seeds per setting (seeds 0, 1)" in text


def test_describe_runs_flags_runs_stopped_short(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "a", config) as writer:
        writer.log_episode(400, 20.0, 400)
    writer = RunWriter(tmp_path / "b", config | {"seed": 1})
    writer.log_episode(1000, 20.0, 400)
    writer.close("interrupted")
    text = describe_runs(load_runs(tmp_path))
    assert "1 of the runs stopped short of it" in text
    assert "Status: 1 finished, 1 interrupted" in text
    assert "2 seeds per setting (seeds 0, 1)" in text


def test_describe_runs_reads_every_segment(tmp_path):
    """A run resumed on another machine with other code shows both."""
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "r", config) as writer:
        writer.log_episode(1000, 20.0, 400)
    RunWriter(tmp_path / "r", config, resume_at=1000).finish()
    path = tmp_path / "r" / RECORD_FILE
    record = json.loads(path.read_text())
    resumed = record["segments"][1]["provenance"]
    resumed["hardware"]["gpu"] = "NVIDIA H200"
    resumed["git"] = {"commit": "ab" * 20, "dirty": True}
    path.write_text(json.dumps(record))
    text = describe_runs(load_runs(tmp_path))
    assert "GPU NVIDIA H200" in text
    assert record["segments"][0]["provenance"]["hardware"]["cpu"] in text
    assert "commits " in text and "ababababab (with uncommitted changes)" in text


def test_describe_runs_of_no_runs_is_refused():
    with pytest.raises(ValueError, match="no runs given"):
        describe_runs([])


def test_settings_table_lists_each_setting_per_replay_ratio():
    configs = [
        DQNConfig.for_env("MinAtar/Breakout-v1", replay_ratio=ratio, seed=seed, redo=redo)
        for ratio in (0.25, 1.0)
        for seed in (0, 1)
        for redo in (False, True)
    ]
    table = settings_table(
        configs, ["tau", "seed", "buffer_size", "loss", "redo"], sources={"tau": "paper"}
    )
    assert list(table.columns) == ["replay ratio 0.25", "replay ratio 1", "source"]
    assert table.loc["tau"].tolist() == ["0.025", "0.1", "paper"]
    assert table.loc["seed", "replay ratio 1"] == "0, 1"  # values that differ are all listed
    assert table.loc["buffer_size", "replay ratio 1"] == "100,000"
    assert table.loc["loss", "replay ratio 0.25"] == "huber"
    assert table.loc["redo", "replay ratio 1"] == "False, True"
    assert table.loc["seed", "source"] == ""
    dicts = settings_table([c.to_dict() for c in configs], ["tau"])
    assert dicts.equals(table.loc[["tau"], ["replay ratio 0.25", "replay ratio 1"]])
