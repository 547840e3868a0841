"""DQN with ReDo, cleanRL style: :func:`dqn_loop` is the whole algorithm, top to bottom.

:func:`train` is the entry point: it runs :func:`dqn_loop` in a run folder (or a temporary
one) and loads the recorded tables back.

The loop is Dopamine's DQN (the agent of the ReDo paper's DQN experiments) with two additions:

* the **replay ratio** (gradient steps per environment step) is a parameter, not a training
  period: after ``n`` environment steps past ``learning_starts`` exactly
  ``floor(n * replay_ratio)`` gradient steps have been made
  (:func:`redo.agent.schedule.updates_due`), so ratios such as 0.4 or 3 are exact;
* every ``redo_period`` gradient steps, **ReDo** recycles the tau-dormant neurons of the online
  network (:func:`recycle`: :func:`redo.core.recycle.recycle_dormant` on
  ``score_batch_size`` states from replay, or the gradient score of their transitions). The
  target network is never recycled: it picks the change up at its next copy.

What a metrics row holds, and why a row at a reset shows the scores *before* it, is in
:mod:`redo.agent.metrics`; where every random number comes from is in
:mod:`redo.agent.streams` (the same config gives the same run, and agent i of a population
draws exactly what this loop draws).

**Resume.** A checkpoint (every ``checkpoint_interval`` env steps and at the end) holds the
networks, the optimizer, every generator's state, the loop's counters and running sums, the
live environment (:mod:`redo.agent.env_state`) and its current observation, and, if
``save_replay_in_checkpoint``, the replay buffer. ``train(config, folder, resume=True)`` then
continues *exactly* as the run would have: same metrics, same episodes (wall-time columns
aside). Without the replay buffer a resume is *not* identical: the buffer restarts empty, so
the agent collects ``learning_starts`` new transitions (acting with its current epsilon)
before learning again, and the replay ratio is counted from there.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from redo.agent.config import DQNConfig, differing_settings
from redo.agent.env_state import restore_env, snapshot_env
from redo.agent.envs import make_env
from redo.agent.metrics import LoopState, dormant_columns_from_scores, metrics_row
from redo.agent.replay import ReplayBuffer
from redo.agent.schedule import linear_epsilon, updates_due
from redo.agent.streams import AgentStreams, seeded_q_network
from redo.agent.td import LOSSES, LossFn, td_loss, td_update
from redo.core.dormant import PAPER_TAUS, dormant_scores
from redo.core.gradient import gradient_scores
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import RecycleReport, recycle_dormant, reset_neurons, select_neurons
from redo.records.reader import load_checkpoint, load_run
from redo.records.writer import RunWriter


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A finished run: its folder (None for a throw-away run) and its tables, as loaded back
    with :func:`redo.records.reader.load_run`."""

    folder: Path | None
    config: DQNConfig
    record: dict[str, Any]
    metrics: pd.DataFrame
    episodes: pd.DataFrame


def train(
    config: DQNConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train one DQN agent (with ReDo if ``config.redo``) and record the run in ``out_dir``.

    Args:
        config: every setting of the run (:meth:`DQNConfig.for_env` fills the defaults).
        out_dir: the run folder; ``None`` writes to a temporary folder that is deleted after
            the tables are loaded (for quick experiments in a notebook).
        resume: continue the run in ``out_dir`` from its checkpoint (see the module docstring
            for what makes this exact).
        progress: show a tqdm bar with speed, latest return and dormant fraction.
    """
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    with _run_folder(out_dir) as folder:
        dqn_loop(config, folder, resume, progress)
        run = load_run(folder)
    return TrainResult(
        folder=None if out_dir is None else Path(out_dir),
        config=config,
        record=run.record,
        metrics=run.metrics,
        episodes=run.episodes,
    )


def train_or_load(config: DQNConfig, folder: str | Path, progress: bool = False) -> TrainResult:
    """The run of ``config`` in ``folder``: loaded if it finished there, resumed if it was
    interrupted, trained if the folder holds no run yet.

    This is what a notebook that may be executed again wants: re-running it neither repeats
    finished work nor overwrites it. A finished run made with another configuration is an
    error (choose another folder), never silently reused.
    """
    folder = Path(folder)
    if not (folder / "run.json").exists():
        return train(config, folder, progress=progress)
    run = load_run(folder)
    differing = differing_settings(run.config, config)
    if differing:
        raise ValueError(
            f"{folder} holds a run with other settings ({', '.join(differing)}); "
            "choose another folder or delete that run"
        )
    if run.record["status"] == "finished":
        return TrainResult(folder, config, run.record, run.metrics, run.episodes)
    return train(config, folder, resume=True, progress=progress)


def dqn_loop(config: DQNConfig, folder: Path, resume: bool = False, progress: bool = False) -> None:
    """Train and record into the run folder ``folder``: act, store, learn at the replay ratio,
    recycle every F gradient steps, log, checkpoint. Arguments as for :func:`train`."""
    device = torch.device(config.device)
    checkpoint = load_checkpoint(folder) if resume else None
    resume_at = None if checkpoint is None else checkpoint["env_step"]
    with RunWriter(folder, config.to_dict(), device=device, resume_at=resume_at) as writer:
        # --- environment, networks, optimizer, replay and random streams
        env = make_env(config.env_id, seed=config.seed)
        shape, n_actions = env.observation_space.shape, int(env.action_space.n)
        q_network = seeded_q_network(shape, n_actions, config.seed, device)
        target_network = copy.deepcopy(q_network).requires_grad_(False)
        optimizer = ElementwiseAdam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
        replay = ReplayBuffer(config.buffer_size, shape, env.observation_space.dtype)
        streams = AgentStreams.from_seed(config.seed, device)
        loss_fn = LOSSES[config.loss]
        taus = logged_taus(config)
        state = LoopState(updates_from_env_step=config.learning_starts)
        obs, _ = env.reset()
        if checkpoint is not None:
            env, obs = restore_checkpoint(
                checkpoint, config, env, q_network, target_network, optimizer, replay, streams,
                state,
            )  # fmt: skip
        bar = tqdm(
            total=config.total_steps, initial=state.env_step, disable=not progress, unit="step"
        )

        for env_step in range(state.env_step + 1, config.total_steps + 1):
            # --- act epsilon-greedily and store the transition
            epsilon = linear_epsilon(env_step - 1, config)
            if streams.explore.random() < epsilon:
                action = int(env.action_space.sample())
            else:
                action = greedy_action(q_network, obs, device)
            next_obs, reward, terminated, truncated, info = env.step(action)
            replay.add(obs, action, float(reward), next_obs, terminated, truncated)
            state.env_step = env_step
            if "episode" in info:  # the raw score, before any reward clipping
                episode_return = float(info["episode"]["r"])
                writer.log_episode(env_step, episode_return, int(info["episode"]["l"]))
                state.returns.append(episode_return)
            obs = env.reset()[0] if terminated or truncated else next_obs

            # --- learn: the gradient steps the replay ratio owes after this env step
            if env_step > state.updates_from_env_step:
                due = updates_due(
                    env_step - state.updates_from_env_step,
                    config.replay_ratio,
                    state.grad_step - state.updates_from_grad_step,
                )
                for _ in range(due):
                    tic = time.perf_counter()
                    batch = replay.sample(config.batch_size, streams.replay)
                    loss, q_mean = td_update(
                        q_network, target_network, optimizer, batch, config.gamma, loss_fn
                    )
                    state.time_update_s += time.perf_counter() - tic
                    state.grad_step += 1
                    state.loss_sum += loss
                    state.q_sum += q_mean
                    state.updates += 1

                    # ReDo: recycle the online network's dormant neurons every F steps
                    scores = None
                    if config.redo and state.grad_step % config.redo_period == 0:
                        tic = time.perf_counter()
                        report, scores = recycle(
                            config, q_network, target_network, optimizer, replay, streams, loss_fn
                        )  # scores: the deciding batch's activation scores, before the reset
                        state.time_redo_s += time.perf_counter() - tic
                        state.count_recycled(report.masks)

                    if state.grad_step % config.log_interval == 0:
                        tic = time.perf_counter()
                        before_reset = scores is not None
                        if scores is None:
                            x = replay.sample_observations(
                                config.score_batch_size, streams.log_batch
                            )
                            scores = dormant_scores(q_network, torch.as_tensor(x, device=device))
                        dormant = dormant_columns_from_scores(scores, taus)
                        state.time_score_s += time.perf_counter() - tic
                        row = metrics_row(state, dormant, epsilon, before_reset)
                        writer.log_metrics(row)
                        bar.set_postfix(
                            sps=f"{row['sps']:.0f}",
                            ret=f"{state.last_return():.1f}",
                            dormant=f"{dormant[f'dormant/tau={config.tau:g}']:.3f}",
                            refresh=False,
                        )
                        state.start_interval()

                if env_step % config.target_update_period == 0:
                    target_network.load_state_dict(q_network.state_dict())

            bar.update()
            if env_step % config.checkpoint_interval == 0 or env_step == config.total_steps:
                snapshot = checkpoint_state(
                    config, env, obs, q_network, target_network, optimizer, replay, streams,
                    state,
                )  # fmt: skip
                writer.save_checkpoint(snapshot)
        bar.close()
        env.close()


# --- the pieces of the loop ---------------------------------------------------------------


def recycle(
    config: DQNConfig,
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    replay: ReplayBuffer,
    streams: AgentStreams,
    loss_fn: LossFn,
) -> tuple[RecycleReport, dict[str, Tensor]]:
    """ReDo's reset at this gradient step, with the run's options, on ``score_batch_size``
    draws of the ReDo stream; returns its report and the activation scores of the batch that
    decided it, measured before the reset (what the metrics row logs).

    With the paper's activation score this is :func:`redo.core.recycle.recycle_dormant` on
    states from replay. With the gradient score (GraMa), the same slots give transitions, and
    neurons are scored by the TD loss's gradient on their incoming weights
    (:func:`redo.core.gradient.gradient_scores`)."""
    device = next(q_network.parameters()).device
    options = {
        "init": config.redo_init,
        "bias": config.redo_bias,
        "step_mode": config.redo_step_mode,
        "generator": streams.redo_weights,
    }
    if config.redo_score == "activation":
        x = replay.sample_observations(config.score_batch_size, streams.redo_batch)
        report = recycle_dormant(
            q_network, optimizer, torch.as_tensor(x, device=device), config.tau,
            selection=config.redo_selection, **options,
        )  # fmt: skip
        return report, report.scores
    batch = replay.sample(config.score_batch_size, streams.redo_batch)
    logged = dormant_scores(q_network, torch.as_tensor(batch.observations, device=device))
    loss, _ = td_loss(q_network, target_network, batch, config.gamma, loss_fn)
    scores = gradient_scores(q_network, loss)
    masks = select_neurons(scores, config.tau, config.redo_selection, streams.redo_weights)
    whole = config.redo_selection == "all"
    report = reset_neurons(
        q_network, optimizer, masks, whole_network=whole, scores=scores, **options
    )
    return report, logged


def logged_taus(config: DQNConfig) -> tuple[float, ...]:
    """The thresholds of the logged dormant fractions: the paper's three and the run's own."""
    return tuple(sorted({*PAPER_TAUS, config.tau}))


@torch.no_grad()
def greedy_action(q_network: nn.Module, obs: np.ndarray, device: torch.device) -> int:
    """The action with the highest Q-value for one observation."""
    q_values: Tensor = q_network(torch.as_tensor(obs, device=device).unsqueeze(0))
    return int(q_values.argmax(dim=1).item())


def checkpoint_state(
    config: DQNConfig,
    env: gym.Env,
    obs: np.ndarray,
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    replay: ReplayBuffer,
    streams: AgentStreams,
    state: LoopState,
) -> dict[str, Any]:
    """Everything :func:`restore_checkpoint` needs to continue the run exactly."""
    return {
        "env_step": state.env_step,
        "loop": state.state_dict(),
        "q_network": q_network.state_dict(),
        "target_network": target_network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "streams": streams.state_dict(),
        "env": snapshot_env(env),
        "obs": obs,
        "replay": replay.state_dict() if config.save_replay_in_checkpoint else None,
    }


def restore_checkpoint(
    checkpoint: dict[str, Any],
    config: DQNConfig,
    fresh_env: gym.Env,
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    replay: ReplayBuffer,
    streams: AgentStreams,
    state: LoopState,
) -> tuple[gym.Env, np.ndarray]:
    """Load a :func:`checkpoint_state` into the freshly built objects; return the restored
    env and its current observation. Without a saved replay buffer, learning pauses until
    ``learning_starts`` new transitions are collected."""
    env = restore_env(checkpoint["env"], fresh_env)
    q_network.load_state_dict(checkpoint["q_network"])
    target_network.load_state_dict(checkpoint["target_network"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    _optimizer_state_to(optimizer, next(q_network.parameters()).device)
    streams.load_state_dict(checkpoint["streams"])
    state.load_state_dict(checkpoint["loop"])
    if checkpoint["replay"] is not None:
        replay.load_state_dict(checkpoint["replay"])
    else:
        state.refill_before_learning(config.learning_starts)
    return env, checkpoint["obs"]


def _optimizer_state_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """``Optimizer.load_state_dict`` leaves ``step`` where it was saved (the CPU), which is
    fine for torch's scalar steps but not for ElementwiseAdam's per-element steps on a GPU."""
    for param_state in optimizer.state.values():
        for key, value in param_state.items():
            if isinstance(value, Tensor):
                param_state[key] = value.to(device)


@contextlib.contextmanager
def _run_folder(out_dir: str | Path | None) -> Iterator[Path]:
    """``out_dir``, or a temporary folder removed on exit."""
    if out_dir is not None:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="redo-run-") as tmp:
        yield Path(tmp)


__all__ = [
    "TrainResult",
    "checkpoint_state",
    "dqn_loop",
    "greedy_action",
    "logged_taus",
    "recycle",
    "restore_checkpoint",
    "train",
    "train_or_load",
]
