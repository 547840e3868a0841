"""The DQN loop: replay ratio, learning, the target network, ReDo, logging, determinism, resume."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import redo.agent.dqn
import redo.agent.streams
from redo.agent.config import DQNConfig
from redo.agent.dqn import logged_taus, train, train_or_load
from redo.agent.envs import make_env
from redo.agent.metrics import dormant_columns_from_scores
from redo.agent.replay import ReplayBuffer
from redo.agent.streams import seeded_q_network
from redo.core.dormant import dormant_scores
from redo.records.reader import load_checkpoint, load_run
from redo.records.writer import RunWriter
from tests.agent.runs import assert_same_run, tiny

# --- the replay ratio and learning ----------------------------------------------------------


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


@pytest.mark.slow
def test_short_cartpole_run_learns():
    episodes = train(DQNConfig.for_env("CartPole-v1", **LEARNS)).episodes
    assert episodes["episode_return"].tail(10).mean() > 100


@pytest.mark.slow
def test_the_learning_threshold_fails_without_learning():
    frozen = DQNConfig.for_env("CartPole-v1", **(LEARNS | {"lr": 1e-12}))
    assert train(frozen).episodes["episode_return"].tail(10).mean() < 100


# --- the target network ---------------------------------------------------------------------


def record_updates(monkeypatch):
    """Spy on td_update: per gradient step, the env step it belongs to and copies of the
    online and target parameters just before the step."""
    real_update, real_epsilon = redo.agent.dqn.td_update, redo.agent.dqn.linear_epsilon
    now = {"env_step": 0}
    steps = []

    def epsilon(env_step, config):  # the loop asks for epsilon once per env step, with step - 1
        now["env_step"] = env_step + 1
        return real_epsilon(env_step, config)

    def update(q_network, target_network, *args):
        steps.append(
            {
                "env_step": now["env_step"],
                "online": {k: v.clone() for k, v in q_network.state_dict().items()},
                "target": {k: v.clone() for k, v in target_network.state_dict().items()},
            }
        )
        return real_update(q_network, target_network, *args)

    monkeypatch.setattr(redo.agent.dqn, "linear_epsilon", epsilon)
    monkeypatch.setattr(redo.agent.dqn, "td_update", update)
    return steps


def same_weights(a, b):
    return all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize(
    ("period", "ratio", "redo"), [(40, 0.5, False), (30, 1, True), (25, 3, False)]
)
def test_target_network_is_synced_exactly_every_target_update_period_env_steps(
    period, ratio, redo, monkeypatch
):
    steps = record_updates(monkeypatch)
    config = tiny(
        total_steps=300, target_update_period=period, replay_ratio=ratio, redo=redo, redo_period=7
    )
    train(config)
    assert len(steps) == (300 - 100) * ratio  # after learning_starts = 100
    initial = seeded_q_network((4,), 2, config.seed, "cpu").state_dict()
    assert same_weights(steps[0]["target"], initial)
    # group the gradient steps by the last sync before them: a sync at env step e comes
    # after e's own gradient steps, so a step of env step e follows the sync at
    # (e - 1) // period * period
    by_sync = {}
    for step in steps:
        by_sync.setdefault((step["env_step"] - 1) // period, []).append(step)
    assert len(by_sync) >= 5
    for group in by_sync.values():
        # right after a sync the target is an exact copy of the online network ...
        assert same_weights(group[0]["target"], group[0]["online"])
        # ... and it stays fixed until the next one, while the online network learns
        assert all(same_weights(s["target"], group[0]["target"]) for s in group)
        assert not same_weights(group[-1]["target"], group[-1]["online"])


# --- the record -----------------------------------------------------------------------------


def test_metrics_columns_and_episodes(tmp_path):
    result = train(tiny(redo=True, redo_period=20), tmp_path / "run")
    metrics = result.metrics
    for tau in ("0", "0.025", "0.1"):
        for column in (f"dormant/tau={tau}", f"dormant_mean_layer/tau={tau}"):
            assert metrics[column].between(0, 1).all()
        assert {f"dormant/tau={tau}/fc1", f"dormant/tau={tau}/fc2"} <= set(metrics.columns)
    assert (metrics["redo/calls"] == metrics["grad_step"] // 20).all()
    assert (metrics["redo/recycled"].cumsum() == metrics["redo/recycled_total"]).all()
    # log_interval 10, redo_period 20: every other row was scored by the reset's own batch
    before = (metrics["grad_step"] % 20 == 0).astype(int)
    assert metrics["redo/scored_before_reset"].tolist() == before.tolist()
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


def test_logged_taus_are_the_papers_and_the_runs_own():
    assert logged_taus(tiny()) == (0.0, 0.025, 0.1)
    assert logged_taus(tiny(tau=0.3)) == (0.0, 0.025, 0.1, 0.3)
    assert "dormant/tau=0.3/fc1" in train(tiny(tau=0.3, total_steps=150)).metrics


def test_run_record_loads_back_with_the_config(tmp_path):
    config = tiny()
    result = train(config, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert DQNConfig.from_dict(run.config) == config
    assert run.record["status"] == "finished"
    assert run.record["env_steps"] == config.total_steps
    pd.testing.assert_frame_equal(run.metrics, result.metrics)


def test_checkpoint_holds_the_streams_and_no_global_torch_state(tmp_path):
    train(tiny(redo=True, redo_period=20), tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run")
    assert set(checkpoint["streams"]) == {
        "explore",
        "replay",
        "redo_batch",
        "log_batch",
        "redo_weights",
    }
    assert "rngs" not in checkpoint and "torch_rng" not in checkpoint
    assert not any(
        isinstance(value, torch.Tensor) and value.dtype == torch.uint8
        for value in checkpoint.values()
    )  # torch.get_rng_state() is a uint8 tensor


# --- ReDo -----------------------------------------------------------------------------------


def spy_on_recycle(monkeypatch, after=None):
    """Record every recycle_dormant call as (x, kwargs, report); ``after(model, x)`` runs
    right after the reset and its result is recorded too."""
    real = redo.agent.dqn.recycle_dormant
    calls = []

    def spy(model, optimizer, x, tau, **kwargs):
        report = real(model, optimizer, x, tau, **kwargs)
        extra = None if after is None else after(model, x)
        calls.append({"x": x, "tau": tau, "kwargs": kwargs, "report": report, "after": extra})
        return report

    monkeypatch.setattr(redo.agent.dqn, "recycle_dormant", spy)
    return calls


def test_redo_runs_every_period_on_the_online_network(monkeypatch):
    calls = spy_on_recycle(monkeypatch)
    config = tiny(redo=True, redo_period=15, tau=0.05, score_batch_size=48)
    metrics = train(config).metrics
    grad_steps = int(metrics["grad_step"].iloc[-1])
    assert len(calls) == grad_steps // 15 > 5
    options = {
        (c["x"].shape[0], c["tau"], *(c["kwargs"][k] for k in ("init", "bias", "step_mode")))
        for c in calls
    }
    assert options == {(48, 0.05, "default", "zero", "keep")}  # the paper's ReDo
    assert {c["kwargs"]["selection"] for c in calls} == {"dormant"}
    assert all(isinstance(c["kwargs"]["generator"], torch.Generator) for c in calls)
    assert len(calls) == metrics["redo/calls"].iloc[-1]
    monkeypatch.undo()
    assert train(tiny(redo=False)).metrics["redo/calls"].eq(0).all()


def test_redo_options_reach_the_reset(monkeypatch):
    calls = spy_on_recycle(monkeypatch)
    config = tiny(
        total_steps=200,
        redo=True,
        redo_period=10,
        redo_selection="random",
        redo_step_mode="zero_all",
        redo_bias="redraw",
        redo_init="xavier_uniform",
    )
    train(config)
    assert calls
    for call in calls:
        assert call["kwargs"] | {"generator": None} == {
            "init": "xavier_uniform",
            "bias": "redraw",
            "step_mode": "zero_all",
            "selection": "random",
            "generator": None,
        }


def build_with_dead_neurons(monkeypatch):
    """Make train's Q-network start with 60 of fc1's 120 neurons dead (huge negative bias)."""
    real = redo.agent.streams.q_network_for

    def build(shape, n_actions):
        network = real(shape, n_actions)
        with torch.no_grad():
            network.fc1.bias[:60] = -1e3
        return network

    monkeypatch.setattr(redo.agent.streams, "q_network_for", build)


def test_redo_revives_dead_neurons(monkeypatch):
    build_with_dead_neurons(monkeypatch)
    settings = {"redo_period": 20, "log_interval": 10, "tau": 0.0}
    with_redo = train(tiny(redo=True, **settings)).metrics.set_index("grad_step")
    without = train(tiny(redo=False, **settings)).metrics.set_index("grad_step")
    dead = "dormant/tau=0/fc1"
    assert with_redo.loc[10, dead] >= 0.5 and without.loc[10, dead] >= 0.5
    assert with_redo.loc[20, "redo/recycled"] >= 60
    assert with_redo.loc[20, dead] >= 0.5  # the row of the reset shows the scores before it
    assert with_redo.loc[30, dead] < 0.1  # recycled neurons fire again
    assert (without[dead] >= 0.5).all()  # dead ReLUs get no gradient: they stay dead


def test_redo_never_touches_the_target_network(tmp_path):
    config = tiny(redo=True, redo_period=10, target_update_period=10**6)
    result = train(config, tmp_path / "run")
    assert result.metrics["redo/recycled_total"].iloc[-1] > 0
    env = make_env(config.env_id)
    initial = seeded_q_network(
        env.observation_space.shape, int(env.action_space.n), config.seed, "cpu"
    ).state_dict()
    checkpoint = load_checkpoint(tmp_path / "run")
    for name, tensor in initial.items():
        torch.testing.assert_close(checkpoint["target_network"][name], tensor, rtol=0, atol=0)
    assert any(
        not torch.equal(checkpoint["q_network"][name], tensor) for name, tensor in initial.items()
    )


# --- what a row at a reset shows ------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MinAtar/Breakout-v1"])
def test_rows_at_a_reset_show_the_scores_that_decided_it(env_id, monkeypatch):
    calls = spy_on_recycle(monkeypatch)
    config = tiny(env_id, total_steps=250, redo=True, redo_period=10, log_interval=10)
    metrics = train(config).metrics
    assert len(metrics) == len(calls) == 7
    assert metrics["redo/scored_before_reset"].eq(1).all()
    taus = logged_taus(config)
    previous: set[int] = set()
    for (_, row), call in zip(metrics.iterrows(), calls, strict=True):
        expected = dormant_columns_from_scores(call["report"].scores, taus)
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, abs=1e-12), column
        assert row["redo/recycled"] == call["report"].total
        masks = call["report"].masks.values()
        chosen = set(torch.cat([m.flatten() for m in masks]).nonzero().flatten().tolist())
        assert row["redo/recycled_again"] == len(chosen & previous)
        previous = chosen


def test_a_row_at_a_reset_of_everything_shows_the_fractions_before_it(monkeypatch):
    build_with_dead_neurons(monkeypatch)

    def rescore(model, x):  # the fractions the row would show if it were scored after
        return dormant_columns_from_scores(dormant_scores(model, x), (0.0,))

    calls = spy_on_recycle(monkeypatch, after=rescore)
    config = tiny(total_steps=150, redo=True, redo_period=10, log_interval=10, tau=1e6)
    metrics = train(config).metrics
    first, call = metrics.iloc[0], calls[0]
    after = call["after"]
    assert call["report"].total == sum(call["report"].neurons.values())  # all recycled
    assert first["redo/recycled"] == 120 + 84
    assert first["redo/recycled_again"] == 0 and metrics.iloc[1]["redo/recycled_again"] == 120 + 84
    assert first["dormant/tau=1e+06"] == 1.0  # before the reset every neuron is tau-dormant
    assert first["dormant/tau=0/fc1"] >= 0.5  # the dead half of fc1, before the reset
    assert after["dormant/tau=0/fc1"] < 0.1  # after it, fc1's fresh neurons fire
    assert first["dormant/tau=0/fc1"] != after["dormant/tau=0/fc1"]
    assert first["redo/scored_before_reset"] == 1


def test_without_redo_no_row_is_scored_before_a_reset(monkeypatch):
    calls = spy_on_recycle(monkeypatch)
    metrics = train(tiny(total_steps=200, redo=False, redo_period=10)).metrics
    assert not calls
    assert len(metrics) == 5
    assert metrics["redo/scored_before_reset"].eq(0).all()


# --- random streams -------------------------------------------------------------------------


def record_minibatches(monkeypatch):
    """Spy on the training minibatches: the replay generator's state before each draw, and
    the batch drawn."""
    real = ReplayBuffer.sample
    draws = []

    def sample(self, batch_size, rng):
        state = rng.bit_generator.state["state"]["state"]
        batch = real(self, batch_size, rng)
        draws.append((state, batch))
        return batch

    monkeypatch.setattr(ReplayBuffer, "sample", sample)
    return draws


def test_redo_does_not_change_the_minibatches_before_its_first_reset(monkeypatch):
    draws = record_minibatches(monkeypatch)
    train(tiny(redo=False))
    without = list(draws)
    draws.clear()
    train(tiny(redo=True, redo_period=20, tau=0.1))
    with_redo = list(draws)
    assert len(with_redo) == len(without) == 150
    for (state_a, a), (state_b, b) in zip(with_redo[:20], without[:20], strict=True):
        assert state_a == state_b
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # the replay stream is not consumed by ReDo: the same slots are drawn the whole run
    # (the buffer never fills nor truncates here, so the slots depend on the stream alone)
    assert [state for state, _ in with_redo] == [state for state, _ in without]


def test_logging_does_not_change_training(tmp_path):
    often = train(tiny(redo=True, redo_period=20, log_interval=5), tmp_path / "a")
    rarely = train(tiny(redo=True, redo_period=20, log_interval=50), tmp_path / "b")
    pd.testing.assert_frame_equal(often.episodes, rarely.episodes)
    a, b = (load_checkpoint(tmp_path / name)["q_network"] for name in "ab")
    for name in a:
        assert torch.equal(a[name], b[name])


def test_training_leaves_the_global_torch_rng_alone():
    config = tiny(total_steps=200, redo=True, redo_period=10, redo_selection="random")
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = train(config)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(2)  # and nothing the run draws depends on it
    assert_same_run(first, train(config))


# --- determinism and resume -----------------------------------------------------------------


def test_same_seed_same_run_different_seed_different_run():
    config = tiny(redo=True, redo_period=20)
    first, second = train(config), train(config)
    assert_same_run(first, second)
    other = train(config.replace(seed=1))
    assert not first.episodes.equals(other.episodes)


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


@pytest.mark.slow
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
