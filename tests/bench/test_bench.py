"""``python -m redo bench`` and the reference loop: they run, report positive times, and write
what the JSON promises. Nothing here depends on how fast anything is."""

import json
import math

import pytest
import torch

from redo.agent.config import DQNConfig
from redo.agent.envs import make_env
from redo.bench.reference_loop import run_reference, seed_redo_check, train_schedule
from redo.bench.report import layer_frame
from redo.bench.roofline import median_time
from redo.bench.runner import median_round, micro_population, micro_reference, micro_single
from redo.bench.settings import Budget, Window
from redo.cli import main
from redo.core.networks import mlp

#: A CartPole benchmark of a few seconds: K in (1, 2), 40 measured env steps.
TINY_BENCH = [
    "bench", "--envs", "CartPole-v1", "--population", "1", "2", "--steps", "40",
    "--learning-starts", "50", "--repeats", "1", "--rounds", "1", "--device", "cpu",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_id", "replay_ratio", "overrides"),
    [
        ("CartPole-v1", 0.5, {"batch_size": 32, "redo_period": 10}),
        ("MinAtar/Breakout-v1", 1.0, {"redo_period": 20}),
    ],
)
def test_reference_loop_trains_and_reports_a_positive_speed(env_id, replay_ratio, overrides):
    steps = 200
    stats = run_reference(env_id, steps, replay_ratio, True, learning_starts=100, **overrides)
    assert stats["env_steps_per_s"] > 0
    assert stats["window_env_steps"] == steps
    assert stats["grad_steps"] == int(steps * replay_ratio)
    assert stats["redo_checks"] == stats["grad_steps"] // overrides["redo_period"]
    assert math.isfinite(stats["loss"])
    assert all(stats[f"time/{part}_s"] > 0 for part in ("update", "redo", "redo_sample"))


def test_reference_loop_without_redo_samples_no_score_batches():
    stats = run_reference("CartPole-v1", 100, 1.0, False, learning_starts=50, batch_size=32)
    assert stats["redo_checks"] == 0
    assert stats["time/redo_sample_s"] == 0


@pytest.mark.parametrize(
    ("ratio", "schedule"), [(0.25, (4, 1)), (0.5, (2, 1)), (1.0, (1, 1)), (2.0, (1, 2))]
)
def test_train_schedule_is_cleanrls_train_frequency(ratio, schedule):
    assert train_schedule(ratio) == schedule


@pytest.mark.parametrize("ratio", [0.4, 1.5, 0.3])
def test_train_schedule_rejects_ratios_cleanrl_cannot_express(ratio):
    with pytest.raises(ValueError, match="1/k or a whole number"):
        train_schedule(ratio)


def test_seed_check_zeroes_every_adam_step_even_without_dormant_neurons():
    net = mlp(4, 2, (8, 8))
    with torch.no_grad():  # positive inputs, weights and biases: every ReLU active
        for layer in (net.fc1, net.fc2):
            layer.weight.abs_()
            layer.bias.fill_(1.0)
    optimizer = torch.optim.Adam(net.parameters())
    for _ in range(3):
        optimizer.zero_grad()
        net(torch.randn(16, 4)).sum().backward()
        optimizer.step()
    recycled = seed_redo_check(net, optimizer, torch.rand(16, 4), tau=0.0)
    assert recycled == 0
    assert all(float(state["step"]) == 0 for state in optimizer.state.values())


@pytest.mark.parametrize("ratio", [0.25, 0.4, 1.0, 2.0])
def test_window_is_whole_log_intervals_at_the_replay_ratio(ratio):
    window = Window.for_budget(Budget(learning_starts=30, steps=100), ratio)
    assert window.interval * ratio == pytest.approx(window.log_interval)
    assert window.end - window.start == window.env_steps
    assert window.resets(window.default_redo_period()) >= 4


def test_micro_benchmarks_return_positive_times():
    config = DQNConfig.for_env("CartPole-v1", redo=True, tau=1.0, batch_size=32)
    env = make_env("CartPole-v1", seed=0)
    timings = [
        micro_single(config, env, repeats=2),
        micro_reference(config, env, repeats=2),
        micro_population(config, env, repeats=2, agents=2),
    ]
    for times in timings:
        assert set(times) == {"grad_step_s", "score_s", "redo_s"}
        assert all(seconds > 0 for seconds in times.values())
    assert median_time(lambda: sum(range(100)), torch.device("cpu"), repeats=3) > 0


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--envs", "--replay-ratio", "--population", "--steps", "--learning-starts",
        "--redo-period", "--repeats", "--rounds", "--threads", "--device", "--out", "--quick",
    ):  # fmt: skip
        assert option in text
    assert "minatar" in text and "atari" in text  # the per-family budgets


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replay-ratio", "0.4"], "argument --replay-ratio: the reference loop trains every"),
        (["--population", "0"], "argument --population: population must be an integer >= 1"),
        (["--population", "2", "2"], "argument --population: population must be distinct"),
        (["--envs", "MinAtar/Pong-v1"], "argument --envs: unsupported environment id"),
        (["--steps", "2"], "argument --steps: steps must be an integer >= 4"),
        (["--rounds", "0"], "argument --rounds: rounds must be an integer >= 1"),
        (["--threads", "1", "1"], "argument --threads: threads must be distinct counts"),
    ],
)
def test_bad_values_exit_2_naming_the_option(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["bench", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_bench_writes_one_row_per_method_env_redo_and_k(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main([*TINY_BENCH, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"command", "settings", "date", "wall_time_s", "provenance", "rows", "micro"} <= set(
        report
    )
    assert report["command"].startswith("python -m redo bench --envs CartPole-v1")
    assert {"cpu", "logical_cores", "torch_threads", "gpu"} <= set(report["provenance"]["hardware"])
    assert {"torch_version", "python_version", "git"} <= set(report["provenance"])

    keys = [(r["method"], r["env"], r["redo"], r["agents"]) for r in report["rows"]]
    expected = {
        (method, "CartPole-v1", redo, k)
        for redo in (False, True)
        for method, k in (("single", 1), ("reference", 1), ("population", 1), ("population", 2))
    }
    assert sorted(keys) == sorted(expected)
    for row in report["rows"]:
        assert row["env_steps_per_s"] > 0 and row["window_env_steps"] == 40
        assert (row["resets"] > 0) == row["redo"]
    assert [(r["method"], r["agents"]) for r in report["micro"]] == [
        ("single", 1), ("reference", 1), ("population", 1), ("population", 2),
    ]  # fmt: skip
    printed = capsys.readouterr().out
    assert "env steps/s" in printed and "redo/grad" in printed


@pytest.mark.slow
def test_rows_are_median_rounds_measured_at_each_thread_count(tmp_path):
    out = tmp_path / "bench.json"
    argv = [*TINY_BENCH, "--population", "2", "--rounds", "3", "--threads", "1", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "--rounds 3" in report["command"] and "--threads 1 2" in report["command"]
    keys = sorted((r["method"], r["redo"], r["threads"]) for r in report["rows"])
    methods = ("population", "reference", "single")
    assert keys == sorted((m, redo, t) for m in methods for redo in (False, True) for t in (1, 2))
    for row in report["rows"]:
        speeds = row["rounds_env_steps_per_s"]
        assert len(speeds) == 3 and row["env_steps_per_s"] == sorted(speeds)[1]
    assert {r["threads"] for r in report["micro"]} == {1}  # at the first count
    assert [(r["threads"], r["population"]) for r in report["roofline"]] == [(1, 2), (2, 2)]
    roofline = report["roofline"][0]
    layers = layer_frame(roofline)
    assert list(layers["layer"]) == ["fc1", "fc2", "q"]  # CartPole's MLP
    batch = roofline["batch_size"]  # one minibatch, or two (K = 2) at once
    assert set(layers["rows"]) <= {batch, 2 * batch} and (layers["GFLOP/s"] > 0).all()
    singles = {r["threads"]: r for r in report["rows"] if r["method"] == "single"}
    assert all(r["speedup"] == 1.0 for r in singles.values())  # each against its own count


def test_median_round_is_one_whole_round_the_slower_middle_of_an_even_count():
    rounds = [{"env_steps_per_s": v, "update_share": v / 10} for v in (30.0, 10.0, 20.0, 40.0)]
    row = median_round(rounds)
    assert row["env_steps_per_s"] == 20.0 and row["update_share"] == 2.0
    assert row["rounds_env_steps_per_s"] == [30.0, 10.0, 20.0, 40.0]
    assert median_round(rounds[:3])["env_steps_per_s"] == 20.0
