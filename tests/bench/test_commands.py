"""The whole-command benchmark: both commands run, rows and the speed-up are what they say."""

import pytest

from redo.bench.commands import RUNS, SINGLE, SWEEP, command_line, measure_commands, sweep_speedup


def test_the_commands_are_the_speed_issues():
    assert command_line(SINGLE).startswith("python -m redo train --env MinAtar/Breakout-v1")
    assert "--replay-ratio 1 --redo --steps 6000 --learning-starts 1000" in command_line(SINGLE)
    sweep = command_line(SWEEP)
    assert "--envs MinAtar/Breakout-v1 MinAtar/SpaceInvaders-v1 --methods dqn redo" in sweep
    assert "--seeds 0 1 2 --steps 6000 --set learning_starts=1000" in sweep
    assert RUNS == {"single": 1, "sweep": 12}


def test_speedup_is_the_median_of_the_rounds_ratios():
    rows = [
        {"round": 0, "command": "single", "env_steps_per_s": 100.0},
        {"round": 0, "command": "sweep", "env_steps_per_s": 300.0},
        {"round": 1, "command": "single", "env_steps_per_s": 50.0},
        {"round": 1, "command": "sweep", "env_steps_per_s": 250.0},
        {"round": 2, "command": "single", "env_steps_per_s": 100.0},
        {"round": 2, "command": "sweep", "env_steps_per_s": 400.0},
    ]
    assert sweep_speedup(rows) == 4.0
    with pytest.raises(ValueError, match="no round measured both"):
        sweep_speedup(rows[:1])


@pytest.mark.slow
def test_both_commands_run_and_report_their_speed():
    rows = measure_commands(1, log=lambda line: None, extra=("--steps", "200"))
    assert [r["command"] for r in rows] == ["single", "sweep"]
    for row in rows:
        assert row["env_steps"] == 200 * RUNS[row["command"]]
        assert row["wall_time_s"] > 0 and row["env_steps_per_s"] > 0
        assert row["command_line"].endswith("--steps 200")
