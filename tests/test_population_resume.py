"""Checkpoints and resume of a population: an interrupted population, resumed, gives exactly
the runs of an uninterrupted one, and one that cannot resume says why and is left as it was."""

import json

import pandas as pd
import pytest
import torch

from redo.agent.config import DQNConfig
from redo.agent.dqn import TIMING_COLUMNS
from redo.population.lockstep import POPULATION_FILE, Lockstep, train_population
from redo.records.run import RunWriter, load_checkpoint, load_run


def small(env_id, seed, **overrides):
    """A population member of a few hundred steps that checkpoints every 200."""
    settings = {
        "seed": seed,
        "total_steps": 600,
        "learning_starts": 100,
        "replay_ratio": 1.0,
        "batch_size": 16,
        "buffer_size": 300,
        "target_update_period": 50,
        "epsilon_decay_steps": 200,
        # no divisor of the gradient steps at a checkpoint: it holds running sums to restore
        "log_interval": 7,
        "checkpoint_interval": 200,
        "redo_period": 25,
        "score_batch_size": 32,
    }
    return DQNConfig.for_env(env_id, **(settings | overrides))


def interrupt_at(monkeypatch, env_step):
    """Make the population raise KeyboardInterrupt when it is about to act at ``env_step``."""
    real = Lockstep.act

    def act(self, obs, step):
        if step == env_step:
            raise KeyboardInterrupt
        return real(self, obs, step)

    monkeypatch.setattr(Lockstep, "act", act)


def interrupted(configs, folder, monkeypatch, env_step, **kwargs):
    """Train ``configs`` in ``folder`` until a KeyboardInterrupt at ``env_step``."""
    with monkeypatch.context() as patch:
        interrupt_at(patch, env_step)
        with pytest.raises(KeyboardInterrupt):
            train_population(configs, folder, **kwargs)
    for agent in sorted(folder.glob("agent_*")):
        assert load_run(agent).record["status"] == "interrupted"
    assert not (folder / POPULATION_FILE).exists()


def without_timing(frame):
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


POPULATIONS = {
    # three agents, two replay ratios, ReDo in two; the interruption comes after the
    # checkpoint at 400, when the 300-slot buffers have wrapped around
    "CartPole-v1": (
        [
            {"seed": 0, "redo": True, "tau": 0.5},
            {"seed": 1, "replay_ratio": 0.5},
            {"seed": 2, "redo": True, "replay_ratio": 2.0, "lr": 3e-4},
        ],
        450,
    ),
    # the checkpoint at 200 holds buffers not yet full
    "MinAtar/Breakout-v1": (
        [{"seed": 0, "redo": True, "tau": 0.5}, {"seed": 5, "replay_ratio": 0.5}],
        250,
    ),
}


@pytest.mark.parametrize("env_id", list(POPULATIONS))
def test_resumed_population_equals_uninterrupted_one(env_id, tmp_path, monkeypatch):
    members, stop = POPULATIONS[env_id]
    configs = [small(env_id, **m) for m in members]
    checkpoint_step = stop // 200 * 200
    straight = train_population(configs, tmp_path / "straight")
    interrupted(configs, tmp_path / "resumed", monkeypatch, stop)
    resumed = train_population(configs, tmp_path / "resumed", resume=True)

    first = straight.agents[0].metrics
    assert first[first.env_step <= checkpoint_step]["redo/recycled_total"].iloc[-1] > 0
    for a, b in zip(straight.agents, resumed.agents, strict=True):
        pd.testing.assert_frame_equal(without_timing(a.metrics), without_timing(b.metrics))
        pd.testing.assert_frame_equal(a.episodes, b.episodes)
        assert b.record["status"] == "finished"
        assert [s["env_step_start"] for s in b.record["segments"]] == [0, checkpoint_step]
        ends = load_checkpoint(a.folder), load_checkpoint(b.folder)
        for key in ("params", "target_params", "exp_avg", "exp_avg_sq", "step"):
            for name, tensor in ends[0]["learner"][key].items():
                assert torch.equal(ends[1]["learner"][key][name], tensor), (key, name)
        # a reset happened before the checkpoint: its step counts were widened per entry
        weight = ends[0]["learner"]["params"]["fc1.weight"]
        assert ends[0]["learner"]["step"]["fc1.weight"].shape == weight.shape
    timing = json.loads((tmp_path / "resumed" / POPULATION_FILE).read_text())
    assert timing["env_steps_per_agent"] == 600 and timing["agents"] == len(configs)


def test_resume_is_exact_when_every_agent_updates_each_round(tmp_path, monkeypatch):
    """Adam's kept bias corrections (1 - beta ** step, advanced by lerp) are in the
    checkpoint: a resumed population must not recompute them from the counts, which differs
    in the last bits."""
    configs = [small("CartPole-v1", 0, redo=True, tau=0.5), small("CartPole-v1", 1)]
    straight = train_population(configs, tmp_path / "straight")
    interrupted(configs, tmp_path / "resumed", monkeypatch, 450)
    resumed = train_population(configs, tmp_path / "resumed", resume=True)
    for a, b in zip(straight.agents, resumed.agents, strict=True):
        ends = load_checkpoint(a.folder)["learner"], load_checkpoint(b.folder)["learner"]
        for name, tensor in ends[0]["params"].items():
            assert torch.equal(ends[1]["params"][name], tensor), name


def test_resume_without_replay_refills_before_learning(tmp_path, monkeypatch):
    configs = [
        small(
            "CartPole-v1",
            seed,
            replay_ratio=ratio,
            log_interval=10,
            save_replay_in_checkpoint=False,
        )
        for seed, ratio in ((0, 1.0), (1, 0.5))
    ]
    interrupted(configs, tmp_path / "pop", monkeypatch, 250)
    result = train_population(configs, tmp_path / "pop", resume=True)
    for agent, ratio in zip(result.agents, (1.0, 0.5), strict=True):
        metrics = agent.metrics
        before = metrics[metrics.env_step <= 200]["grad_step"].max()
        assert before == (200 - 100) * ratio
        after = metrics[metrics.env_step > 200]
        # no update while learning_starts (100) new transitions are collected, then the ratio
        assert after.env_step.min() > 300
        assert after.grad_step.max() == before + (600 - 300) * ratio


# --- populations that cannot resume ------------------------------------------------------------


def tiny_pair(**overrides):
    settings = {"total_steps": 300, "checkpoint_interval": 100} | overrides
    return [small("CartPole-v1", 0, **settings), small("CartPole-v1", 1, **settings)]


def run_files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_needs_a_checkpoint_of_every_agent(tmp_path, monkeypatch):
    configs = tiny_pair()
    interrupted(configs, tmp_path / "pop", monkeypatch, 50)
    before = run_files(tmp_path / "pop")
    with pytest.raises(FileNotFoundError, match=r"agent_00.*agent_01.*hold no checkpoint\.pt"):
        train_population(configs, tmp_path / "pop", resume=True)
    assert run_files(tmp_path / "pop") == before


def test_agents_checkpointed_at_different_steps_cannot_resume(tmp_path, monkeypatch):
    """An interruption between two agents' checkpoint writes leaves them a checkpoint apart."""
    configs = tiny_pair()
    real = RunWriter.save_checkpoint

    def save(self, state):
        if state["env_step"] == 200 and state["agent"] == 1:
            raise KeyboardInterrupt
        real(self, state)

    monkeypatch.setattr(RunWriter, "save_checkpoint", save)
    with pytest.raises(KeyboardInterrupt):
        train_population(configs, tmp_path / "pop")
    monkeypatch.undo()
    before = run_files(tmp_path / "pop")
    with pytest.raises(ValueError, match=r"different env steps.*agent_00': 200.*agent_01': 100"):
        train_population(configs, tmp_path / "pop", resume=True)
    assert run_files(tmp_path / "pop") == before


def test_resume_needs_the_configs_and_order_it_was_started_with(tmp_path, monkeypatch):
    configs = tiny_pair()
    folder = tmp_path / "pop"
    interrupted(configs, folder, monkeypatch, 150)
    before = run_files(folder)
    changed = [configs[0], configs[1].replace(lr=1e-3)]
    with pytest.raises(ValueError, match=r"agent_01.*\['lr'\]"):
        train_population(changed, folder, resume=True)
    swapped = [folder / "agent_01", folder / "agent_00"]
    with pytest.raises(ValueError, match=r"agent 1 of 2.*order"):
        train_population(configs[::-1], folder, run_folders=swapped, resume=True)
    assert run_files(folder) == before
    with pytest.raises(FileExistsError, match="resume=True"):
        train_population(configs, folder)  # without resume, an interrupted one is never touched
    train_population(configs, folder, resume=True)
    with pytest.raises(FileExistsError, match="finished population"):
        train_population(configs, folder, resume=True)
