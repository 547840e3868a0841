"""Many agents at once: K independent DQN (+ ReDo) agents trained in lockstep in one process.

:func:`train_population` runs what :func:`redo.agent.dqn.train` runs, for K agents whose networks
have the same shape, and writes K run folders that cannot be told apart from single runs:
same record format, same metric columns, each holding its agent's own
:meth:`DQNConfig.to_dict() <redo.agent.config.DQNConfig.to_dict>`. Next to them,
``population.json`` records the population's own timing.

**What is per agent.** Seed, initial parameters (built exactly as the single loop builds
them), environment (:func:`redo.agent.envs.make_env` with the agent's seed), replay storage,
epsilon schedule and coin (the single loop's ``explore`` stream), optimizer state, target
network, gradient-step count and logs. The settings that may differ between agents are
:data:`PER_AGENT_SETTINGS`: ``seed``, ``redo``, ``tau``, ``lr`` and ``replay_ratio``. Every
other setting shapes what the agents share (the network, the batch and buffer shapes, the
env-step schedule) and must be equal; :func:`check_population` says which one is not.

**How.** The networks are stacked tensors updated by one ``vmap`` over the agents
(:class:`redo.population.learner.PopulationLearner`); replay lives on the training device
(:class:`redo.population.replay.PopulationReplay`); the environments step through one
``gymnasium.vector.SyncVectorEnv`` in ``SAME_STEP`` autoreset mode, whose ``final_obs``
gives the true last observation of an episode, so the final transition is stored as the
single loop stores it (terminated: no bootstrap; truncated: never sampled). Each env step,
every agent makes the gradient steps its replay ratio owes (:func:`redo.agent.dqn.updates_due`) in
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
Unlike :func:`redo.agent.dqn.train`, ReDo's score batches do not come from the replay stream: a
stream shared by agents must not advance with another agent's ReDo switch.

**Timing columns.** ``time/update_s``, ``time/score_s`` and ``time/redo_s`` of each agent's
metrics hold the population's cumulative times (one update serves every agent), and
``sps`` is env steps per second per agent. On a GPU, launched work is timed where the host
next waits for it (mostly when the greedy actions come back to the host, in ``act``).

**Checkpoints and resume.** Every ``checkpoint_interval`` env steps and at the end, each
agent's run folder gets a ``checkpoint.pt`` holding that agent's slice of the population
(parameters, target parameters, Adam moments and step counts, replay storage, environment,
observation, epsilon coin, loop counters and running sums) and a copy of what the agents share
(the three streams' states, the env step, the population's times), so each folder is
self-contained. ``train_population(..., resume=True)`` continues from them *exactly*, as
:func:`redo.agent.dqn.train` does, if every agent's checkpoint is at the same env step
(:func:`check_resumable` lists what a resume needs): a population interrupted while writing
them, some agents one checkpoint ahead, cannot resume. Without ``save_replay_in_checkpoint``
the replay restarts empty, and every agent collects ``learning_starts`` new transitions
before learning again (:mod:`redo.agent.dqn` does the same). ``population.json`` is written when
the population finishes, its times summed over the segments up to their last checkpoints.
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

from redo.agent.config import ConfigError, DQNConfig
from redo.core.dormant import PAPER_TAUS
from redo.agent.dqn import (
    LoopState,
    RandomStreams,
    TrainResult,
    dormant_columns_from_scores,
    linear_epsilon,
    metrics_row,
    restore_env,
    snapshot_env,
    updates_due,
)
from redo.agent.envs import make_env
from redo.population.learner import POPULATION_INITS, PopulationLearner
from redo.population.replay import PopulationReplay
from redo.records.run import CHECKPOINT_FILE, RUN_FILES, RunWriter, load_checkpoint, load_run

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
    resume: bool = False,
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
        resume: continue the interrupted population in these folders from its agents'
            checkpoints (:func:`check_resumable` says why one cannot), with the configs, agent
            order and ``run_folders`` it was started with.
    """
    if device is not None:
        configs = [c.replace(device=str(torch.device(device))) for c in configs]
    check_population(configs)
    folder = Path(out_dir)
    folders = _agent_folders(folder, len(configs), run_folders)
    if resume:
        check_resumable(folder, folders, configs)
    else:
        _check_new(folder, folders)
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(RunWriter(f, c.to_dict(), device=c.device, resume=resume))
            for f, c in zip(folders, configs, strict=True)
        ]
        envs = stack.enter_context(contextlib.closing(make_vector_env(configs)))
        loop = Lockstep(configs, envs, writers, configs[0].seed if seed is None else seed)
        if resume:
            loop.restore([w.checkpoint for w in writers])
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
    if taken or (folder / POPULATION_FILE).exists():
        raise FileExistsError(
            f"{folder} already holds a population ({taken or POPULATION_FILE}): choose another "
            "out_dir, or pass resume=True to continue an interrupted one; runs are never "
            "overwritten"
        )


def check_resumable(folder: Path, folders: Sequence[Path], configs: Sequence[DQNConfig]) -> None:
    """Raise unless ``folders`` hold the unfinished runs of one population with ``configs``,
    in its agent order, each with a checkpoint, all at one env step.

    Every check comes before any run is opened, because opening one to resume it already
    changes it (it drops the rows logged after its checkpoint and starts a new segment): a
    population that cannot resume is left as it was.
    """
    if (folder / POPULATION_FILE).exists():
        raise FileExistsError(
            f"{folder} holds a finished population ({POPULATION_FILE}): nothing to resume, "
            "and finished runs are never overwritten"
        )
    missing = [str(f) for f in folders if not (f / CHECKPOINT_FILE).is_file()]
    if missing:
        raise FileNotFoundError(
            f"cannot resume the population: {missing} hold no {CHECKPOINT_FILE} (a population "
            "interrupted before its first checkpoint starts again, in new folders)"
        )
    runs = [load_run(f) for f in folders]
    finished = [str(r.folder) for r in runs if r.record["status"] == "finished"]
    if finished:
        raise FileExistsError(
            f"cannot resume the population: {finished} hold finished runs, which are never "
            "overwritten"
        )
    differing = {
        str(r.folder): sorted(k for k, v in c.to_dict().items() if r.config.get(k) != v)
        for r, c in zip(runs, configs, strict=True)
    }
    differing = {f: keys for f, keys in differing.items() if keys}
    if differing:
        raise ValueError(
            f"cannot resume the population: the configs differ from those stored in {differing}; "
            "resume it with the configs it was started with"
        )
    _check_checkpoints(folders)


def _check_checkpoints(folders: Sequence[Path]) -> None:
    """The agents' checkpoints must come from one population, in this order, at one step."""
    marks = {}
    for f in folders:  # one at a time: a checkpoint may hold a large replay slice
        checkpoint = load_checkpoint(f)
        marks[str(f)] = (checkpoint.get("agent"), checkpoint.get("agents"), checkpoint["env_step"])
    misplaced = {
        f: f"agent {agent} of {agents}"
        for i, (f, (agent, agents, _)) in enumerate(marks.items())
        if (agent, agents) != (i, len(folders))
    }
    if misplaced:
        raise ValueError(
            f"cannot resume the population: {misplaced} were not checkpointed as these agents "
            f"of a population of {len(folders)}; give the configs and run_folders in the "
            "order and number the population was started with"
        )
    steps = {f: step for f, (_, _, step) in marks.items()}
    if len(set(steps.values())) > 1:
        raise ValueError(
            f"cannot resume the population: its agents' checkpoints are at different env "
            f"steps {steps} (it was interrupted while writing them); train it again in new "
            "folders"
        )


def check_population(configs: Sequence[DQNConfig]) -> None:
    """Raise :class:`redo.agent.config.ConfigError` (a ValueError) naming the first setting that
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
    """One :func:`redo.agent.envs.make_env` per agent with its seed (and its ``env_options``, e.g.
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
        obs = self.envs.reset()[0] if self.obs is None else self.obs
        for env_step in range(first + 1, total + 1):
            with self._timed("act"):
                actions, epsilons = self.act(obs, env_step)
            obs = self.step_envs(obs, actions, env_step)
            self.env_step = env_step
            # learning_starts and a resume's refill are the same for every agent
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
                self.save_checkpoints(obs)
        bar.close()
        self.wall_time_s = earlier_s + time.perf_counter() - start

    def save_checkpoints(self, obs: np.ndarray) -> None:
        """Write every agent's checkpoint into its run folder (see the module docstring);
        ``obs`` are the current observations."""
        shared = self._shared_state()
        loss_sum, q_sum = self.loss_sum.tolist(), self.q_sum.tolist()
        keep_replay = self.config.save_replay_in_checkpoint
        for i, writer in enumerate(self.writers):
            self.states[i].env_step = self.env_step  # where a resume's refill counts from
            writer.save_checkpoint(
                shared
                | {
                    "agent": i,
                    "loop": self.states[i].state_dict(),
                    "learner": self.learner.agent_state_dict(i),
                    "replay": self.replay.agent_state_dict(i) if keep_replay else None,
                    "explore": self.explore[i].bit_generator.state,
                    "env": snapshot_env(self.envs.envs[i]),
                    "obs": obs[i],
                    "loss_sum": loss_sum[i],
                    "q_sum": q_sum[i],
                }
            )

    def restore(self, checkpoints: Sequence[Mapping[str, Any]]) -> None:
        """Continue from :meth:`save_checkpoints`' checkpoints, one per agent in agent order,
        all taken at one env step (:func:`check_resumable`)."""
        for i, checkpoint in enumerate(checkpoints):
            self._restore_agent(i, checkpoint)
        shared = checkpoints[0]
        for generator, state in zip(self._generators(), shared["generators"], strict=True):
            generator.set_state(state)
        self.seconds = dict(shared["seconds"])
        self.wall_time_s = shared["wall_time_s"]
        self.env_step = shared["env_step"]
        self.obs = np.stack([c["obs"] for c in checkpoints])

    def _shared_state(self) -> dict[str, Any]:
        """What every agent's checkpoint holds a copy of."""
        return {
            "env_step": self.env_step,
            "agents": self.agents,
            "generators": [g.get_state() for g in self._generators()],
            "seconds": dict(self.seconds),
            "wall_time_s": self.wall_time_s,
        }

    def _restore_agent(self, i: int, checkpoint: Mapping[str, Any]) -> None:
        self.learner.load_agent_state_dict(i, checkpoint["learner"])
        self.states[i].load_state_dict(checkpoint["loop"])
        if checkpoint["replay"] is not None:
            self.replay.load_agent_state_dict(i, checkpoint["replay"])
        else:
            self.states[i].refill_before_learning(self.configs[i].learning_starts)
        self.explore[i].bit_generator.state = checkpoint["explore"]
        self.envs.envs[i] = restore_env(checkpoint["env"], self.envs.envs[i])
        self.loss_sum[i] = checkpoint["loss_sum"]
        self.q_sum[i] = checkpoint["q_sum"]

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
        """Log the episodes that ended now; ``"r"`` is the raw score (see redo.agent.envs)."""
        if "episode" not in final_info:
            return
        episode = final_info["episode"]
        for i in np.flatnonzero(final_info["_episode"]):
            episode_return = float(episode["r"][i])
            self.writers[i].log_episode(env_step, episode_return, int(episode["l"][i]))
            self.states[i].returns.append(episode_return)

    def _generators(self) -> tuple[torch.Generator, ...]:
        return (self.replay_rng, self.redo_rng, self.log_rng)

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
    "check_resumable",
    "make_vector_env",
    "train_population",
]
