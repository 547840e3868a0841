"""The one-step TD update of DQN, for one agent.

The TD target bootstraps from the target network unless the episode terminated:
``r + gamma * (1 - terminated) * max_a Q_target(s', a)``. A truncated transition (a time
limit) is never sampled (see :mod:`redo.agent.replay`), so it needs no case of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from redo.agent.replay import ReplaySamples

LossFn = Callable[[Tensor, Tensor], Tensor]

#: The TD losses by their name in :attr:`DQNConfig.loss <redo.agent.config.DQNConfig>`
#: (huber = smooth L1 with threshold 1, as Dopamine and the MinAtar paper use).
LOSSES: dict[str, LossFn] = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}


def td_target(rewards: Tensor, terminated: Tensor, next_q: Tensor, gamma: float) -> Tensor:
    """``r + gamma * (1 - terminated) * max_a next_q``; ``next_q`` holds the target network's
    Q-values of the next states, actions last (any leading dimensions, e.g. agents)."""
    not_done = 1.0 - terminated.to(torch.float32)
    return rewards + gamma * not_done * next_q.max(dim=-1).values


def td_loss(
    q_network: nn.Module,
    target_network: nn.Module,
    batch: ReplaySamples,
    gamma: float,
    loss_fn: LossFn,
) -> tuple[Tensor, Tensor]:
    """The TD loss of ``batch`` (with its graph, for a backward pass) and the Q-values of
    the actions taken."""
    device = next(q_network.parameters()).device
    obs = torch.as_tensor(batch.observations, device=device)
    actions = torch.as_tensor(batch.actions, device=device)
    rewards = torch.as_tensor(batch.rewards, device=device)
    next_obs = torch.as_tensor(batch.next_observations, device=device)
    terminated = torch.as_tensor(batch.terminated, device=device)
    with torch.no_grad():
        target = td_target(rewards, terminated, target_network(next_obs), gamma)
    q_taken = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    return loss_fn(q_taken, target), q_taken


def td_update(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ReplaySamples,
    gamma: float,
    loss_fn: LossFn,
) -> tuple[float, float]:
    """One gradient step on the one-step TD error; returns the loss and the mean Q of the
    actions taken."""
    loss, q_taken = td_loss(q_network, target_network, batch, gamma, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), q_taken.detach().mean().item()


__all__ = ["LOSSES", "LossFn", "td_loss", "td_target", "td_update"]
