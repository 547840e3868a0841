"""Env snapshots: a restored env continues the same episode with the same random draws."""

import pickle

import numpy as np
import pytest

from redo.agent.env_state import restore_env, snapshot_env
from redo.agent.envs import make_env


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


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "CartPole-v1"])
def test_plain_env_snapshot_continues_the_same_episode(env_id):
    env = make_env(env_id, seed=0)
    env.reset()
    for _ in range(15):
        env.step(env.action_space.sample())
    restored = restore_env(snapshot_env(env), make_env(env_id, seed=1))
    for _ in range(200):
        action = env.action_space.sample()
        assert restored.action_space.sample() == action
        a, b = env.step(action), restored.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            assert a[4]["episode"]["r"] == b[4]["episode"]["r"]
            np.testing.assert_array_equal(env.reset()[0], restored.reset()[0])


def test_an_atari_snapshot_needs_an_atari_env():
    env = make_env("ALE/Breakout-v5", seed=0)
    env.reset()
    with pytest.raises(pickle.UnpicklingError, match="Atari"):
        restore_env(snapshot_env(env), make_env("CartPole-v1", seed=0))
