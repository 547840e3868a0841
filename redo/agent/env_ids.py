"""The environments the package supports, by id and family, without making any.

This module imports no environment library until an Atari id has to be checked against
ale-py's registry, so that configurations and the command line load quickly.
"""

from __future__ import annotations

import re
from typing import Literal

EnvFamily = Literal["minatar", "atari", "classic"]

#: The five MinAtar games (Young & Tian, 2019), as ``-v1`` ids: each game's minimal action set
#: (3 to 6 actions). The MinAtar paper's DQN acted with all six actions (the ``-v0`` ids); the
#: book uses the minimal sets, as Dopamine, the ReDo paper's code base, does for Atari, so
#: returns are comparable across our runs but not exactly to the MinAtar paper's curves.
MINATAR_IDS: tuple[str, ...] = (
    "MinAtar/Asterix-v1",
    "MinAtar/Breakout-v1",
    "MinAtar/Freeway-v1",
    "MinAtar/Seaquest-v1",
    "MinAtar/SpaceInvaders-v1",
)

#: gymnasium's classic-control tasks with discrete actions (a DQN needs discrete actions).
CLASSIC_IDS: tuple[str, ...] = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")

#: Every fixed id; any Atari game is accepted through :data:`ATARI_ID_PATTERN`.
SUPPORTED_ENV_IDS: tuple[str, ...] = MINATAR_IDS + CLASSIC_IDS

#: Atari ids are ``ALE/<Game>-v5`` for any game that ale-py ships, e.g. ``ALE/Breakout-v5``.
ATARI_ID_PATTERN = "ALE/<Game>-v5"
_ATARI_RE = re.compile(r"ALE/[A-Za-z0-9]+-v5")

#: Dopamine's sticky-action probability (Machado et al., 2018), used by the ReDo paper.
STICKY_ACTION_PROB = 0.25


def env_family(env_id: str) -> EnvFamily:
    """Which family ``env_id`` belongs to; raises ValueError for an unsupported id.

    Nothing is created: an ALE id is checked against ale-py's registry, so a typo in a game
    name fails here, before any environment or run directory exists.
    """
    if env_id in MINATAR_IDS:
        return "minatar"
    if env_id in CLASSIC_IDS:
        return "classic"
    if isinstance(env_id, str) and _ATARI_RE.fullmatch(env_id):
        games = atari_ids()
        if env_id in games:
            return "atari"
        raise ValueError(
            f"unknown Atari game {env_id!r}: ale-py has no such id; known ones include "
            f"{', '.join(games[:8])}, ... ({len(games)} games)"
        )
    raise ValueError(f"unsupported environment id {env_id!r}; {describe_supported()}")


def describe_supported() -> str:
    """One line naming every supported id and the Atari pattern, for error messages."""
    return (
        f"supported ids are {', '.join(SUPPORTED_ENV_IDS)}, and {ATARI_ID_PATTERN} for any Atari "
        "game in ale-py (e.g. ALE/Breakout-v5)"
    )


def atari_ids() -> list[str]:
    """All ``ALE/<Game>-v5`` ids registered by ale-py, sorted."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return sorted(k for k in gym.registry if _ATARI_RE.fullmatch(k))


__all__ = [
    "ATARI_ID_PATTERN",
    "CLASSIC_IDS",
    "MINATAR_IDS",
    "STICKY_ACTION_PROB",
    "SUPPORTED_ENV_IDS",
    "EnvFamily",
    "atari_ids",
    "describe_supported",
    "env_family",
]
