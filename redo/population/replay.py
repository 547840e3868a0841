"""Replay storage for a population of agents: one tensor per field, agent dimension first.

The layout and rules are those of :class:`redo.agent.replay.ReplayBuffer`, for K agents at
once and on the training device, so that a population's minibatches are gathered by one
indexing operation per field instead of K numpy copies and K transfers:

* each observation is stored once: ``add`` writes ``next_obs`` into the following slot, which
  the next ``add`` overwrites with its own observation (the same array unless an episode
  ended); observations keep the env's dtype (``uint8`` for MinAtar and Atari: the networks'
  :class:`redo.core.networks.ScaleInput` casts them);
* a truncated, not terminated, transition loses its next observation to the next episode's
  first one, so it is never sampled (as in Dopamine), and once the buffer is full the slot
  after the newest transition (whose observation was overwritten) is never sampled either.

The agents step in lockstep, so they all store one transition per env step: the write
position and the fill level are shared. **Sampling** uses the one sampler of the package,
:func:`redo.agent.replay.draw_slots`, once per agent with that agent's own generator, on host
flags of usable slots: agent k draws exactly the slots that a single agent with its seed
draws, whatever the other agents do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from redo.agent.replay import draw_slots

#: The storage tensors with one row per agent and one column per slot.
_DEVICE_FIELDS: tuple[str, ...] = ("observations", "actions", "rewards", "terminated")


class PopulationBatch(NamedTuple):
    """A minibatch per agent, on the storage's device: every field is ``(K, n, ...)``."""

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminated: Tensor


class PopulationReplay:
    """Ring buffers of ``capacity`` transitions for each of ``agents`` agents.

    Args:
        agents: K, the number of agents.
        capacity: transitions kept per agent; the oldest are overwritten first (at least 2).
        observation_shape: shape of one observation, e.g. ``(4, 10, 10)``.
        observation_dtype: storage dtype of observations, e.g. ``torch.uint8``.
        device: where the storage lives and batches are gathered (the training device).
    """

    def __init__(
        self,
        agents: int,
        capacity: int,
        observation_shape: tuple[int, ...],
        observation_dtype: torch.dtype,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value, minimum in (("agents", agents, 1), ("capacity", capacity, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        self.agents = agents
        self.capacity = capacity
        self.device = torch.device(device)
        shape = (agents, capacity)
        self.observations = torch.zeros(
            (*shape, *observation_shape), dtype=observation_dtype, device=self.device
        )
        self.actions = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.rewards = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        #: truncated, not terminated: the next observation is lost, so never sampled (host)
        self.unusable = np.zeros(shape, dtype=bool)
        #: row offsets into the storage flattened to (K * capacity, ...)
        self._row_start = np.arange(agents)[:, None] * capacity
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        """Transitions stored per agent, usable or not."""
        return self.capacity if self.full else self.pos

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Store one transition per agent; every argument is a host array, agent first.

        ``next_obs`` must be the real next observation (the final one at an episode's end,
        never the reset's).
        """
        following = (self.pos + 1) % self.capacity
        self.observations[:, self.pos].copy_(torch.from_numpy(np.asarray(obs)))
        self.observations[:, following].copy_(torch.from_numpy(np.asarray(next_obs)))
        self.actions[:, self.pos].copy_(torch.from_numpy(np.asarray(actions, dtype=np.int64)))
        self.rewards[:, self.pos].copy_(torch.from_numpy(np.asarray(rewards, dtype=np.float32)))
        terminated = np.asarray(terminated, dtype=bool)
        self.terminated[:, self.pos].copy_(torch.from_numpy(terminated))
        self.unusable[:, self.pos] = np.asarray(truncated, dtype=bool) & ~terminated
        self.pos = following
        self.full = self.full or following == 0

    def sample(
        self,
        batch_size: int,
        rngs: Sequence[np.random.Generator],
        agents: Sequence[int] | None = None,
    ) -> PopulationBatch:
        """``batch_size`` transitions for each of ``agents`` (all by default), the j-th
        listed agent's drawn from ``rngs[j]``; row j of every field is that agent's."""
        agents = range(self.agents) if agents is None else agents
        idx = self.sample_indices(batch_size, agents, rngs)
        rows = self._flat_rows(idx, agents)
        following = self._flat_rows((idx + 1) % self.capacity, agents)
        return PopulationBatch(
            observations=self._gather(self.observations, rows, idx.shape),
            actions=self._gather(self.actions, rows, idx.shape),
            rewards=self._gather(self.rewards, rows, idx.shape),
            next_observations=self._gather(self.observations, following, idx.shape),
            terminated=self._gather(self.terminated, rows, idx.shape),
        )

    def sample_observations(
        self, n: int, agents: Sequence[int], rngs: Sequence[np.random.Generator]
    ) -> Tensor:
        """``(len(agents), n, ...)`` stored observations of the listed agents, drawn like
        :meth:`sample`'s from ``rngs`` (one per listed agent), e.g. to score neurons."""
        idx = self.sample_indices(n, agents, rngs)
        return self._gather(self.observations, self._flat_rows(idx, agents), idx.shape)

    def sample_indices(
        self, n: int, agents: Sequence[int], rngs: Sequence[np.random.Generator]
    ) -> np.ndarray:
        """``(len(agents), n)`` slots of usable transitions, uniformly with replacement."""
        if len(agents) != len(rngs):
            raise ValueError(f"give one generator per agent: {len(agents)} agents, {len(rngs)}")
        return np.stack(
            [
                draw_slots(rng, n, self.pos, self.full, self.unusable[agent])
                for agent, rng in zip(agents, rngs, strict=True)
            ]
        )

    def agent_state_dict(self, agent: int) -> dict[str, Any]:
        """Agent ``agent``'s transitions for a checkpoint: CPU copies of its filled slots only
        (as :meth:`redo.agent.replay.ReplayBuffer.state_dict` keeps them), and the write
        position, which every agent shares."""
        used = self.capacity if self.full else self.pos + 1
        slots = {
            name: getattr(self, name)[agent, :used].to("cpu", copy=True) for name in _DEVICE_FIELDS
        }
        return {
            "pos": self.pos,
            "full": self.full,
            "unusable": self.unusable[agent, :used].copy(),
            **slots,
        }

    def load_agent_state_dict(self, agent: int, state: Mapping[str, Any]) -> None:
        """Write an :meth:`agent_state_dict` into agent ``agent``'s storage; slots past the
        saved ones are never sampled before they are written again."""
        for name in _DEVICE_FIELDS:
            getattr(self, name)[agent, : len(state[name])].copy_(state[name])
        self.unusable[agent, : len(state["unusable"])] = state["unusable"]
        self.pos, self.full = state["pos"], state["full"]

    def _flat_rows(self, idx: np.ndarray, agents: Sequence[int]) -> Tensor:
        """Rows of the storage flattened to ``(K * capacity, ...)`` for slots ``idx``."""
        rows = idx + self._row_start[list(agents)]
        return torch.from_numpy(rows.reshape(-1)).to(self.device)

    def _gather(self, storage: Tensor, rows: Tensor, shape: tuple[int, ...]) -> Tensor:
        """``storage[agent, slot]`` for the flat ``rows``, shaped ``(*shape, ...)``."""
        flat = storage.view(self.agents * self.capacity, *storage.shape[2:])
        return flat.index_select(0, rows).view(*shape, *storage.shape[2:])


__all__ = ["PopulationBatch", "PopulationReplay"]
