"""The DQN loop: config, replay, replay ratio, learning, ReDo, determinism and exact resume."""

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import redo.agent.dqn
from redo.agent.config import FAMILY_DEFAULTS, ConfigError, DQNConfig, OfTotal, paper_tau
from redo.agent.dqn import (
    TIMING_COLUMNS,
    linear_epsilon,
    restore_env,
    snapshot_env,
    train,
    train_or_load,
    updates_due,
)
from redo.agent.envs import make_env
from redo.core.networks import q_network_for
from redo.agent.replay import ReplayBuffer
from redo.records.run import RunWriter, load_checkpoint, load_run


def tiny(env_id="CartPole-v1", **overrides):
    """A run of a few hundred steps that still exercises every part of the loop."""
    settings = {
        "total_steps": 400,
        "learning_starts": 100,
        "replay_ratio": 0.5,
        "batch_size": 32,
        "buffer_size": 1_000,
        "target_update_period": 50,
        "epsilon_decay_steps": 200,
        "log_interval": 10,
        "checkpoint_interval": 1_000,
    }
    return DQNConfig.for_env(env_id, **(settings | overrides))


def without_timing(frame):
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


def assert_same_run(a, b):
    pd.testing.assert_frame_equal(without_timing(a.metrics), without_timing(b.metrics))
    pd.testing.assert_frame_equal(a.episodes, b.episodes)


# --- config ---------------------------------------------------------------------------------


def test_for_env_fills_family_defaults():
    atari = DQNConfig.for_env("ALE/Breakout-v5")
    assert (atari.lr, atari.adam_eps, atari.learning_starts) == (6.25e-5, 1.5e-4, 20_000)
    assert (atari.target_update_period, atari.epsilon_end, atari.replay_ratio) == (
        8_000,
        0.01,
        0.25,
    )
    minatar = DQNConfig.for_env("MinAtar/Breakout-v1", seed=3)
    assert (minatar.buffer_size, minatar.learning_starts, minatar.seed) == (100_000, 5_000, 3)
    classic = DQNConfig.for_env("CartPole-v1")
    assert (classic.buffer_size, classic.target_update_period, classic.batch_size) == (
        10_000,
        500,
        128,
    )


def test_tau_follows_the_paper_unless_given():
    assert DQNConfig.for_env("ALE/Pong-v5").tau == 0.025 == paper_tau(0.25)
    assert DQNConfig.for_env("ALE/Pong-v5", replay_ratio=1).tau == 0.1
    assert DQNConfig.for_env("ALE/Pong-v5", replay_ratio=1, tau=0.05).tau == 0.05


def test_budget_dependent_defaults_scale_with_total_steps():
    small = DQNConfig.for_env("CartPole-v1", total_steps=20_000)
    assert (small.learning_starts, small.epsilon_decay_steps) == (400, 10_000)
    big = DQNConfig.for_env("CartPole-v1", total_steps=2_000_000)
    assert big.learning_starts == 10_000  # cleanRL's value is the cap
    assert OfTotal(0.5).resolve(7) == 3


def test_every_family_defines_every_setting():
    settings = {f.name for f in dataclasses.fields(DQNConfig)} - {"env_id", "tau"}
    for defaults in FAMILY_DEFAULTS.values():
        assert set(defaults) == settings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tau", -0.1, "tau must be a finite number >= 0"),
        ("tau", math.nan, "tau must be a finite number >= 0"),
        ("redo_period", 0, "redo_period must be an integer >= 1"),
        ("replay_ratio", 0, "replay_ratio must be a finite number > 0"),
        ("replay_ratio", math.nan, "replay_ratio must be a finite number > 0"),
        ("total_steps", 0, "total_steps must be an integer >= 1"),
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("score_batch_size", -1, "score_batch_size must be an integer >= 1"),
        ("redo_init", "he", "redo_init must be one of"),
        ("loss", "l1", "loss must be one of"),
        ("gamma", 1.5, "gamma must be a finite number in [0, 1]"),
        ("redo", "yes", "redo must be True or False"),
        ("device", "gpu7", "device must be a torch device"),
    ],
)
def test_bad_values_name_the_setting(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        DQNConfig.for_env("CartPole-v1", **{field: value})
    assert info.value.field == field


def test_unknown_env_and_setting():
    with pytest.raises(ConfigError, match=r"supported ids are .*CartPole-v1") as info:
        DQNConfig.for_env("CartPole-v0")
    assert info.value.field == "env_id"
    with pytest.raises(ConfigError, match="unknown setting"):
        DQNConfig.for_env("CartPole-v1", learning_rate=1e-3)


def test_config_round_trips_through_json():
    config = DQNConfig.for_env("MinAtar/Breakout-v1", redo=True, replay_ratio=np.int64(1))
    data = json.loads(json.dumps(config.to_dict()))
    assert DQNConfig.from_dict(data) == config
    assert isinstance(config.replay_ratio, float)
    with pytest.raises(ConfigError, match="missing"):
        DQNConfig.from_dict({k: v for k, v in data.items() if k != "seed"})


# --- replay buffer --------------------------------------------------------------------------


def filled_buffer(capacity, steps, truncate_every=None):
    """Observation t is the vector [t, t]; transition t goes t -> t + 1 with action t."""
    buffer = ReplayBuffer(capacity, (2,), np.float32)
    for t in range(steps):
        truncated = truncate_every is not None and (t + 1) % truncate_every == 0
        buffer.add(np.full(2, t), t, float(t), np.full(2, t + 1), False, truncated)
    return buffer


@pytest.mark.parametrize(("capacity", "steps"), [(50, 20), (50, 50), (50, 137)])
def test_replay_returns_consistent_transitions(capacity, steps):
    buffer = filled_buffer(capacity, steps)
    batch = buffer.sample(500, np.random.default_rng(0))
    t = batch.observations[:, 0]
    np.testing.assert_array_equal(batch.next_observations[:, 0], t + 1)
    np.testing.assert_array_equal(batch.actions, t)
    np.testing.assert_array_equal(batch.rewards, t)
    assert t.min() >= max(0, steps - capacity + 1)  # the oldest, overwritten slot is skipped
    assert t.max() == steps - 1  # the newest transition is complete
    assert len(buffer) == min(steps, capacity)


def test_replay_never_samples_truncated_transitions():
    buffer = filled_buffer(40, 100, truncate_every=5)
    t = buffer.sample(1_000, np.random.default_rng(1)).observations[:, 0]
    assert not np.any((t + 1) % 5 == 0)


def test_replay_state_round_trip():
    buffer = filled_buffer(30, 47, truncate_every=7)
    copy = ReplayBuffer(30, (2,), np.float32)
    copy.load_state_dict(buffer.state_dict())
    a, b = (buf.sample(64, np.random.default_rng(5)) for buf in (buffer, copy))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="holds 30 transitions"):
        ReplayBuffer(31, (2,), np.float32).load_state_dict(buffer.state_dict())


# --- replay ratio and schedule --------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "every"), [(0.25, 4), (1, 1)])
def test_updates_due_spreads_fractional_ratios(ratio, every):
    done = 0
    for n in range(1, 401):
        due = updates_due(n, ratio, done)
        assert due == (1 if n % every == 0 else 0)
        done += due


def test_updates_due_makes_several_per_step_above_one():
    assert [updates_due(n, 3, 3 * (n - 1)) for n in range(1, 6)] == [3] * 5


def test_updates_due_is_exact_in_the_long_run():
    done = 0
    for n in range(1, 100_001):
        done += updates_due(n, 0.4, done)
        assert done == (2 * n) // 5
    assert updates_due(10**12, 0.29, 0) == 29 * 10**10  # no float drift (0.29 * 100 < 29)


def test_updates_due_rejects_impossible_counts():
    with pytest.raises(ValueError, match="only 2 are due"):
        updates_due(10, 0.25, 3)


def test_epsilon_is_flat_then_linear_then_flat():
    config = DQNConfig.for_env(
        "CartPole-v1", learning_starts=100, epsilon_decay_steps=200, epsilon_end=0.05
    )
    assert linear_epsilon(0, config) == linear_epsilon(100, config) == 1.0
    assert linear_epsilon(200, config) == pytest.approx(0.525)
    assert linear_epsilon(300, config) == linear_epsilon(10_000, config) == 0.05


# --- the loop -------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.25, 1, 3])
def test_loop_makes_exactly_the_due_gradient_steps(ratio):
    config = tiny(total_steps=250, learning_starts=50, replay_ratio=ratio, log_interval=1)
    metrics = train(config).metrics
    expected = math.floor(200 * ratio)
    assert metrics["grad_step"].tolist() == list(range(1, expected + 1))
    assert metrics["env_step"].iloc[-1] == 250
    assert metrics["env_step"].min() == 50 + math.ceil(1 / ratio)


#: Learns CartPole in ~3 s; checked on seeds 0-3 (last-10 returns 200-300; random play ~22).
LEARNS = {
    "total_steps": 10_000,
    "replay_ratio": 0.25,
    "batch_size": 64,
    "lr": 1e-3,
    "learning_starts": 1_000,
    "epsilon_decay_steps": 4_000,
    "target_update_period": 500,
    "log_interval": 500,
    "checkpoint_interval": 10_000,
}


def test_short_cartpole_run_learns():
    episodes = train(DQNConfig.for_env("CartPole-v1", **LEARNS)).episodes
    assert episodes["episode_return"].tail(10).mean() > 100


def test_the_learning_threshold_fails_without_learning():
    frozen = DQNConfig.for_env("CartPole-v1", **(LEARNS | {"lr": 1e-12}))
    assert train(frozen).episodes["episode_return"].tail(10).mean() < 100


def test_metrics_columns_and_episodes(tmp_path):
    result = train(tiny(redo=True, redo_period=20), tmp_path / "run")
    metrics = result.metrics
    for tau in ("0", "0.025", "0.1"):
        for column in (f"dormant/tau={tau}", f"dormant_mean_layer/tau={tau}"):
            assert metrics[column].between(0, 1).all()
        assert {f"dormant/tau={tau}/fc1", f"dormant/tau={tau}/fc2"} <= set(metrics.columns)
    assert (metrics["redo/calls"] == metrics["grad_step"] // 20).all()
    assert (metrics["redo/recycled"].cumsum() == metrics["redo/recycled_total"]).all()
    for column in (
        "loss",
        "q_mean",
        "epsilon",
        "sps",
        "time/update_s",
        "time/score_s",
        "time/redo_s",
    ):
        assert metrics[column].notna().all()
    # each episode counts in the row of the interval it ended in (the first one from step 0)
    logged = result.episodes["env_step"] <= metrics["env_step"].iloc[-1]
    assert metrics["episodes"].sum() == logged.sum()
    assert (result.episodes["episode_return"] == result.episodes["episode_length"]).all()


def test_run_record_loads_back_with_the_config(tmp_path):
    config = tiny()
    result = train(config, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert DQNConfig.from_dict(run.config) == config
    assert run.record["status"] == "finished"
    assert run.record["env_steps"] == config.total_steps
    pd.testing.assert_frame_equal(run.metrics, result.metrics)


# --- ReDo -----------------------------------------------------------------------------------


def test_redo_runs_every_period_on_the_online_network(monkeypatch):
    calls = []

    def spy(model, optimizer, x, tau, **kwargs):
        calls.append((x.shape[0], tau, kwargs["init"]))
        return real(model, optimizer, x, tau, **kwargs)

    real = redo.agent.dqn.recycle_dormant
    monkeypatch.setattr(redo.agent.dqn, "recycle_dormant", spy)
    config = tiny(redo=True, redo_period=15, tau=0.05, score_batch_size=48)
    metrics = train(config).metrics
    grad_steps = int(metrics["grad_step"].iloc[-1])
    assert len(calls) == grad_steps // 15 > 5
    assert set(calls) == {(48, 0.05, "default")}
    assert len(calls) == metrics["redo/calls"].iloc[-1]
    monkeypatch.setattr(redo.agent.dqn, "recycle_dormant", real)
    assert train(tiny(redo=False)).metrics["redo/calls"].eq(0).all()


def build_with_dead_neurons(monkeypatch):
    """Make train's Q-network start with 60 of fc1's 120 neurons dead (huge negative bias)."""
    real = redo.agent.dqn.q_network_for

    def build(shape, n_actions):
        network = real(shape, n_actions)
        with torch.no_grad():
            network.fc1.bias[:60] = -1e3
        return network

    monkeypatch.setattr(redo.agent.dqn, "q_network_for", build)


def test_redo_revives_dead_neurons(monkeypatch):
    build_with_dead_neurons(monkeypatch)
    settings = {"redo_period": 20, "log_interval": 10, "tau": 0.0}
    with_redo = train(tiny(redo=True, **settings)).metrics.set_index("grad_step")
    without = train(tiny(redo=False, **settings)).metrics.set_index("grad_step")
    dead = "dormant/tau=0/fc1"
    assert with_redo.loc[10, dead] >= 0.5 and without.loc[10, dead] >= 0.5
    assert with_redo.loc[20, "redo/recycled"] >= 60
    assert with_redo.loc[20, dead] < 0.1  # recycled neurons fire again
    assert (without[dead] >= 0.5).all()  # dead ReLUs get no gradient: they stay dead


def test_redo_never_touches_the_target_network(tmp_path):
    config = tiny(redo=True, redo_period=10, target_update_period=10**6)
    result = train(config, tmp_path / "run")
    assert result.metrics["redo/recycled_total"].iloc[-1] > 0
    env = make_env(config.env_id)
    torch.manual_seed(config.seed)
    initial = q_network_for(env.observation_space.shape, int(env.action_space.n)).state_dict()
    checkpoint = load_checkpoint(tmp_path / "run")
    for name, tensor in initial.items():
        torch.testing.assert_close(checkpoint["target_network"][name], tensor, rtol=0, atol=0)
    assert any(
        not torch.equal(checkpoint["q_network"][name], tensor) for name, tensor in initial.items()
    )


# --- determinism and resume -----------------------------------------------------------------


def test_same_seed_same_run_different_seed_different_run():
    config = tiny(redo=True, redo_period=20)
    first, second = train(config), train(config)
    assert_same_run(first, second)
    other = train(config.replace(seed=1))
    assert not first.episodes.equals(other.episodes)


def test_logging_does_not_change_training(tmp_path):
    often = train(tiny(redo=True, redo_period=20, log_interval=5), tmp_path / "a")
    rarely = train(tiny(redo=True, redo_period=20, log_interval=50), tmp_path / "b")
    pd.testing.assert_frame_equal(often.episodes, rarely.episodes)
    a, b = (load_checkpoint(tmp_path / name)["q_network"] for name in "ab")
    for name in a:
        assert torch.equal(a[name], b[name])


def interrupt_at_checkpoint(monkeypatch, number):
    """Make the ``number``-th checkpoint save raise KeyboardInterrupt instead of saving."""
    real = RunWriter.save_checkpoint
    seen = []

    def save(self, state):
        seen.append(state["env_step"])
        if len(seen) == number:
            raise KeyboardInterrupt
        real(self, state)

    monkeypatch.setattr(RunWriter, "save_checkpoint", save)
    return real


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MinAtar/Breakout-v1"])
def test_resume_continues_exactly(env_id, tmp_path, monkeypatch):
    config = tiny(env_id, total_steps=600, checkpoint_interval=200, redo=True, redo_period=20)
    straight = train(config, tmp_path / "straight")
    real = interrupt_at_checkpoint(monkeypatch, number=2)  # rows after the first one are dropped
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed")
    assert load_run(tmp_path / "resumed").record["status"] == "interrupted"
    monkeypatch.setattr(RunWriter, "save_checkpoint", real)
    resumed = train(config, tmp_path / "resumed", resume=True)
    assert_same_run(straight, resumed)
    assert [s["env_step_start"] for s in resumed.record["segments"]] == [0, 200]


def test_resume_without_replay_refills_before_learning(tmp_path, monkeypatch):
    config = tiny(total_steps=600, checkpoint_interval=200, save_replay_in_checkpoint=False)
    real = interrupt_at_checkpoint(monkeypatch, number=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run")
    monkeypatch.setattr(RunWriter, "save_checkpoint", real)
    metrics = train(config, tmp_path / "run", resume=True).metrics
    before = metrics[metrics["env_step"] <= 200]["grad_step"].max()
    assert before == 50  # (200 - 100) * 0.5
    after = metrics[metrics["env_step"] > 200]
    # no update while learning_starts (100) new transitions are collected, then the ratio again
    assert after["env_step"].min() > 300
    assert after["grad_step"].max() == 50 + (600 - 300) * 0.5


def test_atari_env_snapshot_continues_the_same_game():
    env = make_env("ALE/Breakout-v5", seed=0)
    env.reset()
    for _ in range(60):
        env.step(env.action_space.sample())
    restored = restore_env(snapshot_env(env), make_env("ALE/Breakout-v5", seed=1))
    for _ in range(300):
        action = env.action_space.sample()
        assert restored.action_space.sample() == action
        a, b = env.step(action), restored.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            assert a[4]["episode"]["r"] == b[4]["episode"]["r"]
            env.reset()
            restored.reset()


def test_train_or_load_trains_loads_and_resumes(tmp_path, monkeypatch):
    config = tiny(total_steps=600, checkpoint_interval=200)
    straight = train(config, tmp_path / "straight")
    real = interrupt_at_checkpoint(monkeypatch, number=2)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(config, tmp_path / "run")
    monkeypatch.setattr(RunWriter, "save_checkpoint", real)
    resumed = train_or_load(config, tmp_path / "run")  # interrupted: resumed
    assert_same_run(straight, resumed)
    before = (tmp_path / "run" / "metrics.csv").read_bytes()
    loaded = train_or_load(config, tmp_path / "run")  # finished: loaded, nothing rewritten
    assert_same_run(straight, loaded)
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == before


def test_train_or_load_refuses_a_run_with_other_settings(tmp_path):
    train(tiny(), tmp_path / "run")
    with pytest.raises(ValueError, match="seed"):
        train_or_load(tiny(seed=5), tmp_path / "run")
