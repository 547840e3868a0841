"""Every random draw of one agent, derived from its seed alone.

An agent's run must be re-creatable from its own settings: the single loop
(:mod:`redo.agent.dqn`) and agent i of any population (:mod:`redo.population`) draw exactly the
same numbers, whatever the population's size, the agent's position in it, or the other agents'
settings. So nothing an agent draws comes from a stream that another agent also advances:

* its **network** is initialised from ``torch.manual_seed(seed)`` inside a forked RNG
  (:func:`seeded_q_network`), which leaves the caller's global RNG as it was;
* its **environment** and the environment's action space (random actions) are seeded by
  :func:`redo.agent.envs.make_env` with the seed;
* the rest comes from :class:`AgentStreams`, children of ``numpy.random.SeedSequence(seed)``:
  epsilon-greedy's coin, replay minibatch slots, the slots of ReDo's score batches, the slots
  of the logged score batches, and a ``torch.Generator`` for ReDo's new weights (and for a
  random selection of neurons).

One stream per consumer also means that one consumer never shifts another's draws: logging
more often changes no training batch, and turning ReDo on changes no minibatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from redo.core.networks import q_network_for

#: The numpy streams, in the order they are spawned from the seed.
NUMPY_STREAMS: tuple[str, ...] = ("explore", "replay", "redo_batch", "log_batch")


@dataclass
class AgentStreams:
    """The random generators of one agent; see the module docstring."""

    #: epsilon-greedy's coin (random actions come from the env's seeded action space)
    explore: np.random.Generator
    #: slots of the training minibatches
    replay: np.random.Generator
    #: slots of ReDo's score batches (the batch that decides a reset)
    redo_batch: np.random.Generator
    #: slots of the score batches of logged dormant fractions between resets
    log_batch: np.random.Generator
    #: ReDo's new incoming weights, on the training device
    redo_weights: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: str | torch.device = "cpu") -> AgentStreams:
        children = np.random.SeedSequence(seed).spawn(len(NUMPY_STREAMS) + 1)
        redo_weights = torch.Generator(device=torch.device(device))
        redo_weights.manual_seed(int(children[-1].generate_state(1)[0]))
        numpy_streams = {
            name: np.random.default_rng(child)
            for name, child in zip(NUMPY_STREAMS, children, strict=False)
        }
        return cls(**numpy_streams, redo_weights=redo_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name).bit_generator.state for name in NUMPY_STREAMS},
            "redo_weights": self.redo_weights.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in NUMPY_STREAMS:
            getattr(self, name).bit_generator.state = state[name]
        self.redo_weights.set_state(state["redo_weights"])


def seeded_q_network(
    observation_shape: Sequence[int], n_actions: int, seed: int, device: str | torch.device
) -> nn.Sequential:
    """The agent's initial Q-network (:func:`redo.core.networks.q_network_for`), drawn from
    ``torch.manual_seed(seed)`` on the CPU and then moved to ``device``, so that the same seed
    gives the same weights on every device; the global RNG is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = q_network_for(observation_shape, n_actions)
    return network.to(device)


__all__ = ["NUMPY_STREAMS", "AgentStreams", "seeded_q_network"]
