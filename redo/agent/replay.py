"""Uniform experience replay that stores each observation once and samples from a given RNG.

Why not stable-baselines3's ``ReplayBuffer``: it samples with numpy's *global* generator, so
anything else that draws from it (a logging routine, a library) would change which batches
training sees, and its state is not a plain dict to checkpoint. This buffer draws from the
``numpy.random.Generator`` it is handed and round-trips through :meth:`state_dict`.

Memory: a transition's next observation is the following slot's observation, so each
observation is stored once (as SB3's ``optimize_memory_usage=True`` does): half the memory of
storing ``next_obs`` separately, which matters for Atari's 4x84x84 frame stacks (28 KB each).
``add`` writes ``next_obs`` into the following slot right away, so the newest transition is
complete; the next ``add`` overwrites that slot with its own observation, which is the same
array unless an episode ended. Two consequences, both handled by the sampler:

* when the buffer is full, the slot after the newest one holds the newest transition's next
  observation instead of its own observation, so that oldest slot is never sampled;
* the next observation of an episode's last transition is overwritten by the next episode's
  first observation. That is harmless after a *termination* (the TD target does not bootstrap),
  but a *truncation* (a time limit) needs it, so truncated-but-not-terminated transitions are
  never sampled, as in Dopamine, whose sampler skips transitions that cross an episode end.
  An episode loses one transition out of hundreds or thousands.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

#: Rounds of redrawing unusable (truncated) indices before giving up: each round redraws only
#: the bad ones, so failing needs a buffer made almost entirely of truncated transitions.
_MAX_REDRAWS = 100


def draw_slots(
    rng: np.random.Generator, n: int, pos: int, full: bool, unusable: np.ndarray
) -> np.ndarray:
    """Slots of ``n`` usable transitions of one ring buffer, uniformly with replacement.

    ``pos`` is the next write position, ``full`` whether the ring has wrapped, ``unusable``
    one flag per slot (truncated, not terminated). This is the one sampler of the package:
    the single agent's :class:`ReplayBuffer` and each agent of a population's replay call it
    with the agent's own generator, so both draw the very same slots.
    """
    capacity = len(unusable)
    if pos == 0 and not full:
        raise ValueError("the replay buffer is empty: add transitions before sampling")

    def draw(size: int) -> np.ndarray:
        if full:  # every slot but pos, whose observation was overwritten
            return (pos + 1 + rng.integers(0, capacity - 1, size=size)) % capacity
        return rng.integers(0, pos, size=size)

    idx = draw(n)
    for _ in range(_MAX_REDRAWS):
        bad = unusable[idx]
        if not bad.any():
            return idx
        idx[bad] = draw(int(bad.sum()))
    raise RuntimeError(
        "the replay buffer holds (almost) only truncated transitions, which cannot be "
        "sampled; collect more experience before sampling"
    )


class ReplaySamples(NamedTuple):
    """A batch of transitions as numpy arrays (the caller moves them to its device)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray


class ReplayBuffer:
    """A ring buffer of ``capacity`` transitions with uniform sampling.

    Args:
        capacity: transitions kept; the oldest are overwritten first (at least 2).
        observation_shape: shape of one observation, e.g. ``(4, 84, 84)``.
        observation_dtype: storage dtype, e.g. ``uint8`` for frames (networks scale them).
    """

    def __init__(
        self, capacity: int, observation_shape: tuple[int, ...], observation_dtype: Any
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 2:
            raise ValueError(f"capacity must be an integer >= 2, got {capacity!r}")
        self.capacity = capacity
        self.observations = np.zeros((capacity, *observation_shape), dtype=observation_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=bool)
        #: truncated, not terminated: the next observation is lost, so never sampled
        self.unusable = np.zeros(capacity, dtype=bool)
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        """Transitions stored, usable or not."""
        return self.capacity if self.full else self.pos

    def add(
        self,
        obs: np.ndarray,
        action: int,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition (``next_obs`` is the real next observation, never a reset's)."""
        following = (self.pos + 1) % self.capacity
        self.observations[self.pos] = obs
        self.observations[following] = next_obs
        self.actions[self.pos] = action
        self.rewards[self.pos] = reward
        self.terminated[self.pos] = terminated
        self.unusable[self.pos] = truncated and not terminated
        self.pos = following
        self.full = self.full or following == 0

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplaySamples:
        """``batch_size`` transitions drawn uniformly, with replacement, from ``rng``."""
        idx = self.sample_indices(batch_size, rng)
        return ReplaySamples(
            observations=self.observations[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_observations=self.observations[(idx + 1) % self.capacity],
            terminated=self.terminated[idx],
        )

    def sample_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` stored observations drawn like :meth:`sample`'s, e.g. to score neurons."""
        return self.observations[self.sample_indices(n, rng)]

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Slots of ``n`` usable transitions, uniformly with replacement."""
        return draw_slots(rng, n, self.pos, self.full, self.unusable)

    def state_dict(self) -> dict[str, Any]:
        """The contents, for a checkpoint; only the filled slots of a buffer not yet full."""
        used = self.capacity if self.full else min(self.pos + 1, self.capacity)
        return {
            "capacity": self.capacity,
            "pos": self.pos,
            "full": self.full,
            "observations": self.observations[:used].copy(),
            "actions": self.actions[:used].copy(),
            "rewards": self.rewards[:used].copy(),
            "terminated": self.terminated[:used].copy(),
            "unusable": self.unusable[:used].copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a buffer of the same capacity and shapes."""
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"the saved buffer holds {state['capacity']} transitions, this one "
                f"{self.capacity}: make the buffer with the saved capacity"
            )
        saved_shape = tuple(state["observations"].shape[1:])
        if saved_shape != self.observations.shape[1:]:
            raise ValueError(
                f"the saved observations have shape {saved_shape}, this buffer stores "
                f"{self.observations.shape[1:]}"
            )
        for name in ("observations", "actions", "rewards", "terminated", "unusable"):
            # slots past the saved prefix are never sampled before they are written again
            getattr(self, name)[: len(state[name])] = state[name]
        self.pos = int(state["pos"])
        self.full = bool(state["full"])


__all__ = ["ReplayBuffer", "ReplaySamples", "draw_slots"]
