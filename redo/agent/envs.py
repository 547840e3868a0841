"""Environment factories: MinAtar, Atari (ALE) and classic control, all channels-first.

Every env returned by :func:`make_env` has the same contract, so the training loop needs no
per-family code:

* observations are ``numpy`` arrays in the layout PyTorch's convolutions read, channels
  first: ``(C, 10, 10) uint8`` for MinAtar, ``(4, 84, 84) uint8`` for Atari, ``(d,) float32``
  for classic control, and they lie in ``env.observation_space``;
* ``info["episode"]`` (``{"r": return, "l": length in agent steps, "t": seconds}``) appears at
  the end of each episode (gymnasium's ``RecordEpisodeStatistics``); for Atari ``"r"`` is the
  raw game score, not the clipped reward the agent learns from;
* ``make_env(env_id, seed)`` makes the first ``reset()`` use ``seed`` and seeds
  ``env.action_space``, so a run (including random exploration through
  ``env.action_space.sample()``) is reproducible from one number.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    FrameStackObservation,
    RecordEpisodeStatistics,
    ReshapeObservation,
    TransformObservation,
)

from redo.agent.env_ids import MINATAR_IDS, STICKY_ACTION_PROB, EnvFamily, env_family


def make_env(env_id: str, seed: int | None = None, **options: Any) -> gym.Env:
    """Make a channels-first, episode-recording, optionally seeded env for ``env_id``.

    ``options`` go to the family's factory (:func:`make_minatar`, :func:`make_atari`,
    :func:`make_classic`) and from there to ``gym.make`` (e.g. ``max_episode_steps``).
    """
    family = env_family(env_id)
    factory = {"minatar": make_minatar, "atari": make_atari, "classic": make_classic}[family]
    return factory(env_id, seed, **options)


def make_minatar(env_id: str, seed: int | None = None, **gym_kwargs: Any) -> gym.Env:
    """A MinAtar game with ``(C, 10, 10) uint8`` observations of 0/1 planes.

    The ``minatar`` package emits ``(10, 10, C)`` bool arrays; we move channels first for
    ``nn.Conv2d`` and store uint8, the smallest dtype torch converts from cheaply and
    replay buffers hold without surprises. MinAtar's own defaults stay: sticky actions with
    probability 0.1 and difficulty ramping, as in the MinAtar paper (pass
    ``sticky_action_prob=...`` to change them).
    """
    _check_family(env_id, "minatar")
    _register_minatar()
    env = gym.make(env_id, **gym_kwargs)
    height, width, channels = env.observation_space.shape
    space = gym.spaces.Box(0, 1, shape=(channels, height, width), dtype=np.uint8)
    env = TransformObservation(env, _channels_first_uint8, space)
    return _finish(RecordEpisodeStatistics(env), seed)


def make_atari(
    env_id: str,
    seed: int | None = None,
    *,
    repeat_action_probability: float = STICKY_ACTION_PROB,
    frame_skip: int = 4,
    frame_stack: int = 4,
    screen_size: int = 84,
    clip_reward: bool = True,
    **gym_kwargs: Any,
) -> gym.Env:
    """An Atari game preprocessed as in Dopamine, the ReDo paper's code base.

    Dopamine's protocol (Castro et al., 2018; Machado et al., 2018): sticky actions with
    probability 0.25 inside the emulator, a frame skip of 4 with a max over the last two
    frames, 84x84 greyscale, rewards clipped to their sign for learning, *no* no-op starts
    (noop_max = 0), *no* terminal on life loss, no FIRE on reset, and a stack of the last 4
    frames (zeros before the first, as Dopamine's and SB3's stacks do). Episodes are capped at
    108,000 emulator frames (27,000 agent steps) by ale-py's v5 default, as in Dopamine.

    We compose stable-baselines3's wrappers (``MaxAndSkipEnv``, ``WarpFrame``,
    ``ClipRewardEnv``) rather than its ``AtariWrapper`` for two reasons: ``AtariWrapper``
    always adds ``FireResetEnv`` for games with a FIRE action, which Dopamine does not do, and
    it clips rewards inside itself, so episode statistics recorded outside it would see the
    clipped reward and recorded inside it would count emulator frames. Here
    ``RecordEpisodeStatistics`` sits after the frame skip and before the clipping:
    ``info["episode"]["r"]`` is the raw game score and ``["l"]`` counts agent steps.
    ``gym.make`` gets ``frameskip=1`` so that the v5 default skip of 4 does not stack with ours.
    """
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, MaxAndSkipEnv, WarpFrame

    _check_family(env_id, "atari")
    env = gym.make(
        env_id, frameskip=1, repeat_action_probability=repeat_action_probability, **gym_kwargs
    )
    if frame_skip > 1:
        env = MaxAndSkipEnv(env, skip=frame_skip)
    env = WarpFrame(env, width=screen_size, height=screen_size)
    env = ReshapeObservation(env, (screen_size, screen_size))
    env = RecordEpisodeStatistics(env)
    if clip_reward:
        env = ClipRewardEnv(env)
    env = FrameStackObservation(env, frame_stack, padding_type="zero")
    return _finish(env, seed)


def make_classic(env_id: str, seed: int | None = None, **gym_kwargs: Any) -> gym.Env:
    """A classic-control task with ``(d,) float32`` observations, for quick checks."""
    _check_family(env_id, "classic")
    env = RecordEpisodeStatistics(gym.make(env_id, **gym_kwargs))
    return _finish(env, seed)


class SeedFirstReset(gym.Wrapper):
    """Use ``seed`` for the first ``reset()`` that is given none.

    This keeps the gymnasium contract (seed once, then reset without a seed and let the env's
    generator run on) while letting a factory take the seed, like stable-baselines3's
    ``VecEnv.seed``. An explicit ``reset(seed=...)`` wins and cancels the pending seed.
    """

    def __init__(self, env: gym.Env, seed: int) -> None:
        super().__init__(env)
        self._pending_seed: int | None = seed

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _finish(env: gym.Env, seed: int | None) -> gym.Env:
    if seed is None:
        return env
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    return SeedFirstReset(env, seed)


def _channels_first_uint8(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(obs, -1, 0), dtype=np.uint8)


def _check_family(env_id: str, family: EnvFamily) -> None:
    found = env_family(env_id)
    if found != family:
        raise ValueError(f"{env_id!r} is a {found} id, not {family}; use make_env({env_id!r})")


def _register_minatar() -> None:
    # minatar.gym.register_envs() re-registers (with warnings) on every call: do it once.
    if MINATAR_IDS[0] not in gym.registry:
        import minatar.gym

        minatar.gym.register_envs()


__all__ = [
    "SeedFirstReset",
    "make_atari",
    "make_classic",
    "make_env",
    "make_minatar",
]
