"""The environment factories: layouts, dtypes, spaces, seeding, raw Atari scores, errors."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from redo.agent.env_ids import (
    ATARI_ID_PATTERN,
    CLASSIC_IDS,
    MINATAR_IDS,
    SUPPORTED_ENV_IDS,
    env_family,
)
from redo.agent.envs import make_env, make_minatar

#: Channels and minimal action-set sizes of the MinAtar games (MinAtar 1.0.15).
MINATAR_LAYOUT = {
    "MinAtar/Asterix-v1": (4, 5),
    "MinAtar/Breakout-v1": (4, 3),
    "MinAtar/Freeway-v1": (7, 3),
    "MinAtar/Seaquest-v1": (10, 6),
    "MinAtar/SpaceInvaders-v1": (6, 4),
}
ATARI_IDS = ("ALE/Breakout-v5", "ALE/DemonAttack-v5")


def rollout(env: gym.Env, actions: list[int]) -> list[np.ndarray]:
    """Observations of a fixed action sequence, resetting (unseeded) at episode ends."""
    obs, _ = env.reset()
    seen = [obs]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        seen.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
            seen.append(obs)
    return seen


def check_step_contract(env: gym.Env, shape: tuple[int, ...], dtype: type, steps: int) -> None:
    obs, _ = env.reset()
    for _ in range(steps + 1):
        assert isinstance(obs, np.ndarray)
        assert obs.shape == shape
        assert obs.dtype == dtype
        assert obs in env.observation_space
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.mark.parametrize("env_id", MINATAR_IDS)
def test_minatar_is_channels_first_uint8(env_id: str) -> None:
    channels, n_actions = MINATAR_LAYOUT[env_id]
    env = make_env(env_id, seed=0)
    assert env.observation_space == gym.spaces.Box(0, 1, (channels, 10, 10), np.uint8)
    assert env.action_space.n == n_actions
    check_step_contract(env, (channels, 10, 10), np.uint8, steps=50)


def test_minatar_planes_match_the_raw_game() -> None:
    env = make_env("MinAtar/Seaquest-v1", seed=0)
    obs, _ = env.reset()
    raw = env.unwrapped.game.state()  # (10, 10, C) bool
    np.testing.assert_array_equal(obs, np.moveaxis(raw, -1, 0).astype(np.uint8))


@pytest.mark.parametrize("env_id", ATARI_IDS)
def test_atari_is_a_stack_of_four_84x84_frames(env_id: str) -> None:
    env = make_env(env_id, seed=0)
    assert env.observation_space.shape == (4, 84, 84)
    assert env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    # Zero padding before the first frame, newest frame last (as Dopamine's stack).
    assert not obs[:3].any() and obs[3].any()
    check_step_contract(env, (4, 84, 84), np.uint8, steps=5)


def test_atari_uses_dopamine_protocol() -> None:
    env = make_env("ALE/Breakout-v5", seed=0)
    ale_env = env.unwrapped
    assert ale_env.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert ale_env._frameskip == 1  # our MaxAndSkipEnv does the skip of 4, not the v5 default
    wrappers = str(env)
    assert "MaxAndSkipEnv" in wrappers and "FireResetEnv" not in wrappers
    assert "NoopResetEnv" not in wrappers and "EpisodicLifeEnv" not in wrappers


def test_atari_episode_return_is_the_raw_score() -> None:
    # One random DemonAttack episode (about 650 agent steps, under a second): demons are
    # worth more than 1 point, so the clipped sum is smaller than the game score.
    env = make_env("ALE/DemonAttack-v5", seed=0)
    env.reset()
    clipped, steps, info = 0.0, 0, {}
    while "episode" not in info:
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward in (-1.0, 0.0, 1.0)
        clipped += reward
        steps += 1
    assert info["episode"]["l"] == steps  # agent steps, not emulator frames
    assert info["episode"]["r"] > clipped > 0
    assert info["episode"]["r"] % 5 == 0  # DemonAttack scores come in multiples of 5


@pytest.mark.parametrize("env_id", CLASSIC_IDS)
def test_classic_control_is_float32(env_id: str) -> None:
    env = make_env(env_id, seed=0)
    dim = env.observation_space.shape[0]
    check_step_contract(env, (dim,), np.float32, steps=20)


def test_episode_statistics_sum_rewards() -> None:
    env = make_env("CartPole-v1", seed=0)
    env.reset()
    total, steps, info = 0.0, 0, {}
    while "episode" not in info:
        _, reward, _, _, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
    assert info["episode"]["r"] == pytest.approx(total)
    assert info["episode"]["l"] == steps


def test_options_reach_gym_make() -> None:
    env = make_env("MinAtar/Freeway-v1", seed=0, max_episode_steps=7)
    env.reset()
    for _ in range(7):
        *_, truncated, info = env.step(0)
    assert truncated and info["episode"]["l"] == 7


@pytest.mark.parametrize(
    "env_id", ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "CartPole-v1", "ALE/Breakout-v5"]
)
def test_same_seed_same_observations(env_id: str) -> None:
    steps = 30 if env_id.startswith("ALE") else 200
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 2, size=steps)]
    first = rollout(make_env(env_id, seed=7), actions)
    second = rollout(make_env(env_id, seed=7), actions)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "CartPole-v1"])
def test_different_seeds_differ(env_id: str) -> None:
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 2, size=200)]
    first = rollout(make_env(env_id, seed=1), actions)
    second = rollout(make_env(env_id, seed=2), actions)
    assert len(first) != len(second) or any(
        not np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )


@pytest.mark.parametrize("env_id", ["MinAtar/Seaquest-v1", "CartPole-v1", "ALE/Breakout-v5"])
def test_action_space_is_seeded(env_id: str) -> None:
    def samples(seed: int) -> list[int]:
        env = make_env(env_id, seed=seed)
        return [int(env.action_space.sample()) for _ in range(32)]

    assert samples(3) == samples(3)
    assert samples(3) != samples(4)


def test_explicit_reset_seed_wins() -> None:
    obs_a, _ = make_env("CartPole-v1", seed=0).reset(seed=5)
    obs_b, _ = make_env("CartPole-v1", seed=5).reset()
    np.testing.assert_array_equal(obs_a, obs_b)


def test_seed_applies_to_the_first_reset_only() -> None:
    env = make_env("CartPole-v1", seed=0)
    first, _ = env.reset()
    second, _ = env.reset()
    assert not np.array_equal(first, second)


def test_env_family() -> None:
    assert all(env_family(env_id) == "minatar" for env_id in MINATAR_IDS)
    assert all(env_family(env_id) == "classic" for env_id in CLASSIC_IDS)
    assert env_family("ALE/Pong-v5") == "atari"


@pytest.mark.parametrize(
    "env_id", ["Pong", "MinAtar/Breakout-v0", "BreakoutNoFrameskip-v4", "ALE/NotAGame-v5", ""]
)
def test_unknown_id_fails_before_anything_is_made(
    env_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("gym.make was called for an unsupported id")

    monkeypatch.setattr(gym, "make", forbidden)
    with pytest.raises(ValueError, match=r"supported|no such id") as error:
        make_env(env_id)
    assert repr(env_id) in str(error.value)


def test_unknown_id_error_lists_the_supported_ids() -> None:
    with pytest.raises(ValueError) as error:
        env_family("Pong")
    for env_id in SUPPORTED_ENV_IDS:
        assert env_id in str(error.value)
    assert ATARI_ID_PATTERN in str(error.value)


def test_family_factory_rejects_other_families() -> None:
    with pytest.raises(ValueError, match="classic"):
        make_minatar("CartPole-v1")


def test_env_ids_load_without_any_environment_library() -> None:
    code = (
        "import sys, redo.agent.env_ids as ids; ids.env_family('CartPole-v1'); "
        "print(sorted(m for m in ('gymnasium', 'minatar', 'ale_py', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
