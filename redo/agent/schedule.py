"""When an agent learns and how it explores: the replay ratio's gradient steps and epsilon.

Both are pure functions of counters, so the single loop and a population follow the same
schedule by calling the same code.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from redo.agent.config import DQNConfig


def updates_due(env_steps_since_start: int, replay_ratio: float, done_so_far: int) -> int:
    """Gradient steps to make now so that ``floor(n * replay_ratio)`` have been made after
    ``n = env_steps_since_start`` environment steps, given ``done_so_far``.

    The ratio is read as the decimal it is written as (``0.4`` is exactly 2/5), and counted
    with integers, so a ratio never drifts through float rounding: 0.25 gives one update every
    4 steps, 3 gives three per step, 0.4 two every 5 steps, forever.
    """
    if env_steps_since_start < 0 or done_so_far < 0:
        raise ValueError(
            f"step counts must be >= 0, got env_steps_since_start={env_steps_since_start}, "
            f"done_so_far={done_so_far}"
        )
    ratio = _exact_ratio(replay_ratio)
    due = env_steps_since_start * ratio.numerator // ratio.denominator - done_so_far
    if due < 0:
        raise ValueError(
            f"{done_so_far} gradient steps were made but only "
            f"{due + done_so_far} are due after {env_steps_since_start} env steps"
        )
    return due


@functools.lru_cache(maxsize=16)
def _exact_ratio(replay_ratio: float) -> Fraction:
    if not (math.isfinite(replay_ratio) and replay_ratio > 0):
        raise ValueError(f"replay_ratio must be a finite number > 0, got {replay_ratio}")
    return Fraction(repr(float(replay_ratio)))


def linear_epsilon(env_step: int, config: DQNConfig) -> float:
    """Dopamine's schedule: ``epsilon_start`` until ``learning_starts``, then linear down to
    ``epsilon_end`` over ``epsilon_decay_steps`` env steps, then constant."""
    past = env_step - config.learning_starts
    if past <= 0:
        return config.epsilon_start
    if past >= config.epsilon_decay_steps:
        return config.epsilon_end
    return config.epsilon_start + past / config.epsilon_decay_steps * (
        config.epsilon_end - config.epsilon_start
    )


__all__ = ["linear_epsilon", "updates_due"]
