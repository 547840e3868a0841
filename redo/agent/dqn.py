"""DQN with ReDo, cleanRL style: :func:`dqn_loop` is the whole algorithm, top to bottom.

:func:`train` is the entry point: it runs :func:`dqn_loop` in a run folder (or a temporary
one) and loads the recorded tables back.

The loop is Dopamine's DQN (the agent of the ReDo paper's DQN experiments) with two additions:

* the **replay ratio** (gradient steps per environment step) is a parameter, not a training
  period: after ``n`` environment steps past ``learning_starts`` exactly
  ``floor(n * replay_ratio)`` gradient steps have been made (:func:`updates_due`), so ratios
  such as 0.4 or 3 are exact, not rounded to "every k steps";
* every ``redo_period`` gradient steps, **ReDo** recycles the tau-dormant neurons of the online
  network (:func:`redo.core.recycle.recycle_dormant`) on ``score_batch_size`` states from replay.
  The target network is never recycled: it picks the change up at its next copy.

Every ``log_interval`` gradient steps one metrics row records the dormant fractions at the
paper's thresholds (measured whether or not ReDo is on), what ReDo recycled, the mean TD loss
and Q, epsilon, speed, mean episode return, and the cumulative wall time spent in gradient
steps, in dormant scoring for the log, and in ReDo resets.

**Random streams.** Every consumer of randomness has its own generator, all derived from
``config.seed``: the network init (``torch.manual_seed``), the environment and its action
space (:func:`redo.agent.envs.make_env`), a numpy generator for training batches and ReDo's score
batches, one for the logged scores, one for epsilon-greedy's coin, and a ``torch.Generator``
for ReDo's new weights. So the same config gives the same run on the CPU, and changing how
often metrics are logged does not change the training run at all.

**Resume.** A checkpoint (every ``checkpoint_interval`` env steps and at the end) holds the
networks, the optimizer, every generator's state, the loop's counters and running sums, the
live environment and its current observation, and, if ``save_replay_in_checkpoint``, the
replay buffer. ``train(config, folder, resume=True)`` then continues *exactly* as the run
would have: same metrics, same episodes (wall-time columns aside). The environment is pickled
whole; MinAtar and classic-control envs are plain Python objects. ale-py's ``AtariEnv`` is
stored as its emulator state (``cloneState(include_rng=True)``, which carries the
sticky-action RNG) plus its numpy generators, and restored into a freshly made env, which is
exact too (tested on ALE 0.12). Without the replay buffer a resume is *not* identical: the
buffer restarts empty, so the agent collects ``learning_starts`` new transitions (acting with
its current epsilon) before learning again, and the replay ratio is counted from there.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from redo.agent.config import DQNConfig
from redo.core.dormant import PAPER_TAUS, dormant_scores, dormant_summary
from redo.agent.envs import make_env
from redo.core.networks import q_network_for
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import recycle_dormant
from redo.agent.replay import ReplayBuffer, ReplaySamples
from redo.records.run import RunWriter, load_run

#: Metric columns that measure time, which differ between otherwise identical runs.
TIMING_COLUMNS: tuple[str, ...] = (
    "wall_time_s",
    "sps",
    "time/update_s",
    "time/score_s",
    "time/redo_s",
)

LossFn = Callable[[Tensor, Tensor], Tensor]

#: The TD losses by their name in :attr:`DQNConfig.loss <redo.agent.config.DQNConfig>` (huber =
#: smooth L1, as Dopamine and the MinAtar paper use).
LOSSES: dict[str, LossFn] = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A finished run: its folder (None for a throw-away run) and its tables, as loaded back
    with :func:`redo.records.run.load_run`."""

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
    if run.config != config.to_dict():
        differing = sorted(k for k in config.to_dict() if run.config.get(k) != config.to_dict()[k])
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
    with RunWriter(folder, config.to_dict(), device=device, resume=resume) as writer:
        # --- environment, networks, optimizer, replay and random streams
        env = make_env(config.env_id, seed=config.seed)
        torch.manual_seed(config.seed)
        n_actions = int(env.action_space.n)
        q_network = q_network_for(env.observation_space.shape, n_actions).to(device)
        target_network = copy.deepcopy(q_network).requires_grad_(False)
        optimizer = ElementwiseAdam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
        replay = ReplayBuffer(
            config.buffer_size, env.observation_space.shape, env.observation_space.dtype
        )
        rngs = RandomStreams.from_seed(config.seed, device)
        loss_fn = LOSSES[config.loss]
        taus = tuple(sorted({*PAPER_TAUS, config.tau}))
        state = LoopState(updates_from_env_step=config.learning_starts)
        obs, _ = env.reset()
        if writer.checkpoint is not None:
            env, obs = restore_checkpoint(
                writer.checkpoint, config, env, q_network, target_network, optimizer, replay,
                rngs, state,
            )  # fmt: skip
        bar = tqdm(
            total=config.total_steps, initial=state.env_step, disable=not progress, unit="step"
        )

        for env_step in range(state.env_step + 1, config.total_steps + 1):
            # --- act epsilon-greedily and store the transition
            epsilon = linear_epsilon(env_step - 1, config)
            if rngs.explore.random() < epsilon:
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
                    batch = replay.sample(config.batch_size, rngs.replay)
                    loss, q_mean = td_update(
                        q_network, target_network, optimizer, batch, config.gamma, loss_fn
                    )
                    state.time_update_s += time.perf_counter() - tic
                    state.grad_step += 1
                    state.loss_sum += loss
                    state.q_sum += q_mean
                    state.updates += 1

                    # ReDo: recycle the online network's dormant neurons every F steps
                    if config.redo and state.grad_step % config.redo_period == 0:
                        tic = time.perf_counter()
                        x = replay.sample_observations(config.score_batch_size, rngs.replay)
                        report = recycle_dormant(
                            q_network, optimizer, torch.as_tensor(x, device=device),
                            config.tau, init=config.redo_init, bias=config.redo_bias,
                            step_mode=config.redo_step_mode, generator=rngs.redo,
                        )  # fmt: skip
                        state.time_redo_s += time.perf_counter() - tic
                        state.redo_calls += 1
                        state.recycled += report.total
                        state.recycled_total += report.total

                    if state.grad_step % config.log_interval == 0:
                        tic = time.perf_counter()
                        x = replay.sample_observations(config.score_batch_size, rngs.log)
                        dormant = dormant_columns(
                            q_network, torch.as_tensor(x, device=device), taus
                        )
                        state.time_score_s += time.perf_counter() - tic
                        row = metrics_row(state, dormant, epsilon)
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
                    config, env, obs, q_network, target_network, optimizer, replay, rngs, state
                )
                writer.save_checkpoint(snapshot)
        bar.close()
        env.close()


# --- the pieces of the loop ---------------------------------------------------------------


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


@torch.no_grad()
def greedy_action(q_network: nn.Module, obs: np.ndarray, device: torch.device) -> int:
    """The action with the highest Q-value for one observation."""
    q_values = q_network(torch.as_tensor(obs, device=device).unsqueeze(0))
    return int(q_values.argmax(dim=1).item())


def td_update(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ReplaySamples,
    gamma: float,
    loss_fn: LossFn,
) -> tuple[float, float]:
    """One gradient step on the one-step TD error; returns the loss and the mean Q of the
    actions taken. The target bootstraps from the target network unless the episode
    terminated (a truncated transition is never sampled: see :mod:`redo.agent.replay`)."""
    device = next(q_network.parameters()).device
    obs = torch.as_tensor(batch.observations, device=device)
    actions = torch.as_tensor(batch.actions, device=device)
    rewards = torch.as_tensor(batch.rewards, device=device)
    next_obs = torch.as_tensor(batch.next_observations, device=device)
    not_done = 1.0 - torch.as_tensor(batch.terminated, device=device, dtype=torch.float32)
    with torch.no_grad():
        td_target = rewards + gamma * not_done * target_network(next_obs).max(dim=1).values
    q_taken = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    loss = loss_fn(q_taken, td_target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), q_taken.detach().mean().item()


def dormant_columns(
    q_network: nn.Module, x: Tensor, taus: tuple[float, ...] = PAPER_TAUS
) -> dict[str, float]:
    """Dormant fractions on the batch ``x``: overall (``dormant/tau=0.1``, all layers' neurons
    pooled, as the paper plots), per layer (``dormant/tau=0.1/fc1``) and the mean of the layer
    fractions (``dormant_mean_layer/tau=0.1``)."""
    return dormant_columns_from_scores(dormant_scores(q_network, x), taus)


def dormant_columns_from_scores(
    scores: Mapping[str, Tensor], taus: tuple[float, ...] = PAPER_TAUS
) -> dict[str, float]:
    """The columns of :func:`dormant_columns` from scores already computed (the population
    scores all its agents in one pass)."""
    summary = dormant_summary(scores, taus)
    columns: dict[str, float] = {}
    for tau in taus:
        key = f"tau={tau:g}"
        columns[f"dormant/{key}"] = summary.fraction(tau)
        columns[f"dormant_mean_layer/{key}"] = summary.mean_layer_fraction(tau)
        for layer in summary.layers:
            columns[f"dormant/{key}/{layer}"] = summary.fraction(tau, layer)
    return columns


def metrics_row(state: LoopState, dormant: dict[str, float], epsilon: float) -> dict[str, Any]:
    """One metrics row for the interval that ends now."""
    elapsed = time.perf_counter() - state.clock_start
    return {
        "env_step": state.env_step,
        "grad_step": state.grad_step,
        **dormant,
        "redo/recycled": state.recycled,
        "redo/recycled_total": state.recycled_total,
        "redo/calls": state.redo_calls,
        "loss": state.loss_sum / state.updates if state.updates else math.nan,
        "q_mean": state.q_sum / state.updates if state.updates else math.nan,
        "epsilon": epsilon,
        "episodes": len(state.returns),
        "return_mean": float(np.mean(state.returns)) if state.returns else math.nan,
        "sps": (state.env_step - state.clock_env_step) / elapsed if elapsed > 0 else math.nan,
        "time/update_s": state.time_update_s,
        "time/score_s": state.time_score_s,
        "time/redo_s": state.time_redo_s,
    }


# --- state that a checkpoint carries --------------------------------------------------------


@dataclass
class RandomStreams:
    """Independent random generators, so that no consumer shifts another's draws."""

    #: training batches and ReDo's score batches
    replay: np.random.Generator
    #: score batches of the logged dormant fractions
    log: np.random.Generator
    #: epsilon-greedy's coin (random actions come from the env's seeded action space)
    explore: np.random.Generator
    #: ReDo's new incoming weights
    redo: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> RandomStreams:
        replay, log, explore, redo = np.random.SeedSequence(seed).spawn(4)
        redo_generator = torch.Generator(device=device)
        redo_generator.manual_seed(int(redo.generate_state(1)[0]))
        return cls(
            replay=np.random.default_rng(replay),
            log=np.random.default_rng(log),
            explore=np.random.default_rng(explore),
            redo=redo_generator,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "replay": self.replay.bit_generator.state,
            "log": self.log.bit_generator.state,
            "explore": self.explore.bit_generator.state,
            "redo": self.redo.get_state(),
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replay.bit_generator.state = state["replay"]
        self.log.bit_generator.state = state["log"]
        self.explore.bit_generator.state = state["explore"]
        self.redo.set_state(state["redo"])
        torch.set_rng_state(state["torch"])


@dataclass
class LoopState:
    """The loop's counters and running sums: everything an exact resume needs besides the
    networks, optimizer, generators, env and replay."""

    env_step: int = 0
    grad_step: int = 0
    #: updates_due counts from here: learning_starts, or a resume that refills the replay
    updates_from_env_step: int = 0
    updates_from_grad_step: int = 0
    redo_calls: int = 0
    recycled_total: int = 0
    time_update_s: float = 0.0
    time_score_s: float = 0.0
    time_redo_s: float = 0.0
    # the current logging interval
    loss_sum: float = 0.0
    q_sum: float = 0.0
    updates: int = 0
    recycled: int = 0
    returns: list[float] = field(default_factory=list)
    # wall clock of the interval (not saved: a resumed run measures its own speed)
    clock_start: float = field(default_factory=time.perf_counter)
    clock_env_step: int = 0

    _UNSAVED = ("clock_start", "clock_env_step")

    def start_interval(self) -> None:
        self.loss_sum = self.q_sum = 0.0
        self.updates = self.recycled = 0
        self.returns = []
        self.clock_start, self.clock_env_step = time.perf_counter(), self.env_step

    def refill_before_learning(self, learning_starts: int) -> None:
        """Learn again only after ``learning_starts`` new transitions, and count the replay
        ratio from there: a resume without its replay buffer restarts with an empty one."""
        self.updates_from_env_step = self.env_step + learning_starts
        self.updates_from_grad_step = self.grad_step

    def last_return(self) -> float:
        return self.returns[-1] if self.returns else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._UNSAVED}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name not in self._UNSAVED:
                setattr(self, f.name, copy.copy(state[f.name]))
        self.clock_start, self.clock_env_step = time.perf_counter(), self.env_step


def checkpoint_state(
    config: DQNConfig,
    env: gym.Env,
    obs: np.ndarray,
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    replay: ReplayBuffer,
    rngs: RandomStreams,
    state: LoopState,
) -> dict[str, Any]:
    """Everything :func:`restore_checkpoint` needs to continue the run exactly."""
    return {
        "env_step": state.env_step,
        "loop": state.state_dict(),
        "q_network": q_network.state_dict(),
        "target_network": target_network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rngs": rngs.state_dict(),
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
    rngs: RandomStreams,
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
    rngs.load_state_dict(checkpoint["rngs"])
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


# --- environments in a checkpoint -----------------------------------------------------------


def snapshot_env(env: gym.Env) -> bytes:
    """The live environment as bytes, so that a resumed run continues the same episode.

    MinAtar and classic-control envs pickle whole, random generators included. ale-py's
    ``AtariEnv`` pickles as its constructor arguments (gymnasium's ``EzPickle``), which would
    restart the game, so it is stored as its emulator state, taken with
    ``cloneState(include_rng=True)`` (which carries the sticky-action RNG), and the states of
    its numpy generators; :func:`restore_env` writes them into a fresh env's ``AtariEnv``.
    cloudpickle, not pickle: gymnasium's ``ReshapeObservation`` holds a lambda.
    """
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


@contextlib.contextmanager
def _run_folder(out_dir: str | Path | None) -> Iterator[Path]:
    """``out_dir``, or a temporary folder removed on exit."""
    if out_dir is not None:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="redo-run-") as tmp:
        yield Path(tmp)


__all__ = [
    "TIMING_COLUMNS",
    "LoopState",
    "RandomStreams",
    "TrainResult",
    "checkpoint_state",
    "dormant_columns",
    "dormant_columns_from_scores",
    "dqn_loop",
    "greedy_action",
    "linear_epsilon",
    "metrics_row",
    "restore_checkpoint",
    "restore_env",
    "snapshot_env",
    "td_update",
    "train",
    "train_or_load",
    "updates_due",
]
