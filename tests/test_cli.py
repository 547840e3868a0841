"""``python -m redo train``: options, errors (exit status 2, one line), and real tiny runs."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redo.agent.config import DQNConfig
from redo.cli import OPTIONS, main, run_folder
from redo.records.reader import load_run

ROOT = Path(__file__).resolve().parents[1]

#: A CartPole run of a second or so.
TINY = [
    "--steps", "300", "--learning-starts", "100", "--replay-ratio", "0.5", "--batch-size", "32",
    "--log-interval", "10", "--buffer-size", "1000",
]  # fmt: skip


def fail(capsys, *argv):
    """Run the CLI expecting a usage error; return its one-line message."""
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: python -m redo train")
    assert len(lines) == 2
    return lines[1]


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert {f.name for f in dataclasses.fields(DQNConfig)} == set(OPTIONS)
    for option, _ in OPTIONS.values():
        assert option in text
    for option in (
        "--no-redo",
        "--no-save-replay",
        "--resume",
        "--progress",
        "--no-progress",
        "--out",
    ):
        assert option in text
    assert "family default" in text and "6.25e-05" in text  # the table of family defaults


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tau", "-0.1"], "argument --tau: tau must be a finite number >= 0"),
        (["--tau", "nan"], "argument --tau: tau must be a finite number >= 0"),
        (["--redo-period", "0"], "argument --redo-period: redo_period must be an integer >= 1"),
        (
            ["--replay-ratio", "0"],
            "argument --replay-ratio: replay_ratio must be a finite number > 0",
        ),
        (
            ["--replay-ratio", "-1"],
            "argument --replay-ratio: replay_ratio must be a finite number > 0",
        ),
        (["--steps", "0"], "argument --steps: total_steps must be an integer >= 1"),
        (["--batch-size", "1.5"], "argument --batch-size: invalid int value: '1.5'"),
        (["--redo-init", "he"], "argument --redo-init: invalid choice: 'he'"),
    ],
)
def test_bad_values_exit_2_naming_the_option(capsys, argv, message):
    assert message in fail(capsys, "--env", "CartPole-v1", *argv)


def test_unknown_env_lists_the_supported_ids(capsys):
    line = fail(capsys, "--env", "MinAtar/Pong-v1")
    assert "argument --env: unsupported environment id 'MinAtar/Pong-v1'" in line
    assert "MinAtar/Breakout-v1" in line and "ALE/<Game>-v5" in line
    assert "argument --env" in fail(capsys, "--env", "ALE/NoSuchGame-v5")


def test_train_writes_a_run_and_refuses_to_overwrite_it(tmp_path, capsys):
    assert main(["train", "--env", "CartPole-v1", "--redo", "--out", str(tmp_path), *TINY]) == 0
    folder = tmp_path / "CartPole-v1" / "redo-rr0.5-s0"
    assert str(folder) in capsys.readouterr().out
    run = load_run(folder)
    assert run.record["status"] == "finished"
    assert run.config["redo"] is True and run.config["total_steps"] == 300
    assert run.metrics["grad_step"].iloc[-1] == 100
    line = fail(capsys, "--env", "CartPole-v1", "--redo", "--out", str(tmp_path), *TINY)
    assert "argument --out:" in line and "pass --resume" in line and "another --out" in line
    # resuming a finished run has nothing left to do and changes nothing
    assert (
        main(["train", "--env", "CartPole-v1", "--redo", "--out", str(tmp_path), *TINY, "--resume"])
        == 0
    )
    assert load_run(folder).metrics.equals(run.metrics)


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    line = fail(capsys, "--env", "CartPole-v1", "--out", str(tmp_path), "--resume")
    assert "argument --resume:" in line and "no checkpoint" in line


def test_run_folder_layout():
    config = DQNConfig.for_env("MinAtar/Breakout-v1", replay_ratio=0.25, seed=4)
    assert run_folder("runs", config) == Path("runs/MinAtar/Breakout-v1/dqn-rr0.25-s4")
    config = config.replace(redo=True, replay_ratio=2.0, tau=0.1)  # the paper's tau at rr 2
    assert run_folder("x", config).name == "redo-rr2-s4"
    # a tau other than the paper's is in the name, so runs that differ only in tau never share
    assert run_folder("x", config.replace(tau=0.025)).name == "redo-rr2-tau0.025-s4"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_id", "extra"),
    [
        ("MinAtar/Breakout-v1", []),
        ("ALE/Breakout-v5", ["--steps", "200", "--replay-ratio", "0.25", "--log-interval", "5"]),
    ],
)
def test_tiny_minatar_and_atari_runs(tmp_path, env_id, extra):
    argv = ["train", "--env", env_id, "--redo", "--redo-period", "10", "--out", str(tmp_path)]
    assert main([*argv, *TINY, *extra]) == 0
    (folder,) = {p.parent for p in tmp_path.rglob("run.json")}
    run = load_run(folder)
    assert run.record["status"] == "finished"
    assert len(run.metrics) > 0 and run.metrics["redo/calls"].iloc[-1] > 0
    assert folder.parent == tmp_path / env_id


@pytest.mark.slow
def test_python_dash_m_redo(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "redo",
            "train",
            "--env",
            "CartPole-v1",
            "--out",
            str(tmp_path),
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load_run(tmp_path / "CartPole-v1" / "dqn-rr0.5-s0").record["status"] == "finished"
