"""The live environment in a checkpoint, so that a resumed run continues the same episode.

MinAtar and classic-control envs are plain Python objects and pickle whole, random generators
included. ale-py's ``AtariEnv`` pickles as its constructor arguments (gymnasium's
``EzPickle``), which would restart the game, so it is stored as its emulator state
(``cloneState(include_rng=True)``, which carries the sticky-action RNG) plus its numpy
generators, and restored into a freshly made env of the same id.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np


def snapshot_env(env: gym.Env) -> bytes:
    """The live environment as bytes (see the module docstring). cloudpickle, not pickle:
    gymnasium's ``ReshapeObservation`` holds a lambda."""
    buffer = io.BytesIO()
    _EnvPickler(buffer, atari=_atari_env(env)).dump(env)
    return buffer.getvalue()


def restore_env(snapshot: bytes, fresh_env: gym.Env) -> gym.Env:
    """The env of :func:`snapshot_env`; ``fresh_env`` is a new env of the same id, whose
    emulator an Atari snapshot is restored into (other envs do not need it and close it)."""
    unpickler = _EnvUnpickler(io.BytesIO(snapshot), atari=_atari_env(fresh_env))
    env = unpickler.load()
    if not unpickler.used_fresh_env:
        fresh_env.close()
    return env


def _atari_env(env: gym.Env) -> gym.Env | None:
    """The ale-py ``AtariEnv`` under the wrappers, or None for other envs."""
    unwrapped = env.unwrapped
    return unwrapped if type(unwrapped).__module__.startswith("ale_py") else None


def _atari_rngs(atari: gym.Env) -> tuple[np.random.Generator, ...]:
    return (atari.np_random, atari.action_space.np_random, atari.observation_space.np_random)


class _EnvPickler(cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO, atari: gym.Env | None) -> None:
        super().__init__(file)
        self.atari = atari

    def persistent_id(self, obj: Any) -> Any:
        if self.atari is not None and obj is self.atari:
            ale_state = self.atari.unwrapped.ale.cloneState(include_rng=True)
            return ("atari", ale_state, [g.bit_generator.state for g in _atari_rngs(obj)])
        return None


class _EnvUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, atari: gym.Env | None) -> None:
        super().__init__(file)
        self.atari = atari
        self.used_fresh_env = False

    def persistent_load(self, pid: Any) -> Any:
        kind, ale_state, rng_states = pid
        if kind != "atari" or self.atari is None:
            raise pickle.UnpicklingError("the snapshot holds an Atari game; pass an Atari env")
        self.atari.unwrapped.ale.restoreState(ale_state)
        for generator, rng_state in zip(_atari_rngs(self.atari), rng_states, strict=True):
            generator.bit_generator.state = rng_state
        self.used_fresh_env = True
        return self.atari


__all__ = ["restore_env", "snapshot_env"]
