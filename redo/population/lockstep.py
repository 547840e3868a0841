"""Many agents at once: K independent DQN (+ ReDo) agents trained in lockstep in one process.

:func:`train_population` runs what :func:`redo.agent.dqn.train` runs, for K agents whose
networks have the same shape, and writes K run folders that cannot be told apart from single
runs (same record format, same metric columns, each holding its agent's own
:meth:`DQNConfig.to_dict() <redo.agent.config.DQNConfig.to_dict>`), except that their records
name the population they were trained in. Next to them, ``population.json`` records the
population's own timing.

**Agent i of a population is the single run with its settings.** Its network is initialised,
its environment seeded, and every random draw (exploration, replay slots, the score batches
of ReDo and of the logs, ReDo's new weights) made from its own streams
(:mod:`redo.agent.streams`), in the order the single loop makes them, so it draws exactly
the numbers :func:`redo.agent.dqn.train` draws with its config, whatever the population's
size, its position or the other agents' seeds and ReDo switches. What can differ is float
rounding: the population computes the agents' networks as batched matrix products
(:mod:`redo.population.networks`), which round differently in the last bits from the single
loop's layers; the metrics agree to float tolerance until a greedy action flips on a near
tie, after which the trajectories part (tested).

**What may differ between agents**: :data:`PER_AGENT_SETTINGS` (``seed``, ``redo``, ``tau``
and ``lr``). Every other setting shapes what the agents share (the network, the batch and
buffer shapes, the replay ratio and so the update schedule, the ReDo variant and period, the
logging) and must be equal; :func:`check_population` says which one is not.

**Timing columns.** ``time/update_s``, ``time/score_s`` and ``time/redo_s`` of each agent's
metrics hold the population's cumulative times (one update serves every agent), and ``sps``
is env steps per second per agent. On a GPU, launched work is timed where the host next waits
for it (mostly when the greedy actions come back to the host, in ``act``).

**Checkpoints and resume.** Every ``checkpoint_interval`` env steps and at the end, the
population writes one ``checkpoint.pt`` in its own folder, atomically, holding every agent's
state (parameters, target parameters, Adam state, replay storage if
``save_replay_in_checkpoint``, environment, observation, streams, loop counters and running
sums). The agents' tables are made durable first, so an interruption at any moment, even in
the middle of the write, leaves the last complete checkpoint and rows that reach at least as
far: ``train_population(..., resume=True)`` truncates the rows to the checkpoint and continues
*exactly* (:func:`check_resumable` lists what a resume needs). Without the replay buffer the
agents collect ``learning_starts`` new transitions before learning again, as
:mod:`redo.agent.dqn` does. ``population.json`` is written when the population finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from redo.agent.config import ConfigError, DQNConfig, differing_settings
from redo.agent.dqn import TrainResult, logged_taus
from redo.agent.env_state import restore_env, snapshot_env
from redo.agent.envs import make_env
from redo.agent.metrics import LoopState, dormant_columns_from_scores, metrics_row
from redo.agent.schedule import linear_epsilon, updates_due
from redo.agent.streams import AgentStreams
from redo.core.recycle import select_neurons
from redo.population.learner import PopulationLearner
from redo.population.replay import PopulationReplay
from redo.records.reader import load_run
from redo.records.record import RUN_FILES, read_record
from redo.records.storage import atomic_write
from redo.records.writer import RunWriter

#: Settings that may differ between the agents of a population.
PER_AGENT_SETTINGS: tuple[str, ...] = ("seed", "redo", "tau", "lr")

#: The population's timing record, next to the agents' run folders.
POPULATION_FILE = "population.json"
#: The population's checkpoint, in its folder: every agent's state, written atomically.
POPULATION_CHECKPOINT = "checkpoint.pt"

#: Parts of the population's wall time in ``population.json``.
TIME_PARTS: tuple[str, ...] = ("act", "env", "store", "update", "redo", "score", "checkpoint")


@dataclass(frozen=True, eq=False)
class PopulationResult:
    """A finished population: its folder, each agent's run as loaded back, and the timing
    written to ``population.json``."""

    folder: Path
    agents: tuple[TrainResult, ...]
    timing: dict[str, Any]


def train_population(
    configs: Sequence[DQNConfig],
    out_dir: str | Path,
    device: str | torch.device | None = None,
    progress: bool = False,
    run_folders: Sequence[str | Path] | None = None,
    resume: bool = False,
) -> PopulationResult:
    """Train one agent per config in lockstep and write one run folder per agent.

    Args:
        configs: one :class:`DQNConfig` per agent; only :data:`PER_AGENT_SETTINGS` may differ.
        out_dir: the population's folder: agent i's run goes to ``out_dir/agent_<i>`` (unless
            ``run_folders`` says otherwise); the checkpoint and the timing go here too. Its
            name is the population's id in the runs' records. Runs are never overwritten.
        device: where the networks and replay live; None uses the configs' ``device``.
            Another device replaces every config's ``device`` (the runs record the one used).
        progress: show a tqdm bar with the population's aggregate speed.
        run_folders: one run folder per agent, e.g. a sweep's ``<env>/<method>-rr<r>-s<seed>``
            folders, so that where a run lies does not depend on which population trained it.
        resume: continue the interrupted population in these folders from its checkpoint
            (:func:`check_resumable` says why one cannot), with the configs, agent order and
            ``run_folders`` it was started with.
    """
    if device is not None:
        configs = [c.replace(device=str(torch.device(device))) for c in configs]
    check_population(configs)
    folder = Path(out_dir)
    folders = _agent_folders(folder, len(configs), run_folders)
    checkpoint = check_resumable(folder, folders, configs) if resume else None
    if checkpoint is None:
        _check_new(folder, folders)
    resume_at = None if checkpoint is None else checkpoint["env_step"]
    with contextlib.ExitStack() as stack:
        writers = []
        for i, (run_folder, config) in enumerate(zip(folders, configs, strict=True)):
            population = {"id": folder.name, "size": len(configs), "index": i}
            writer = RunWriter(run_folder, config.to_dict(), config.device, resume_at, population)
            writers.append(stack.enter_context(writer))
        envs = [make_env(c.env_id, seed=c.seed) for c in configs]
        for env in envs:
            stack.callback(env.close)
        loop = Lockstep(configs, envs, writers, folder)
        if checkpoint is not None:
            loop.restore(checkpoint)
        loop.run(progress)
    timing = loop.timing()
    (folder / POPULATION_FILE).write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    runs = [load_run(f) for f in folders]
    agents = tuple(
        TrainResult(folder=f, config=c, record=r.record, metrics=r.metrics, episodes=r.episodes)
        for f, c, r in zip(folders, configs, runs, strict=True)
    )
    return PopulationResult(folder=folder, agents=agents, timing=timing)


def _agent_folders(
    folder: Path, agents: int, run_folders: Sequence[str | Path] | None
) -> list[Path]:
    """``run_folders``, or ``folder/agent_<i>``."""
    if run_folders is None:
        return [folder / agent_folder_name(i, agents) for i in range(agents)]
    if len(run_folders) != agents:
        raise ValueError(
            f"run_folders has {len(run_folders)} folders for {agents} configs: "
            "give one run folder per agent"
        )
    return [Path(f) for f in run_folders]


def _check_new(folder: Path, folders: Sequence[Path]) -> None:
    """Refuse to start a population over any run or population record."""
    taken = [str(f) for f in folders if any((f / name).exists() for name in RUN_FILES)]
    taken += [
        str(folder / n) for n in (POPULATION_FILE, POPULATION_CHECKPOINT) if (folder / n).exists()
    ]
    if taken:
        raise FileExistsError(
            f"{folder} already holds a population ({taken}): choose another out_dir, or pass "
            "resume=True to continue an interrupted one; runs are never overwritten"
        )


def check_resumable(
    folder: Path, folders: Sequence[Path], configs: Sequence[DQNConfig]
) -> dict[str, Any]:
    """The population's checkpoint, if ``folders`` hold the unfinished runs of the population
    in ``folder`` with ``configs``, in its agent order; else raise, naming what is wrong.

    Every check comes before any run is opened, because opening one to resume it already
    changes it (it drops the rows logged after the checkpoint and starts a new segment): a
    population that cannot resume is left as it was.
    """
    if (folder / POPULATION_FILE).exists():
        raise FileExistsError(
            f"{folder} holds a finished population ({POPULATION_FILE}): nothing to resume, "
            "and finished runs are never overwritten"
        )
    path = folder / POPULATION_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume the population in {folder}: it holds no {POPULATION_CHECKPOINT} "
            "(a population interrupted before its first checkpoint starts again, in new folders)"
        )
    records = [read_record(f) for f in folders]
    finished = [str(f) for f, r in zip(folders, records, strict=True) if r["status"] == "finished"]
    if finished:
        raise FileExistsError(
            f"cannot resume the population: {finished} hold finished runs, which are never "
            "overwritten"
        )
    differing = {
        str(f): keys
        for f, r, c in zip(folders, records, configs, strict=True)
        if (keys := differing_settings(r["config"], c))
    }
    if differing:
        raise ValueError(
            f"cannot resume the population: the configs differ from those stored in {differing}; "
            "resume it with the configs it was started with"
        )
    misplaced = {
        str(f): r["population"]
        for i, (f, r) in enumerate(zip(folders, records, strict=True))
        if r["population"] != {"id": folder.name, "size": len(folders), "index": i}
    }
    if misplaced:
        raise ValueError(
            f"cannot resume the population {folder.name}: {misplaced} were not trained as these "
            f"agents of it; give the configs and run_folders in the order and number the "
            "population was started with"
        )
    return torch.load(path, map_location="cpu", weights_only=False)


def check_population(configs: Sequence[DQNConfig]) -> None:
    """Raise :class:`redo.agent.config.ConfigError` (a ValueError) naming the first setting
    that must be shared but differs."""
    if not configs:
        raise ValueError("configs is empty: a population needs at least one DQNConfig")
    for i, config in enumerate(configs):
        if not isinstance(config, DQNConfig):
            raise TypeError(f"configs[{i}] must be a DQNConfig, got {type(config).__name__}")
    first = configs[0]
    for field in dataclasses.fields(DQNConfig):
        if field.name in PER_AGENT_SETTINGS:
            continue
        for i, config in enumerate(configs[1:], 1):
            if getattr(config, field.name) != getattr(first, field.name):
                raise ConfigError(
                    field.name,
                    f"{field.name} must be the same for every agent of a population, but "
                    f"agent 0 has {getattr(first, field.name)!r} and agent {i} has "
                    f"{getattr(config, field.name)!r}; only {list(PER_AGENT_SETTINGS)} may differ",
                )


def agent_folder_name(agent: int, agents: int) -> str:
    """``agent_07``: zero-padded so that folders sort in agent order."""
    return f"agent_{agent:0{max(2, len(str(agents - 1)))}d}"


class Lockstep:
    """The population's training loop: :func:`train_population` without the file handling.

    One instance runs once; its parts (:attr:`learner`, :attr:`replay`) are the objects a
    benchmark times. The loop reads like :func:`redo.agent.dqn.dqn_loop`, for K agents.
    """

    def __init__(
        self,
        configs: Sequence[DQNConfig],
        envs: Sequence[gym.Env],
        writers: Sequence[RunWriter],
        folder: Path,
    ) -> None:
        self.configs = list(configs)
        self.config = configs[0]  # the shared settings
        self.envs = list(envs)
        self.writers = list(writers)
        self.folder = folder
        self.agents = len(configs)
        self.device = torch.device(self.config.device)
        space = envs[0].observation_space
        n_actions = int(envs[0].action_space.n)
        self.streams = [AgentStreams.from_seed(c.seed, self.device) for c in configs]
        self.learner = PopulationLearner.for_configs(configs, space.shape, n_actions, self.device)
        self.replay = PopulationReplay(
            self.agents,
            self.config.buffer_size,
            space.shape,
            torch.from_numpy(np.empty(0, dtype=space.dtype)).dtype,
            self.device,
        )
        self.states = [LoopState(updates_from_env_step=c.learning_starts) for c in configs]
        self.taus = [logged_taus(c) for c in configs]
        self.recycling = [i for i, c in enumerate(configs) if c.redo]
        self.loss_sum = torch.zeros(self.agents, device=self.device)
        self.q_sum = torch.zeros(self.agents, device=self.device)
        self.seconds = dict.fromkeys(TIME_PARTS, 0.0)
        self.wall_time_s = 0.0
        #: the env step every agent has made
        self.env_step = 0
        #: the observations a restored population continues from (None: reset the envs)
        self.obs: np.ndarray | None = None

    def run(self, progress: bool = False) -> None:
        """Train every agent up to ``total_steps`` env steps (from a restored step, if any),
        checkpointing as :func:`redo.agent.dqn.dqn_loop` does."""
        start, earlier_s, first = time.perf_counter(), self.wall_time_s, self.env_step
        total = self.config.total_steps
        bar = tqdm(total=total, initial=first, disable=not progress, unit="step")
        obs = np.stack([env.reset()[0] for env in self.envs]) if self.obs is None else self.obs
        for env_step in range(first + 1, total + 1):
            with self._timed("act"):
                actions, epsilons = self.act(obs, env_step)
            obs = self.step_envs(obs, actions, env_step)
            self.env_step = env_step
            # learning_starts, the replay ratio and a resume's refill are shared by every agent
            if env_step > self.states[0].updates_from_env_step:
                self.learn(env_step, epsilons)
                if env_step % self.config.target_update_period == 0:
                    self.learner.sync_target()
            bar.update()
            elapsed = time.perf_counter() - start
            if progress and env_step % 1000 == 0:
                sps = self.agents * (env_step - first) / elapsed
                bar.set_postfix(sps=f"{sps:.0f}", refresh=False)
            if env_step % self.config.checkpoint_interval == 0 or env_step == total:
                self.wall_time_s = earlier_s + elapsed
                with self._timed("checkpoint"):
                    self.save_checkpoint(obs)
        bar.close()
        self.wall_time_s = earlier_s + time.perf_counter() - start

    def act(self, obs: np.ndarray, env_step: int) -> tuple[np.ndarray, list[float]]:
        """Epsilon-greedy actions of every agent, drawn as the single loop draws them."""
        epsilons = [linear_epsilon(env_step - 1, c) for c in self.configs]
        explore = [s.explore.random() < eps for s, eps in zip(self.streams, epsilons, strict=True)]
        actions = np.zeros(self.agents, dtype=np.int64)
        if not all(explore):
            greedy = self.learner.greedy_actions(torch.as_tensor(obs, device=self.device))
            actions[:] = greedy.cpu().numpy()
        for i in np.flatnonzero(explore):
            actions[i] = self.envs[i].action_space.sample()
        return actions, epsilons

    def step_envs(self, obs: np.ndarray, actions: np.ndarray, env_step: int) -> np.ndarray:
        """Step every env, log finished episodes, store the transitions; return the next
        observations (a reset's where an episode ended)."""
        with self._timed("env"):
            stored_next = np.empty_like(obs)
            following = np.empty_like(obs)
            rewards = np.zeros(self.agents, dtype=np.float32)
            terminated = np.zeros(self.agents, dtype=bool)
            truncated = np.zeros(self.agents, dtype=bool)
            for i, env in enumerate(self.envs):
                next_obs, reward, terminated[i], truncated[i], info = env.step(int(actions[i]))
                rewards[i] = reward
                stored_next[i] = next_obs
                if "episode" in info:  # the raw score, before any reward clipping
                    episode_return = float(info["episode"]["r"])
                    self.writers[i].log_episode(env_step, episode_return, int(info["episode"]["l"]))
                    self.states[i].returns.append(episode_return)
                following[i] = env.reset()[0] if terminated[i] or truncated[i] else next_obs
        with self._timed("store"):
            self.replay.add(obs, actions, rewards, stored_next, terminated, truncated)
        return following

    def learn(self, env_step: int, epsilons: Sequence[float]) -> None:
        """The gradient steps the shared replay ratio owes after ``env_step``, each followed
        by the ReDo resets and metric rows that are due."""
        state = self.states[0]  # every agent has made the same gradient steps
        due = updates_due(
            env_step - state.updates_from_env_step,
            self.config.replay_ratio,
            state.grad_step - state.updates_from_grad_step,
        )
        for _ in range(due):
            with self._timed("update"):
                batch = self.replay.sample(self.config.batch_size, [s.replay for s in self.streams])
                stats = self.learner.update(batch)
                self.loss_sum += stats.loss
                self.q_sum += stats.q_mean
            for agent_state in self.states:
                agent_state.env_step = env_step
                agent_state.grad_step += 1
                agent_state.updates += 1
            grad_step = state.grad_step
            reset_scores = self._recycle() if grad_step % self.config.redo_period == 0 else {}
            if grad_step % self.config.log_interval == 0:
                self._log_metrics(epsilons, reset_scores)

    def _recycle(self) -> dict[int, dict[str, torch.Tensor]]:
        """ReDo for every agent that recycles; returns each one's scores, taken before its
        reset on the batch that decided it."""
        if not self.recycling:
            return {}
        config = self.config
        with self._timed("redo"):
            rngs = [self.streams[i].redo_batch for i in self.recycling]
            if config.redo_score == "activation":
                x = self.replay.sample_observations(config.score_batch_size, self.recycling, rngs)
                selecting = logged = self.learner.scores(x, self.recycling)
            else:  # the gradient score, on transitions of the same slots
                batch = self.replay.sample(config.score_batch_size, rngs, self.recycling)
                logged = self.learner.scores(batch.observations, self.recycling)
                selecting = self.learner.gradient_scores(batch, self.recycling)
            by_agent = {}
            for j, i in enumerate(self.recycling):
                agent_scores = {name: s[j] for name, s in selecting.items()}
                generator = self.streams[i].redo_weights
                masks = select_neurons(
                    agent_scores, self.configs[i].tau, config.redo_selection, generator
                )
                self.learner.reset(
                    i, masks, init=config.redo_init, bias=config.redo_bias,
                    step_mode=config.redo_step_mode,
                    whole_network=config.redo_selection == "all", generator=generator,
                )  # fmt: skip
                self.states[i].count_recycled(masks)
                by_agent[i] = {name: s[j] for name, s in logged.items()}
        return by_agent

    def _log_metrics(
        self, epsilons: Sequence[float], reset_scores: Mapping[int, Mapping[str, torch.Tensor]]
    ) -> None:
        """One metrics row per agent; the agents that just recycled report the scores that
        decided their reset, the others score a batch of their own."""
        with self._timed("score"):
            others = [i for i in range(self.agents) if i not in reset_scores]
            scores = {i: dict(s) for i, s in reset_scores.items()}
            if others:
                x = self.replay.sample_observations(
                    self.config.score_batch_size,
                    others,
                    [self.streams[i].log_batch for i in others],
                )
                fresh = self.learner.scores(x, others)
                scores |= {i: {n: s[j] for n, s in fresh.items()} for j, i in enumerate(others)}
            loss_sum, q_sum = self.loss_sum.tolist(), self.q_sum.tolist()
        for i, state in enumerate(self.states):
            state.loss_sum, state.q_sum = loss_sum[i], q_sum[i]
            state.time_update_s = self.seconds["update"]
            state.time_score_s = self.seconds["score"]
            state.time_redo_s = self.seconds["redo"]
            agent_scores = {n: s.cpu() for n, s in scores[i].items()}
            dormant = dormant_columns_from_scores(agent_scores, self.taus[i])
            self.writers[i].log_metrics(metrics_row(state, dormant, epsilons[i], i in reset_scores))
            state.start_interval()
        self.loss_sum.zero_()
        self.q_sum.zero_()

    # --- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, obs: np.ndarray) -> None:
        """Write the population's checkpoint (see the module docstring); ``obs`` are the
        current observations. The agents' rows are made durable first."""
        keep_replay = self.config.save_replay_in_checkpoint
        for writer, agent_state in zip(self.writers, self.states, strict=True):
            writer.sync()
            agent_state.env_step = self.env_step  # where a resume's refill counts from
        state = {
            "env_step": self.env_step,
            "agents": self.agents,
            "learner": self.learner.state_dict(),
            "seconds": dict(self.seconds),
            "wall_time_s": self.wall_time_s,
            "loss_sum": self.loss_sum.cpu(),
            "q_sum": self.q_sum.cpu(),
            "per_agent": [
                {
                    "loop": self.states[i].state_dict(),
                    "streams": self.streams[i].state_dict(),
                    "env": snapshot_env(self.envs[i]),
                    "obs": obs[i],
                    "replay": self.replay.agent_state_dict(i) if keep_replay else None,
                }
                for i in range(self.agents)
            ],
        }
        atomic_write(self.folder / POPULATION_CHECKPOINT, lambda f: torch.save(state, f))
        for writer in self.writers:
            writer.mark(self.env_step)

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a :meth:`save_checkpoint` checkpoint."""
        self.learner.load_state_dict(checkpoint["learner"])
        for i, agent in enumerate(checkpoint["per_agent"]):
            self.states[i].load_state_dict(agent["loop"])
            self.streams[i].load_state_dict(agent["streams"])
            self.envs[i] = restore_env(agent["env"], self.envs[i])
            if agent["replay"] is not None:
                self.replay.load_agent_state_dict(i, agent["replay"])
            else:
                self.states[i].refill_before_learning(self.configs[i].learning_starts)
        self.loss_sum.copy_(checkpoint["loss_sum"])
        self.q_sum.copy_(checkpoint["q_sum"])
        self.seconds = dict.fromkeys(TIME_PARTS, 0.0) | checkpoint["seconds"]
        self.wall_time_s = checkpoint["wall_time_s"]
        self.env_step = checkpoint["env_step"]
        self.obs = np.stack([agent["obs"] for agent in checkpoint["per_agent"]])

    def timing(self) -> dict[str, Any]:
        """The population's record: size, device, wall time, aggregate speed, time split."""
        steps = self.config.total_steps
        return {
            "agents": self.agents,
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "env_steps_per_agent": steps,
            "wall_time_s": self.wall_time_s,
            "env_steps_per_s": self.agents * steps / self.wall_time_s if self.wall_time_s else None,
            "time_s": dict(self.seconds),
        }

    @contextlib.contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - tic


__all__ = [
    "PER_AGENT_SETTINGS",
    "POPULATION_CHECKPOINT",
    "POPULATION_FILE",
    "TIME_PARTS",
    "Lockstep",
    "PopulationResult",
    "agent_folder_name",
    "check_population",
    "check_resumable",
    "train_population",
]
