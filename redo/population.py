"""Many agents at once: K independent DQN (+ ReDo) agents trained in lockstep in one process.

:func:`train_population` runs what :func:`redo.dqn.train` runs, for K agents whose networks
have the same shape, and writes K run folders that cannot be told apart from single runs:
same record format, same metric columns, each holding its agent's own
:meth:`DQNConfig.to_dict() <redo.config.DQNConfig.to_dict>`. Next to them,
``population.json`` records the population's own timing.

**What is per agent.** Seed, initial parameters (built exactly as the single loop builds
them), environment (:func:`redo.envs.make_env` with the agent's seed), replay storage,
epsilon schedule and coin (the single loop's ``explore`` stream), optimizer state, target
network, gradient-step count and logs. The settings that may differ between agents are
:data:`PER_AGENT_SETTINGS`: ``seed``, ``redo``, ``tau``, ``lr`` and ``replay_ratio``. Every
other setting shapes what the agents share (the network, the batch and buffer shapes, the
env-step schedule) and must be equal; :func:`check_population` says which one is not.

**How.** The networks are stacked tensors updated by one ``vmap`` over the agents
(:class:`redo.population_learner.PopulationLearner`); replay lives on the training device
(:class:`redo.population_replay.PopulationReplay`); the environments step through one
``gymnasium.vector.SyncVectorEnv`` in ``SAME_STEP`` autoreset mode, whose ``final_obs``
gives the true last observation of an episode, so the final transition is stored as the
single loop stores it (terminated: no bootstrap; truncated: never sampled). Each env step,
every agent makes the gradient steps its replay ratio owes (:func:`redo.dqn.updates_due`) in
rounds: round r updates the agents that owe more than r steps, and an agent left out keeps
its parameters and optimizer state exactly. ReDo and the logged dormant fractions follow
each agent's own gradient-step count, as in the single loop.

**Random streams.** Acting uses each agent's own streams, as the single loop does. Replay
minibatches, ReDo's score batches and new weights, and the logged score batches come from
three ``torch.Generator`` on the device, seeded from ``seed`` (the first agent's seed by
default): every draw holds one row per agent, so agent i's draws do not depend on the other
agents' seeds, ReDo switch or data. They depend on how many rounds the population runs, so an
agent's run is exactly independent of the others when they share its replay ratio (the
rounds are then the same); otherwise its batches are as random, but not the same draws.
Unlike :func:`redo.dqn.train`, ReDo's score batches do not come from the replay stream: a
stream shared by agents must not advance with another agent's ReDo switch.

**Timing columns.** ``time/update_s``, ``time/score_s`` and ``time/redo_s`` of each agent's
metrics hold the population's cumulative times (one update serves every agent), and
``sps`` is env steps per second per agent. On a GPU, launched work is timed where the host
next waits for it (mostly when the greedy actions come back to the host, in ``act``).

Checkpoints and resume are not supported for a population (the agents' folders hold no
``checkpoint.pt``); train a single agent with :func:`redo.dqn.train` to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tqdm import tqdm

from redo.config import ConfigError, DQNConfig
from redo.dormant import PAPER_TAUS
from redo.dqn import (
    LoopState,
    RandomStreams,
    TrainResult,
    dormant_columns_from_scores,
    linear_epsilon,
    metrics_row,
    updates_due,
)
from redo.envs import make_env
from redo.population_learner import POPULATION_INITS, PopulationLearner
from redo.population_replay import PopulationReplay
from redo.results import RUN_FILES, RunWriter, load_run

#: Settings that may differ between the agents of a population.
PER_AGENT_SETTINGS: tuple[str, ...] = ("seed", "redo", "tau", "lr", "replay_ratio")

#: The population's timing record, next to the agents' run folders.
POPULATION_FILE = "population.json"

#: Parts of the population's wall time in ``population.json``.
TIME_PARTS: tuple[str, ...] = ("act", "env", "store", "update", "redo", "score")


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
    seed: int | None = None,
    run_folders: Sequence[str | Path] | None = None,
) -> PopulationResult:
    """Train one agent per config in lockstep and write one run folder per agent.

    Args:
        configs: one :class:`DQNConfig` per agent; only :data:`PER_AGENT_SETTINGS` may differ.
        out_dir: the population's folder: agent i's run goes to ``out_dir/agent_<i>`` (unless
            ``run_folders`` says otherwise), the timing to ``out_dir/population.json``.
            Existing runs are never overwritten.
        device: where the networks and replay live; None uses the configs' ``device``.
            Another device replaces every config's ``device`` (the runs record the one used).
        progress: show a tqdm bar with the population's aggregate speed.
        seed: seeds the population's shared random streams (see the module docstring);
            None uses the first agent's seed.
        run_folders: one run folder per agent, e.g. a sweep's ``<env>/<method>-rr<r>-s<seed>``
            folders, so that where a run lies does not depend on which population trained it.
    """
    if device is not None:
        configs = [c.replace(device=str(torch.device(device))) for c in configs]
    check_population(configs)
    folder = Path(out_dir)
    if run_folders is None:
        folders = [folder / agent_folder_name(i, len(configs)) for i in range(len(configs))]
    elif len(run_folders) != len(configs):
        raise ValueError(
            f"run_folders has {len(run_folders)} folders for {len(configs)} configs: "
            "give one run folder per agent"
        )
    else:
        folders = [Path(f) for f in run_folders]
    taken = [str(f) for f in folders if any((f / name).exists() for name in RUN_FILES)]
    if taken or (folder / POPULATION_FILE).exists():
        raise FileExistsError(
            f"{folder} already holds a population ({taken or POPULATION_FILE}): choose another "
            "out_dir; runs are never overwritten"
        )
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(RunWriter(f, c.to_dict(), device=c.device))
            for f, c in zip(folders, configs, strict=True)
        ]
        envs = stack.enter_context(contextlib.closing(make_vector_env(configs)))
        loop = Lockstep(configs, envs, writers, configs[0].seed if seed is None else seed)
        loop.run(progress)
    timing = loop.timing()
    (folder / POPULATION_FILE).write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    runs = [load_run(f) for f in folders]
    agents = tuple(
        TrainResult(folder=f, config=c, record=r.record, metrics=r.metrics, episodes=r.episodes)
        for f, c, r in zip(folders, configs, runs, strict=True)
    )
    return PopulationResult(folder=folder, agents=agents, timing=timing)


def check_population(configs: Sequence[DQNConfig]) -> None:
    """Raise :class:`redo.config.ConfigError` (a ValueError) naming the first setting that
    must be shared but differs, or that a population cannot run."""
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
    if first.redo_init not in POPULATION_INITS:
        raise ConfigError(
            "redo_init",
            f"a population redraws recycled weights with redo_init in {list(POPULATION_INITS)}, "
            f"got {first.redo_init!r}",
        )
    if first.redo_bias != "zero":
        raise ConfigError(
            "redo_bias",
            f"a population sets recycled biases to 0 (redo_bias='zero'), got {first.redo_bias!r}",
        )


def agent_folder_name(agent: int, agents: int) -> str:
    """``agent_07``: zero-padded so that folders sort in agent order."""
    return f"agent_{agent:0{max(2, len(str(agents - 1)))}d}"


def make_vector_env(
    configs: Sequence[DQNConfig], env_options: Sequence[Mapping[str, Any]] | None = None
) -> SyncVectorEnv:
    """One :func:`redo.envs.make_env` per agent with its seed (and its ``env_options``, e.g.
    ``max_episode_steps``), autoresetting in the same step: ``info["final_obs"]`` then holds
    the last observation of an episode that ended, which gymnasium's default (reset on the
    next step) would hand over one step later."""
    options = env_options or [{}] * len(configs)
    return SyncVectorEnv(
        [
            functools.partial(make_env, c.env_id, c.seed, **o)
            for c, o in zip(configs, options, strict=True)
        ],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


class Lockstep:
    """The population's training loop: :func:`train_population` without the file handling.

    One instance runs once; its parts (:attr:`learner`, :attr:`replay`) are the objects a
    benchmark times.
    """

    def __init__(
        self,
        configs: Sequence[DQNConfig],
        envs: SyncVectorEnv,
        writers: Sequence[RunWriter],
        seed: int,
    ) -> None:
        self.configs = list(configs)
        self.config = configs[0]  # the shared settings
        self.envs = envs
        self.writers = list(writers)
        self.agents = len(configs)
        self.device = torch.device(self.config.device)
        self.replay_rng, self.redo_rng, self.log_rng = _generators(seed, self.device)
        space = envs.single_observation_space
        self.learner = PopulationLearner.from_configs(
            configs, space.shape, int(envs.single_action_space.n), self.device, self.redo_rng
        )
        self.replay = PopulationReplay(
            self.agents,
            self.config.buffer_size,
            space.shape,
            torch.from_numpy(np.empty(0, dtype=space.dtype)).dtype,
            self.device,
        )
        self.explore = [
            RandomStreams.from_seed(c.seed, torch.device("cpu")).explore for c in configs
        ]
        self.states = [LoopState(updates_from_env_step=c.learning_starts) for c in configs]
        self.taus = [tuple(sorted({*PAPER_TAUS, c.tau})) for c in configs]
        self.loss_sum = torch.zeros(self.agents, device=self.device)
        self.q_sum = torch.zeros(self.agents, device=self.device)
        self.seconds = dict.fromkeys(TIME_PARTS, 0.0)
        self.wall_time_s = 0.0

    def run(self, progress: bool = False) -> None:
        """Train every agent for ``total_steps`` env steps."""
        start = time.perf_counter()
        bar = tqdm(total=self.config.total_steps, disable=not progress, unit="step")
        obs, _ = self.envs.reset()
        for env_step in range(1, self.config.total_steps + 1):
            with self._timed("act"):
                actions, epsilons = self.act(obs, env_step)
            obs = self.step_envs(obs, actions, env_step)
            if env_step > self.config.learning_starts:
                self.learn(env_step, epsilons)
                if env_step % self.config.target_update_period == 0:
                    self.learner.sync_target()
            bar.update()
            if progress and env_step % 1000 == 0:
                elapsed = time.perf_counter() - start
                bar.set_postfix(sps=f"{self.agents * env_step / elapsed:.0f}", refresh=False)
        bar.close()
        self.wall_time_s = time.perf_counter() - start

    def act(self, obs: np.ndarray, env_step: int) -> tuple[np.ndarray, list[float]]:
        """Epsilon-greedy actions of every agent, drawn as the single loop draws them."""
        epsilons = [linear_epsilon(env_step - 1, c) for c in self.configs]
        explore = [rng.random() < eps for rng, eps in zip(self.explore, epsilons, strict=True)]
        actions = np.zeros(self.agents, dtype=np.int64)
        if not all(explore):
            obs_tensor = torch.as_tensor(obs, device=self.device)
            actions[:] = self.learner.greedy_actions(obs_tensor).cpu().numpy()
        for i in np.flatnonzero(explore):
            actions[i] = self.envs.envs[i].action_space.sample()
        return actions, epsilons

    def step_envs(self, obs: np.ndarray, actions: np.ndarray, env_step: int) -> np.ndarray:
        """Step every env, log finished episodes, store the transitions; return the next
        observations (a reset's where an episode ended)."""
        with self._timed("env"):
            next_obs, rewards, terminated, truncated, info = self.envs.step(actions)
            stored_next = next_obs
            if "final_obs" in info:
                stored_next = next_obs.copy()
                for i in np.flatnonzero(info["_final_obs"]):
                    stored_next[i] = info["final_obs"][i]
                self._log_episodes(info["final_info"], env_step)
        with self._timed("store"):
            self.replay.add(obs, actions, rewards, stored_next, terminated, truncated)
        return next_obs

    def learn(self, env_step: int, epsilons: Sequence[float]) -> None:
        """The gradient steps every agent owes after ``env_step``, in rounds (see the module
        docstring), each followed by the agents' ReDo resets and metric rows that are due."""
        dues = [
            updates_due(
                env_step - s.updates_from_env_step,
                c.replay_ratio,
                s.grad_step - s.updates_from_grad_step,
            )
            for c, s in zip(self.configs, self.states, strict=True)
        ]
        for round_ in range(max(dues)):
            due = np.array([d > round_ for d in dues])
            with self._timed("update"):
                batch = self.replay.sample(self.config.batch_size, self.replay_rng)
                stats = self.learner.update(batch, due)
                self.loss_sum += stats.loss
                self.q_sum += stats.q_mean
            for i in np.flatnonzero(due):
                self.states[i].grad_step += 1
                self.states[i].updates += 1
            self._recycle(due)
            self._log_metrics(due, env_step, epsilons)

    def timing(self) -> dict[str, Any]:
        """The population's record: size, device, wall time, aggregate speed, time split."""
        steps = self.config.total_steps
        return {
            "agents": self.agents,
            "device": str(self.device),
            "env_steps_per_agent": steps,
            "wall_time_s": self.wall_time_s,
            "env_steps_per_s": self.agents * steps / self.wall_time_s if self.wall_time_s else None,
            "time_s": dict(self.seconds),
        }

    def _recycle(self, due: np.ndarray) -> None:
        agents = [
            bool(d) and c.redo and s.grad_step % c.redo_period == 0
            for d, c, s in zip(due, self.configs, self.states, strict=True)
        ]
        if not any(agents):
            return
        with self._timed("redo"):
            x = self.replay.sample_observations(self.config.score_batch_size, self.redo_rng)
            counts = self.learner.recycle(x, torch.tensor(agents)).tolist()
        for i in np.flatnonzero(agents):
            state = self.states[i]
            state.redo_calls += 1
            state.recycled += counts[i]
            state.recycled_total += counts[i]

    def _log_metrics(self, due: np.ndarray, env_step: int, epsilons: Sequence[float]) -> None:
        agents = [
            i
            for i in np.flatnonzero(due)
            if self.states[i].grad_step % self.configs[i].log_interval == 0
        ]
        if not agents:
            return
        with self._timed("score"):
            x = self.replay.sample_observations(self.config.score_batch_size, self.log_rng)
            scores = {name: s.cpu() for name, s in self.learner.scores(x).items()}
            loss_sum, q_sum = self.loss_sum.tolist(), self.q_sum.tolist()
        for i in agents:
            state = self.states[i]
            state.env_step = env_step
            state.loss_sum, state.q_sum = loss_sum[i], q_sum[i]
            state.time_update_s = self.seconds["update"]
            state.time_score_s = self.seconds["score"]
            state.time_redo_s = self.seconds["redo"]
            dormant = dormant_columns_from_scores(
                {n: s[i] for n, s in scores.items()}, self.taus[i]
            )
            self.writers[i].log_metrics(metrics_row(state, dormant, epsilons[i]))
            state.start_interval()
        logged = torch.tensor(agents, device=self.device)
        self.loss_sum.index_fill_(0, logged, 0.0)
        self.q_sum.index_fill_(0, logged, 0.0)

    def _log_episodes(self, final_info: dict[str, Any], env_step: int) -> None:
        """Log the episodes that ended now; ``"r"`` is the raw score (see redo.envs)."""
        if "episode" not in final_info:
            return
        episode = final_info["episode"]
        for i in np.flatnonzero(final_info["_episode"]):
            episode_return = float(episode["r"][i])
            self.writers[i].log_episode(env_step, episode_return, int(episode["l"][i]))
            self.states[i].returns.append(episode_return)

    @contextlib.contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - tic


def _generators(seed: int, device: torch.device) -> tuple[torch.Generator, ...]:
    """The population's replay, ReDo and logging streams, independent of each other."""
    generators = []
    for child in np.random.SeedSequence(seed).spawn(3):
        generator = torch.Generator(device=device)
        generator.manual_seed(int(child.generate_state(1)[0]))
        generators.append(generator)
    return tuple(generators)


__all__ = [
    "PER_AGENT_SETTINGS",
    "POPULATION_FILE",
    "TIME_PARTS",
    "Lockstep",
    "PopulationResult",
    "agent_folder_name",
    "check_population",
    "make_vector_env",
    "train_population",
]
