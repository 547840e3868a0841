"""The loop structure of the public reference implementations, rebuilt to be timed.

``python -m redo bench`` (:mod:`redo.bench.runner`) compares our loops with the way ReDo is usually
run in PyTorch: cleanRL's ``dqn.py``/``dqn_atari.py`` (Huang et al., 2022) as extended by the
PyTorch seed repository of ReDo. This module re-creates that *structure*, written from a
description of it, not from its code, and runs it on our environments
(:func:`redo.agent.envs.make_env`) and networks (:func:`redo.core.networks.q_network_for`), so that a
difference in speed comes from the loop and not from the game or the model:

* one gymnasium env, stepped and reset by hand; epsilon-greedy with Python's ``random`` and
  the schedule of :func:`redo.agent.dqn.linear_epsilon`;
* stable-baselines3's ``ReplayBuffer``, which cleanRL uses: it samples with numpy's global
  generator and hands back tensors already on the device;
* ``torch.optim.Adam`` with ``optimizer.zero_grad(); loss.backward(); optimizer.step()`` every
  ``train_frequency`` env steps (or several times per env step for replay ratios above 1),
  and a hard target copy every ``target_update_period`` env steps;
* cleanRL's logging habit: the loss and the mean Q are read back to the host every
  :data:`LOG_EVERY` env steps (cleanRL writes them to TensorBoard; we keep the last ones);
* the seed repository's ReDo habits:

  - after learning starts, ReDo's score batch is sampled from replay at *every* env step,
    whether or not a check is due. This is our reading of the seed repository (the sample
    sits outside the condition of the check) and the benchmark measures it as such;
  - every ``redo_period`` gradient steps a check scores the neurons with forward hooks
    registered on the network's activation modules for that one forward pass and removed
    after (what :func:`redo.core.dormant.dormant_scores` does), redraws the dormant neurons'
    incoming weights with the seed's He-uniform bound, and
  - sets the step count of *every* Adam state to zero at every check (see :mod:`redo.core.optim`
    for why that confounds the seed's results; here it only costs time).

Nothing here produces results for the book: the loop exists to be timed.
"""

from __future__ import annotations

import random
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer
from torch import Tensor, nn

from redo.agent.config import DQNConfig
from redo.agent.envs import make_env
from redo.agent.schedule import linear_epsilon
from redo.agent.td import LOSSES, LossFn
from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.networks import q_network_for
from redo.core.recycle import reset_neurons

#: cleanRL reads its losses back for logging every 100 env steps.
LOG_EVERY = 100

#: Parts of the reference loop's time in its result (``time/<part>_s``), over the window.
REFERENCE_PARTS: tuple[str, ...] = ("update", "redo", "redo_sample")


def run_reference(
    env_id: str,
    steps: int,
    replay_ratio: float,
    redo: bool,
    device: str = "cpu",
    seed: int = 0,
    learning_starts: int = 500,
    **overrides: Any,
) -> dict[str, float]:
    """Run the reference loop for ``learning_starts + steps`` env steps and time the last
    ``steps``: the env steps per second after learning starts, and what that time went to.

    ``overrides`` are further :class:`redo.agent.config.DQNConfig` settings (e.g. ``redo_period``,
    ``batch_size``); the rest are the family defaults of ``env_id``, with a buffer that holds
    the whole run.
    """
    total = learning_starts + steps
    config = DQNConfig.for_env(
        env_id,
        **{
            "seed": seed,
            "total_steps": total,
            "replay_ratio": replay_ratio,
            "redo": redo,
            "learning_starts": learning_starts,
            "buffer_size": max(total, 2),
            "device": device,
            **overrides,
        },
    )
    return reference_loop(config, measure_from=learning_starts)


def train_schedule(replay_ratio: float) -> tuple[int, int]:
    """cleanRL's ``(train_frequency, updates per training step)`` for a replay ratio.

    cleanRL trains every ``train_frequency`` env steps, so only ratios ``1/k`` and whole
    numbers can be expressed; anything else raises ValueError.
    """
    if replay_ratio >= 1 and float(replay_ratio).is_integer():
        return 1, int(replay_ratio)
    frequency = round(1 / replay_ratio) if replay_ratio > 0 else 0
    if frequency < 1 or not np.isclose(frequency * replay_ratio, 1.0):
        raise ValueError(
            "the reference loop trains every k env steps (cleanRL's train_frequency), so its "
            f"replay ratio must be 1/k or a whole number, got {replay_ratio}"
        )
    return frequency, 1


def reference_loop(config: DQNConfig, measure_from: int) -> dict[str, float]:
    """Train with the reference loop structure for ``config.total_steps`` env steps; time the
    env steps after ``measure_from`` (which must lie before the end).

    Returns ``env_steps_per_s``, ``window_env_steps``, ``window_s`` and ``time/<part>_s`` for
    each of :data:`REFERENCE_PARTS`, all within the window; ``grad_steps``, ``redo_checks`` and
    ``recycled`` (neurons) over the whole run; and the last logged ``loss`` and ``q_mean``.
    """
    if not 0 <= measure_from < config.total_steps:
        raise ValueError(
            f"measure_from must lie in [0, total_steps={config.total_steps}), got {measure_from}"
        )
    train_frequency, updates_per_train = train_schedule(config.replay_ratio)
    device = torch.device(config.device)
    random.seed(config.seed)
    np.random.seed(config.seed)  # SB3's sampler draws from numpy's global generator
    torch.manual_seed(config.seed)
    env = make_env(config.env_id, seed=config.seed)
    q_network = q_network_for(env.observation_space.shape, int(env.action_space.n)).to(device)
    target_network = q_network_for(env.observation_space.shape, int(env.action_space.n)).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
    replay = reference_buffer(config.buffer_size, env.observation_space, env.action_space, device)
    loss_fn = LOSSES[config.loss]
    redo_generator = torch.Generator(device=device).manual_seed(config.seed)
    seconds = dict.fromkeys(REFERENCE_PARTS, 0.0)
    counts = {"grad_steps": 0, "redo_checks": 0, "recycled": 0}
    loss, q_taken, redo_obs = None, None, None
    logged = {"loss": float("nan"), "q_mean": float("nan")}

    obs, _ = env.reset()
    start = time.perf_counter()
    for global_step in range(1, config.total_steps + 1):
        if global_step == measure_from + 1:
            seconds = dict.fromkeys(REFERENCE_PARTS, 0.0)
            start = time.perf_counter()
        if random.random() < linear_epsilon(global_step - 1, config):
            action = int(env.action_space.sample())
        else:
            q_values = q_network(torch.as_tensor(obs, device=device).unsqueeze(0))
            action = int(torch.argmax(q_values, dim=1).cpu().numpy()[0])
        next_obs, reward, terminated, truncated, info = env.step(action)
        replay.add(
            obs[None], next_obs[None], np.array([action]), np.array([reward]),
            np.array([terminated]), [info],
        )  # fmt: skip
        obs = env.reset()[0] if terminated or truncated else next_obs

        if global_step > config.learning_starts:
            if config.redo:  # the seed's habit: a score batch every env step
                tic = time.perf_counter()
                redo_obs = replay.sample(config.score_batch_size).observations
                seconds["redo_sample"] += time.perf_counter() - tic
            if global_step % train_frequency == 0:
                for _ in range(updates_per_train):
                    tic = time.perf_counter()
                    data = replay.sample(config.batch_size)
                    loss, q_taken = reference_update(
                        q_network, target_network, optimizer, data, config.gamma, loss_fn
                    )
                    seconds["update"] += time.perf_counter() - tic
                    counts["grad_steps"] += 1
                    if config.redo and counts["grad_steps"] % config.redo_period == 0:
                        tic = time.perf_counter()
                        counts["recycled"] += seed_redo_check(
                            q_network, optimizer, redo_obs, config.tau, redo_generator
                        )
                        counts["redo_checks"] += 1
                        seconds["redo"] += time.perf_counter() - tic
            if global_step % LOG_EVERY == 0 and loss is not None:
                logged = {"loss": loss.item(), "q_mean": q_taken.mean().item()}
            if global_step % config.target_update_period == 0:
                target_network.load_state_dict(q_network.state_dict())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    window_s = time.perf_counter() - start
    env.close()
    window_env_steps = config.total_steps - measure_from
    return {
        "env_steps_per_s": window_env_steps / window_s,
        "window_env_steps": window_env_steps,
        "window_s": window_s,
        **counts,
        **logged,
        **{f"time/{part}_s": s for part, s in seconds.items()},
    }


def reference_buffer(
    capacity: int,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    device: torch.device,
) -> SB3ReplayBuffer:
    """stable-baselines3's replay buffer as cleanRL's ``dqn.py`` makes it: one env, terminated
    transitions marked done, time-limit truncations not treated specially."""
    return SB3ReplayBuffer(
        capacity, observation_space, action_space, device, handle_timeout_termination=False
    )


def reference_update(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any,
    gamma: float,
    loss_fn: LossFn,
) -> tuple[Tensor, Tensor]:
    """One cleanRL gradient step on an SB3 sample; returns the loss and the Q-values of the
    actions taken, left on the device (cleanRL reads them back only when it logs)."""
    with torch.no_grad():
        target_max = target_network(data.next_observations).max(dim=1).values
        td_target = data.rewards.flatten() + gamma * target_max * (1 - data.dones.flatten())
    q_taken = q_network(data.observations).gather(1, data.actions).squeeze(1)
    loss = loss_fn(q_taken, td_target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), q_taken.detach()


def seed_redo_check(
    q_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    tau: float,
    generator: torch.Generator | None = None,
) -> int:
    """One ReDo check as the seed repository makes it; returns the neurons recycled.

    Scores come from a forward pass with hooks on the activation modules, registered for it
    and removed after; dormant neurons get He-uniform incoming weights and bias 0, their
    outgoing weights and Adam moments are zeroed, and then every Adam step count is zeroed,
    whether or not a neuron was recycled.
    """
    masks = dormant_masks(dormant_scores(q_network, obs), tau)
    report = reset_neurons(
        q_network, optimizer, masks, init="kaiming_uniform", step_mode="keep", generator=generator
    )
    zero_adam_steps(optimizer)
    return report.total


def zero_adam_steps(optimizer: torch.optim.Optimizer) -> None:
    """Set the step count of every parameter's Adam state to 0 (the seed's habit)."""
    for state in optimizer.state.values():
        if isinstance(state.get("step"), Tensor):
            state["step"].zero_()
        elif "step" in state:
            state["step"] = 0


__all__ = [
    "LOG_EVERY",
    "REFERENCE_PARTS",
    "reference_buffer",
    "reference_loop",
    "reference_update",
    "run_reference",
    "seed_redo_check",
    "train_schedule",
    "zero_adam_steps",
]
