"""Replay storage for a population of agents: one tensor per field, agent dimension first.

The layout and rules are those of :class:`redo.agent.replay.ReplayBuffer`, for K agents at once and
on the training device, so that a population's minibatches are gathered by one indexing
operation per field instead of K numpy copies and K transfers:

* each observation is stored once: ``add`` writes ``next_obs`` into the following slot, which
  the next ``add`` overwrites with its own observation (the same array unless an episode
  ended); observations keep the env's dtype (``uint8`` for MinAtar and Atari: the networks'
  :class:`redo.core.networks.ScaleInput` casts them);
* a truncated, not terminated, transition loses its next observation to the next episode's
  first one, so it is never sampled (as in Dopamine), and once the buffer is full the slot
  after the newest transition (whose observation was overwritten) is never sampled either.

The agents step in lockstep, so they all store one transition per env step: the write
position and the fill level are shared host integers, and no host-device synchronisation is
needed to know which slots are valid.

**Sampling** draws from a ``torch.Generator`` on the storage's device. Every draw is a
``(K, n, candidates)`` tensor of uniform slots, row k for agent k, so agent k's indices depend
only on the generator's state and the fill level, never on another agent's data. Of each
row's ``candidates`` slots the first usable one is taken: uniform over the usable slots,
without a data-dependent loop (which would need the host to look at the device). All
candidates are unusable with probability ``p**candidates`` for a share ``p`` of truncated
transitions (at most one per episode: ``p <= 1/500`` on CartPole, ``1/27000`` on Atari, 0 on
MinAtar, which has no time limit); the sample then takes the agent's newest usable
transition, so an unusable transition is never returned and the bias towards the newest one
is of order ``p**candidates``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

#: The storage tensors with one row per agent and one column per slot.
_AGENT_FIELDS: tuple[str, ...] = ("observations", "actions", "rewards", "terminated", "unusable")

#: Slots drawn per sample to find a usable one (see the module docstring).
CANDIDATES = 4


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
        #: truncated, not terminated: the next observation is lost, so never sampled
        self.unusable = torch.zeros(shape, dtype=torch.bool, device=self.device)
        #: each agent's newest usable slot: the fallback when no candidate is usable
        self.newest_usable = torch.zeros(agents, dtype=torch.int64, device=self.device)
        #: row offsets into the storage flattened to (K * capacity, ...)
        self._row_start = torch.arange(agents, device=self.device).unsqueeze(1) * capacity
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        """Transitions stored per agent, usable or not."""
        return self.capacity if self.full else self.pos

    def add(
        self,
        obs: np.ndarray | Tensor,
        actions: np.ndarray | Tensor,
        rewards: np.ndarray | Tensor,
        next_obs: np.ndarray | Tensor,
        terminated: np.ndarray | Tensor,
        truncated: np.ndarray | Tensor,
    ) -> None:
        """Store one transition per agent; every argument has the agent dimension first.

        ``next_obs`` must be the real next observation (the final one at an episode's end,
        never the reset's). Host arrays are copied straight into the device storage.
        """
        following = (self.pos + 1) % self.capacity
        self.observations[:, self.pos].copy_(torch.as_tensor(obs))
        self.observations[:, following].copy_(torch.as_tensor(next_obs))
        self.actions[:, self.pos].copy_(torch.as_tensor(actions))
        self.rewards[:, self.pos].copy_(torch.as_tensor(rewards))
        terminated = torch.as_tensor(terminated, device=self.device)
        unusable = torch.as_tensor(truncated, device=self.device) & ~terminated
        self.terminated[:, self.pos].copy_(terminated)
        self.unusable[:, self.pos].copy_(unusable)
        self.newest_usable = torch.where(unusable, self.newest_usable, self.pos)
        self.pos = following
        self.full = self.full or following == 0

    def sample(self, batch_size: int, generator: torch.Generator) -> PopulationBatch:
        """``batch_size`` transitions per agent, uniformly with replacement."""
        idx = self.sample_indices(batch_size, generator)
        return PopulationBatch(
            observations=self._gather(self.observations, idx),
            actions=self.actions.gather(1, idx),
            rewards=self.rewards.gather(1, idx),
            next_observations=self._gather(self.observations, (idx + 1) % self.capacity),
            terminated=self.terminated.gather(1, idx),
        )

    def sample_observations(self, n: int, generator: torch.Generator) -> Tensor:
        """``(K, n, ...)`` stored observations drawn like :meth:`sample`'s, to score neurons."""
        return self._gather(self.observations, self.sample_indices(n, generator))

    def sample_indices(self, n: int, generator: torch.Generator) -> Tensor:
        """``(K, n)`` slots of usable transitions, uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("the replay buffer is empty: add transitions before sampling")
        if self.full:  # every slot but self.pos, whose observation was overwritten
            draws = torch.randint(
                self.capacity - 1,
                (self.agents, n, CANDIDATES),
                generator=generator,
                device=self.device,
            )
            draws = (draws + (self.pos + 1)) % self.capacity
        else:
            draws = torch.randint(
                self.pos, (self.agents, n, CANDIDATES), generator=generator, device=self.device
            )
        usable = ~self.unusable.gather(1, draws.view(self.agents, -1)).view_as(draws)
        first_usable = usable.to(torch.uint8).argmax(dim=-1, keepdim=True)
        idx = draws.gather(-1, first_usable).squeeze(-1)
        return torch.where(usable.any(dim=-1), idx, self.newest_usable.unsqueeze(1))

    def agent_state_dict(self, agent: int) -> dict[str, Any]:
        """Agent ``agent``'s transitions for a checkpoint: CPU copies of its filled slots only
        (as :meth:`redo.agent.replay.ReplayBuffer.state_dict` keeps them), and the write position,
        which every agent shares."""
        used = self.capacity if self.full else self.pos + 1
        slots = {
            name: getattr(self, name)[agent, :used].to("cpu", copy=True) for name in _AGENT_FIELDS
        }
        newest = int(self.newest_usable[agent])
        return {"pos": self.pos, "full": self.full, "newest_usable": newest, **slots}

    def load_agent_state_dict(self, agent: int, state: Mapping[str, Any]) -> None:
        """Write an :meth:`agent_state_dict` into agent ``agent``'s storage; slots past the
        saved ones are never sampled before they are written again."""
        for name in _AGENT_FIELDS:
            getattr(self, name)[agent, : len(state[name])].copy_(state[name])
        self.newest_usable[agent] = state["newest_usable"]
        self.pos, self.full = state["pos"], state["full"]

    def _gather(self, storage: Tensor, idx: Tensor) -> Tensor:
        """``storage[k, idx[k, j]]`` for every agent k, as one flat index_select."""
        flat = storage.view(self.agents * self.capacity, *storage.shape[2:])
        rows = flat.index_select(0, (idx + self._row_start).view(-1))
        return rows.view(*idx.shape, *storage.shape[2:])


__all__ = ["CANDIDATES", "PopulationBatch", "PopulationReplay"]
