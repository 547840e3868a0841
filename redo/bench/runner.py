"""``python -m redo bench``: how fast our loops train, next to the reference loop structure.

One process measures, for each environment, with ReDo off and on, the environment steps per
second of

* ``single``: the single-agent loop, :func:`redo.agent.dqn.train` with ``out_dir=None``;
* ``reference``: :func:`redo.bench.reference_loop.reference_loop`, cleanRL's loop with the PyTorch
  seed repository's ReDo habits, on the same env, network and settings;
* ``population``: :func:`redo.population.train_population` with K agents in lockstep, for each
  K of ``--population``: the aggregate speed, K x lockstep env steps per second.

**The measured window.** Every run plays ``learning_starts`` env steps at random (epsilon 1,
as DQN fills its buffer), then learns with epsilon at its final value (so almost every action
is a greedy forward pass). The first log interval after learning starts is warm-up; the next
:data:`INTERVALS` intervals are the window. A log interval is a whole number of gradient
steps that spans a whole number of env steps at the replay ratio, so the single loop and the
population log a metrics row exactly where the window starts and ends, and the window's speed
and time split are read from those two rows (``wall_time_s`` and the loops' own cumulative
``time/update_s``, ``time/redo_s``, ``time/score_s``). The window therefore includes what the
loops do in it: acting, env steps, storing, updates, ReDo, and one metrics row per interval
(a dormant-score pass and a CSV line). The reference loop is timed by its own clock over the
same env steps. Budgets (:data:`BUDGETS`) depend on the env family, because an Atari step
and update cost ~10x a MinAtar one; ``--steps`` and ``--learning-starts`` override them.

**ReDo rows** recycle every ``redo_period`` gradient steps, by default one log interval or
100, whichever is smaller, so that at least four resets fall inside the window (the
paper's period is 1000); the ``resets`` column counts them per agent.

**Micro-benchmarks** time, as the median over ``--repeats`` calls after
:data:`WARMUP_CALLS` warm-up calls (synchronising the GPU around each), one gradient step
(a replay minibatch and the update, as the loops' own update timers count it), one
dormant-score pass on a score batch, and one ReDo check (score pass and reset) for the single
loop (:func:`redo.agent.dqn.td_update`, :class:`redo.core.optim.ElementwiseAdam`,
:func:`redo.core.recycle.recycle_dormant`), the reference (``torch.optim.Adam``, the seed's check)
and the population at each K (per agent: the population's time divided by K), and report the
score pass and ReDo check as multiples of one gradient step. They run with tau = 1 so that
every layer has neurons to recycle: the full cost of a reset.

**Rounds.** Each loop row is measured ``--rounds`` times, in interleaved rounds (every row
once, then every row again), and reports the round with the median speed; the speeds of all
rounds are kept in the row. A short window on a shared machine is noisy (the same row moved by
~20% between runs minutes apart): one slow moment then spoils one round, not a ratio.

**Threads.** ``--threads`` defaults to 1. Small updates cost mostly per-operation overhead,
which intra-op threads do not reduce, and on a machine shared with other jobs the threads'
spin-waiting can slow every operation ~60x (a MinAtar update took 5 ms with one thread and
340 ms with two on two busy cores). ``--threads 0`` keeps torch's default. A population's
operations are K times larger and split over threads better; an Atari network's may too.
``--threads 1 2`` measures every loop row at each count, in the same rounds, so that each
loop can be judged at the count that suits it (:mod:`redo.bench.performance` does); every row
records its count. The micro-benchmarks run at the first count, the roofline
(:mod:`redo.bench.roofline`) at each.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from redo.agent.config import ConfigError, DQNConfig
from redo.core.dormant import dormant_scores
from redo.agent.dqn import LOSSES, td_update, train
from redo.agent.envs import EnvFamily, env_family, make_env
from redo.core.networks import q_network_for
from redo.core.optim import ElementwiseAdam
from redo.population.lockstep import train_population
from redo.population.learner import PopulationLearner
from redo.population.replay import PopulationReplay
from redo.core.recycle import recycle_dormant
from redo.bench.reference_loop import (
    reference_buffer,
    reference_loop,
    reference_update,
    seed_redo_check,
    train_schedule,
)
from redo.agent.replay import ReplayBuffer
from redo.records.run import collect_provenance
from redo.bench.roofline import WARMUP_CALLS, measure_roofline, median_time, random_observations

#: Log intervals in the measured window; one more before them is warm-up.
INTERVALS = 4
#: The seed of every run (agent i of a population uses SEED + i).
SEED = 0
#: The default ReDo period's cap, in gradient steps.
MAX_REDO_PERIOD = 100
#: Micro-benchmarks: calls before timing, transitions in their replay, and their threshold.
MICRO_CAPACITY = 128
MICRO_TAU = 1.0

DEFAULT_ENVS: tuple[str, ...] = ("MinAtar/Breakout-v1", "ALE/Breakout-v5")
DEFAULT_POPULATION = {"cpu": (1, 8, 32), "cuda": (1, 8, 64, 256)}
QUICK_POPULATION: tuple[int, ...] = (1, 8)
DEFAULT_REPEATS, QUICK_REPEATS = 20, 5
#: Loop measurements per row, interleaved (every row once, then again): the row reported is
#: the round with the median speed, so a slow moment of a shared machine moves no ratio alone.
DEFAULT_ROUNDS, QUICK_ROUNDS = 3, 1


@dataclass(frozen=True)
class Budget:
    """Env steps per agent (random play before learning, the measured window), and the
    largest default population size (``None``: no limit; ``--population`` overrides it)."""

    learning_starts: int
    steps: int
    max_agents: int | None = None


#: Per env family, by default and with ``--quick``. Atari gets fewer steps, and by default at
#: most 64 agents: its updates and env steps cost ~10x MinAtar's, and a population steps its
#: emulators on one core (256 of them made ~640 env steps/s on an H100 machine and take about
#: a minute to create), so K = 256 would spend most of an 8-minute run on the emulators.
#: ``--quick`` is a smoke run that ends in a minute or two on two CPU cores: its windows, and
#: Atari's above all, are too short for numbers to trust.
BUDGETS: dict[EnvFamily, Budget] = {
    "minatar": Budget(learning_starts=500, steps=400),
    "atari": Budget(learning_starts=100, steps=100, max_agents=64),
    "classic": Budget(learning_starts=500, steps=400),
}
QUICK_BUDGETS: dict[EnvFamily, Budget] = {
    "minatar": Budget(learning_starts=100, steps=100),
    "atari": Budget(learning_starts=50, steps=8),
    "classic": Budget(learning_starts=100, steps=100),
}

#: What each field of a row means, written into the JSON next to the rows.
DEFINITIONS: dict[str, str] = {
    "env_steps_per_s": "aggregate env steps per second in the window (K x lockstep steps/s)",
    "rounds_env_steps_per_s": "env_steps_per_s of every round; the row is the median round",
    "threads": "torch intra-op threads the row ran with",
    "env_steps_per_s_per_agent": "env_steps_per_s / agents",
    "speedup": "speed over the single loop's on the same env, ReDo setting and threads: the median of the per-round ratios",
    "window_env_steps": "env steps per agent in the measured window (after warm-up)",
    "resets": "ReDo resets per agent in the window (0 without ReDo)",
    "update_share": "share of the window in minibatch sampling + updates (loop's own timer)",
    "redo_share": "share in ReDo checks (reference: plus its score sample at every env step)",
    "score_share": "share in the logged dormant-score passes (the reference logs none)",
    "time_split": "population only: its whole-run time split (population.json), as shares",
    "run_s": "wall time of the whole run, setup and random play included",
    "grad_step_s": "micro: one minibatch + update, per agent (median)",
    "score_s": "micro: one dormant-score pass on a score batch, per agent (median)",
    "redo_s": "micro: one ReDo check, score pass + reset at tau=1, per agent (median)",
}


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. ``None`` takes the defaults: :data:`BUDGETS` (or
    :data:`QUICK_BUDGETS`) and the device's :data:`DEFAULT_POPULATION` (or
    :data:`QUICK_POPULATION`), capped by each family's ``max_agents``."""

    envs: tuple[str, ...] = DEFAULT_ENVS
    replay_ratio: float = 1.0
    population: tuple[int, ...] | None = None
    steps: int | None = None
    learning_starts: int | None = None
    redo_period: int | None = None
    repeats: int = DEFAULT_REPEATS
    threads: tuple[int, ...] = (1,)
    rounds: int = DEFAULT_ROUNDS
    device: str = "cpu"
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.envs or len(set(self.envs)) != len(self.envs):
            raise ConfigError("envs", f"envs must be distinct env ids, got {list(self.envs)}")
        for env_id in self.envs:
            try:
                env_family(env_id)
            except ValueError as err:
                raise ConfigError("envs", str(err)) from err
        try:
            train_schedule(self.replay_ratio)
        except ValueError as err:
            raise ConfigError("replay_ratio", str(err)) from err
        if not self.threads or len(set(self.threads)) != len(self.threads):
            raise ConfigError(
                "threads", f"threads must be distinct counts, got {list(self.threads)}"
            )
        if self.population is not None and (
            not self.population or len(set(self.population)) != len(self.population)
        ):
            raise ConfigError(
                "population", f"population must be distinct sizes, got {list(self.population)}"
            )
        for name, value, minimum in (
            ("population", min(self.population or [1]), 1),
            ("steps", self.steps, INTERVALS),
            ("learning_starts", self.learning_starts, 1),
            ("redo_period", self.redo_period, 1),
            ("repeats", self.repeats, 1),
            ("threads", min(self.threads), 0),
            ("rounds", self.rounds, 1),
        ):
            if value is not None and value < minimum:
                raise ConfigError(name, f"{name} must be an integer >= {minimum}, got {value}")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", f"device {self.device!r}: CUDA is not available here")

    def budget(self, env_id: str) -> Budget:
        """The env's budget, with ``steps`` and ``learning_starts`` applied."""
        budget = (QUICK_BUDGETS if self.quick else BUDGETS)[env_family(env_id)]
        return dataclasses.replace(
            budget,
            learning_starts=_given(self.learning_starts, budget.learning_starts),
            steps=_given(self.steps, budget.steps),
        )

    def population_for(self, env_id: str) -> tuple[int, ...]:
        """The population sizes measured on ``env_id``."""
        if self.population is not None:
            return self.population
        kind = torch.device(self.device).type
        sizes = QUICK_POPULATION if self.quick else DEFAULT_POPULATION.get(kind, QUICK_POPULATION)
        limit = self.budget(env_id).max_agents
        return tuple(k for k in sizes if limit is None or k <= limit)

    def command(self) -> str:
        """The command line that repeats this benchmark (options left out took defaults)."""
        parts = [
            "python -m redo bench",
            f"--envs {' '.join(self.envs)}",
            f"--replay-ratio {self.replay_ratio:g}",
            f"--repeats {self.repeats}",
            f"--rounds {self.rounds}",
            f"--threads {' '.join(map(str, self.threads))}",
            f"--device {self.device}",
        ]
        for option, value in (
            ("--steps", self.steps),
            ("--learning-starts", self.learning_starts),
            ("--redo-period", self.redo_period),
            ("--population", self.population and " ".join(map(str, self.population))),
        ):
            if value is not None:
                parts.append(f"{option} {value}")
        return " ".join(parts + (["--quick"] if self.quick else []))


@dataclass(frozen=True)
class Window:
    """Where a run is measured: ``learning_starts`` random steps, one warm-up log interval,
    then :data:`INTERVALS` measured ones. ``interval`` env steps make exactly
    ``log_interval`` gradient steps at the replay ratio."""

    learning_starts: int
    interval: int
    log_interval: int

    @classmethod
    def for_budget(cls, budget: Budget, replay_ratio: float) -> Window:
        """The window closest to ``budget.steps`` made of whole log intervals: with the ratio
        p/q in lowest terms, q env steps make exactly p gradient steps."""
        ratio = Fraction(repr(float(replay_ratio)))
        units = max(1, round(budget.steps / INTERVALS / ratio.denominator))
        return cls(budget.learning_starts, units * ratio.denominator, units * ratio.numerator)

    @property
    def start(self) -> int:
        return self.learning_starts + self.interval

    @property
    def end(self) -> int:
        return self.learning_starts + (INTERVALS + 1) * self.interval

    @property
    def env_steps(self) -> int:
        return INTERVALS * self.interval

    def default_redo_period(self) -> int:
        """One log interval, capped: at least :data:`INTERVALS` resets in the window."""
        return min(MAX_REDO_PERIOD, self.log_interval)

    def resets(self, redo_period: int) -> int:
        """ReDo resets per agent between the window's first and last gradient step."""
        first, last = self.log_interval, (INTERVALS + 1) * self.log_interval
        return last // redo_period - first // redo_period


@dataclass
class Report:
    """Everything one benchmark measured, and where; :meth:`to_json` is the file's content."""

    settings: BenchSettings
    provenance: dict[str, Any]
    date: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    micro: list[dict[str, Any]] = field(default_factory=list)
    roofline: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.settings.command(),
            "settings": dataclasses.asdict(self.settings),
            "date": self.date,
            "wall_time_s": self.wall_time_s,
            "provenance": self.provenance,
            "definitions": DEFINITIONS,
            "rows": self.rows,
            "micro": self.micro,
            "roofline": self.roofline,
        }


# --- the benchmark --------------------------------------------------------------------------


def run_bench(settings: BenchSettings, log: Callable[[str], None] | None = None) -> Report:
    """Measure every (env, ReDo, method, K) row and the micro-benchmarks, in this process.

    ``log`` receives one line per finished measurement (stderr by default).
    """
    log = log or _log_to_stderr
    start = time.perf_counter()
    if settings.threads[0]:
        torch.set_num_threads(settings.threads[0])
    report = Report(
        settings=settings,
        provenance=collect_provenance(settings.device),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    for env_id in settings.envs:
        window = Window.for_budget(settings.budget(env_id), settings.replay_ratio)
        report.rows.extend(loop_rows(env_id, window, settings, log))
        report.micro.extend(micro_rows(env_id, window, settings, log))
        for threads in settings.threads:
            with intra_op_threads(threads):
                roofline = measure_roofline(
                    bench_config(env_id, window, settings, redo=False),
                    repeats=settings.repeats,
                    device=settings.device,
                    population=max(settings.population_for(env_id)),
                )
            report.roofline.append(roofline.to_dict())
            log(
                f"{env_id:22s} roofline, {roofline.threads} thread(s): "
                f"{roofline.flops_per_update / 1e6:.0f} MFLOP per update, matmul "
                f"{roofline.matmul_flops_per_s / 1e9:.1f} GFLOP/s, per-agent floor "
                f"{roofline.per_agent_floor_s * 1e3:.2f} ms at matmul speed, "
                f"{roofline.kernel_floor_s * 1e3:.2f} ms at the layers' measured speed, "
                f"vs update {roofline.update_s * 1e3:.2f} ms"
            )
    add_speedups(report.rows)
    report.wall_time_s = time.perf_counter() - start
    return report


def bench_config(env_id: str, window: Window, settings: BenchSettings, redo: bool) -> DQNConfig:
    """The family defaults of ``env_id`` with the benchmark's schedule: a buffer that holds
    the whole run, epsilon at its final value once learning starts, one log interval per
    :class:`Window` interval, and a checkpoint only at the end (after the window)."""
    total = window.end
    return DQNConfig.for_env(
        env_id,
        seed=SEED,
        total_steps=total,
        replay_ratio=settings.replay_ratio,
        redo=redo,
        redo_period=settings.redo_period or window.default_redo_period(),
        learning_starts=window.learning_starts,
        buffer_size=total,
        epsilon_decay_steps=0,
        log_interval=window.log_interval,
        checkpoint_interval=total,
        save_replay_in_checkpoint=False,
        device=settings.device,
    )


def loop_rows(
    env_id: str, window: Window, settings: BenchSettings, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per ReDo setting, thread count and method (and K for the population) on one
    env, each the median of ``settings.rounds`` measurements taken in interleaved rounds."""
    measurements = []
    for redo in (False, True):
        config = bench_config(env_id, window, settings, redo)
        for threads in settings.threads:
            measurements += [
                (threads, functools.partial(measure_single, config, window)),
                (threads, functools.partial(measure_reference, config, window)),
                *(
                    (threads, functools.partial(measure_population, config, window, k))
                    for k in settings.population_for(env_id)
                ),
            ]
    rounds: list[list[dict[str, Any]]] = [[] for _ in measurements]
    for _ in range(settings.rounds):
        for (threads, measure), taken in zip(measurements, rounds, strict=True):
            tic = time.perf_counter()
            with intra_op_threads(threads):
                row = measure() | {"threads": torch.get_num_threads()}
            row["run_s"] = time.perf_counter() - tic
            log(
                f"{env_id:<22} redo={'on ' if row['redo'] else 'off'} {row['method']:<10} "
                f"K={row['agents']:<4} threads={row['threads']} "
                f"{row['env_steps_per_s']:>9.0f} env steps/s "
                f"({row['window_s']:.1f} s window, {row['run_s']:.1f} s run)"
            )
            taken.append(row)
    return [median_round(taken) for taken in rounds]


def median_round(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The round with the median speed (the slower middle one of an even count), whole, so
    that its time shares stay those of one run, plus every round's speed."""
    ordered = sorted(rows, key=lambda row: row["env_steps_per_s"])
    return dict(ordered[(len(ordered) - 1) // 2]) | {
        "rounds_env_steps_per_s": [float(row["env_steps_per_s"]) for row in rows]
    }


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (0: leave them as they are)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_single(config: DQNConfig, window: Window) -> dict[str, Any]:
    """The single-agent loop, read from its metrics rows at the window's ends."""
    result = train(config)
    return _row_from_metrics("single", config, 1, window, result.metrics)


def measure_population(config: DQNConfig, window: Window, agents: int) -> dict[str, Any]:
    """K agents (seeds SEED..SEED+K-1) in lockstep, read from agent 0's metrics rows, plus
    the population's own whole-run time split."""
    configs = [config.replace(seed=config.seed + i) for i in range(agents)]
    with tempfile.TemporaryDirectory(prefix="redo-bench-") as folder:
        result = train_population(configs, folder)
    row = _row_from_metrics("population", config, agents, window, result.agents[0].metrics)
    wall = result.timing["wall_time_s"]
    row["time_split"] = {part: s / wall for part, s in result.timing["time_s"].items()}
    return row


def measure_reference(config: DQNConfig, window: Window) -> dict[str, Any]:
    """The reference loop structure, timed by its own clock over the window's env steps."""
    stats = reference_loop(config, measure_from=window.start)
    redo_s = stats["time/redo_s"] + stats["time/redo_sample_s"]
    parts = {"update": stats["time/update_s"], "redo": redo_s, "score": 0.0}
    return _loop_row("reference", config, 1, window, stats["window_s"], parts)


def _row_from_metrics(
    method: str, config: DQNConfig, agents: int, window: Window, metrics: pd.DataFrame
) -> dict[str, Any]:
    """A row from the metrics rows logged at the window's first and last env step."""
    at = metrics.set_index("env_step")
    missing = {window.start, window.end} - set(at.index)
    if missing:
        raise RuntimeError(
            f"the {method} loop logged no metrics row at env steps {sorted(missing)}; "
            f"rows are at {list(at.index)}"
        )
    first, last = at.loc[window.start], at.loc[window.end]
    parts = {p: last[f"time/{p}_s"] - first[f"time/{p}_s"] for p in ("update", "redo", "score")}
    return _loop_row(
        method, config, agents, window, last["wall_time_s"] - first["wall_time_s"], parts
    )


def _loop_row(
    method: str,
    config: DQNConfig,
    agents: int,
    window: Window,
    window_s: float,
    parts: Mapping[str, float],
) -> dict[str, Any]:
    sps = agents * window.env_steps / window_s
    return {
        "method": method,
        "env": config.env_id,
        "redo": config.redo,
        "agents": agents,
        "replay_ratio": config.replay_ratio,
        "redo_period": config.redo_period,
        "resets": window.resets(config.redo_period) if config.redo else 0,
        "learning_starts": window.learning_starts,
        "window_env_steps": window.env_steps,
        "window_s": float(window_s),
        "env_steps_per_s": sps,
        "env_steps_per_s_per_agent": sps / agents,
        **{f"{part}_share": float(s / window_s) for part, s in parts.items()},
    }


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Each row's ``speedup``: its speed over the single loop's on the same env and ReDo
    setting, at the same thread count."""
    key = ("env", "redo", "threads")
    single = {tuple(r[k] for k in key): r for r in rows if r["method"] == "single"}
    for row in rows:
        row["speedup"] = speed_ratio(row, single[tuple(row[k] for k in key)])


def speed_ratio(row: Mapping[str, Any], other: Mapping[str, Any]) -> float:
    """``row``'s speed over ``other``'s: the median of their per-round ratios when both kept
    their rounds (measured minutes apart, under the same load of a shared machine), else the
    ratio of their speeds."""
    ours, theirs = row.get("rounds_env_steps_per_s"), other.get("rounds_env_steps_per_s")
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return float(np.median(np.divide(ours, theirs)))
    return float(row["env_steps_per_s"] / other["env_steps_per_s"])


# --- micro-benchmarks -----------------------------------------------------------------------


def micro_rows(
    env_id: str, window: Window, settings: BenchSettings, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Gradient step, score pass and ReDo check of each method on ``env_id``'s network."""
    config = bench_config(env_id, window, settings, redo=True).replace(tau=MICRO_TAU)
    env = make_env(env_id, seed=SEED)
    try:
        timings = [
            ("single", 1, micro_single(config, env, settings.repeats)),
            ("reference", 1, micro_reference(config, env, settings.repeats)),
            *(
                ("population", k, micro_population(config, env, settings.repeats, k))
                for k in settings.population_for(env_id)
            ),
        ]
    finally:
        env.close()
    rows = []
    for method, agents, times in timings:
        rows.append(
            {
                "method": method,
                "env": env_id,
                "agents": agents,
                "threads": torch.get_num_threads(),
                **times,
                "score_per_grad_step": times["score_s"] / times["grad_step_s"],
                "redo_per_grad_step": times["redo_s"] / times["grad_step_s"],
            }
        )
        log(
            f"{env_id:<22} micro {method:<10} K={agents:<4} grad step "
            f"{1e3 * times['grad_step_s']:.3f} ms/agent"
        )
    return rows


def micro_single(config: DQNConfig, env: gym.Env, repeats: int) -> dict[str, float]:
    """The single loop's pieces: :func:`redo.agent.dqn.td_update` with ElementwiseAdam,
    :func:`redo.core.dormant.dormant_scores` and :func:`redo.core.recycle.recycle_dormant`."""
    device = torch.device(config.device)
    q_network, target_network = _networks(config, env)
    optimizer = ElementwiseAdam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
    space = env.observation_space
    replay = ReplayBuffer(MICRO_CAPACITY, space.shape, space.dtype)
    rng = np.random.default_rng(config.seed)
    obs = random_observations(space, MICRO_CAPACITY + 1, rng)
    for i in range(MICRO_CAPACITY):
        replay.add(obs[i], int(env.action_space.sample()), 0.0, obs[i + 1], False, False)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    loss_fn = LOSSES[config.loss]

    def score_batch() -> torch.Tensor:
        return torch.as_tensor(
            replay.sample_observations(config.score_batch_size, rng), device=device
        )

    def grad_step() -> object:
        batch = replay.sample(config.batch_size, rng)
        return td_update(q_network, target_network, optimizer, batch, config.gamma, loss_fn)

    def redo_check() -> object:
        return recycle_dormant(
            q_network, optimizer, score_batch(), config.tau, init=config.redo_init,
            bias=config.redo_bias, step_mode=config.redo_step_mode, generator=generator,
        )  # fmt: skip

    return _micro_times(
        device, repeats, grad_step, lambda: dormant_scores(q_network, score_batch()), redo_check
    )


def micro_reference(config: DQNConfig, env: gym.Env, repeats: int) -> dict[str, float]:
    """The reference's pieces: a cleanRL update with ``torch.optim.Adam`` on an SB3 sample,
    the hooked score pass, and the seed's check (which zeroes every Adam step)."""
    device = torch.device(config.device)
    np.random.seed(config.seed)  # SB3 samples from numpy's global generator
    q_network, target_network = _networks(config, env)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.lr, eps=config.adam_eps)
    replay = reference_buffer(MICRO_CAPACITY, env.observation_space, env.action_space, device)
    rng = np.random.default_rng(config.seed)
    obs = random_observations(env.observation_space, MICRO_CAPACITY + 1, rng)
    for i in range(MICRO_CAPACITY):
        action = np.array([env.action_space.sample()])
        replay.add(obs[i : i + 1], obs[i + 1 : i + 2], action, np.zeros(1), np.zeros(1), [{}])
    generator = torch.Generator(device=device).manual_seed(config.seed)
    loss_fn = LOSSES[config.loss]

    def grad_step() -> object:
        data = replay.sample(config.batch_size)
        return reference_update(q_network, target_network, optimizer, data, config.gamma, loss_fn)

    def score_batch() -> torch.Tensor:
        return replay.sample(config.score_batch_size).observations

    return _micro_times(
        device,
        repeats,
        grad_step,
        lambda: dormant_scores(q_network, score_batch()),
        lambda: seed_redo_check(q_network, optimizer, score_batch(), config.tau, generator),
    )


def micro_population(
    config: DQNConfig, env: gym.Env, repeats: int, agents: int
) -> dict[str, float]:
    """The population's pieces at K = ``agents``: ``PopulationLearner.update`` on a
    ``PopulationReplay`` sample, ``scores`` and ``recycle``; times are per agent."""
    device = torch.device(config.device)
    configs = [config.replace(seed=config.seed + i) for i in range(agents)]
    generator = torch.Generator(device=device).manual_seed(config.seed)
    space = env.observation_space
    learner = PopulationLearner.from_configs(
        configs, space.shape, int(env.action_space.n), device, generator
    )
    dtype = torch.from_numpy(np.empty(0, dtype=space.dtype)).dtype
    replay = PopulationReplay(agents, MICRO_CAPACITY, space.shape, dtype, device)
    rng = np.random.default_rng(config.seed)
    for _ in range(MICRO_CAPACITY):
        obs = random_observations(space, agents, rng)
        actions = rng.integers(int(env.action_space.n), size=agents)
        no = np.zeros(agents, dtype=bool)
        replay.add(obs, actions, np.zeros(agents, dtype=np.float32), obs, no, no)

    def score_batch() -> torch.Tensor:
        return replay.sample_observations(config.score_batch_size, generator)

    times = _micro_times(
        device,
        repeats,
        lambda: learner.update(replay.sample(config.batch_size, generator)),
        lambda: learner.scores(score_batch()),
        lambda: learner.recycle(score_batch()),
    )
    return {name: seconds / agents for name, seconds in times.items()}


def _micro_times(
    device: torch.device,
    repeats: int,
    grad_step: Callable[[], object],
    score: Callable[[], object],
    redo: Callable[[], object],
) -> dict[str, float]:
    return {
        "grad_step_s": median_time(grad_step, device, repeats),
        "score_s": median_time(score, device, repeats),
        "redo_s": median_time(redo, device, repeats),
    }


def _networks(config: DQNConfig, env: gym.Env) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Online and target network as the single loop builds them."""
    torch.manual_seed(config.seed)
    q_network = q_network_for(env.observation_space.shape, int(env.action_space.n))
    q_network = q_network.to(config.device)
    return q_network, copy.deepcopy(q_network).requires_grad_(False)


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- output ---------------------------------------------------------------------------------


def where_measured(provenance: Mapping[str, Any], date: str, wall_time_s: float) -> list[str]:
    """Two lines saying when, with which code and on what a report was measured."""
    hardware = provenance["hardware"]
    git = provenance.get("git") or {}
    commit = git.get("commit", "unknown")[:10] + ("+dirty" if git.get("dirty") else "")
    return [
        f"redo bench, {date}, commit {commit}, {wall_time_s:.0f} s",
        f"device {provenance['device']} ({hardware['gpu'] or hardware['cpu']}), "
        f"{hardware['logical_cores']} cores, {hardware['torch_threads']} torch thread(s) for "
        "micro-benchmarks, "
        f"torch {provenance['torch_version']}, python {provenance['python_version']}",
    ]


def format_report(report: Report) -> str:
    """The report as text: a header saying where and how, the loop table, the micro table."""
    budgets = {r["env"]: (r["learning_starts"], r["window_env_steps"]) for r in report.rows}
    periods = sorted({r["redo_period"] for r in report.rows if r["redo"]})
    lines = [
        *where_measured(report.provenance, report.date, report.wall_time_s),
        *(
            f"{env}: {starts} random env steps, 1 warm-up + {INTERVALS} measured log intervals "
            f"= {steps} measured env steps per agent"
            for env, (starts, steps) in budgets.items()
        ),
        f"ReDo on: recycling every {'/'.join(map(str, periods))} gradient steps (the paper: "
        "1000), so that `resets` resets per agent happen in the measured window",
        "",
        "env steps per second after learning starts (population: aggregate over K agents)",
        _loop_table(report.rows),
        "",
        "micro-benchmarks: median ms per agent; score pass and ReDo check (score + reset, "
        "tau=1) in gradient steps",
        _micro_table(report.micro),
        "",
        "roofline of one agent's update (see redo.bench.roofline): FLOPs at the measured matmul "
        "throughput (compute) or each layer at its measured speed (kernels), plus Adam's "
        "element-wise step: the floors of a population's time per agent",
        _roofline_table(report.roofline),
    ]
    return "\n".join(lines)


def roofline_frame(roofline: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The roofline rows with readable units: MFLOP, GFLOP/s and milliseconds."""
    frame = pd.DataFrame(list(roofline))
    if frame.empty:
        return frame
    for key in ("kernel_bound_s", "kernel_floor_s"):  # absent before the layers were timed
        frame[key] = frame.get(key, float("nan"))
    return pd.DataFrame(
        {
            "env": frame["env_id"],
            "threads": frame["threads"],
            "MFLOP/update": (frame["flops_per_update"] / 1e6).round(1),
            "matmul GFLOP/s": (frame["matmul_flops_per_s"] / 1e9).round(1),
            "compute ms": (frame["compute_bound_s"] * 1e3).round(3),
            "kernels ms": (frame["kernel_bound_s"] * 1e3).round(3),
            "adam ms": (frame["adam_s"] * 1e3).round(3),
            "floor ms (compute)": (frame["per_agent_floor_s"] * 1e3).round(3),
            "floor ms (kernels)": (frame["kernel_floor_s"] * 1e3).round(3),
            "update ms": (frame["update_s"] * 1e3).round(3),
        }
    )


def layer_frame(roofline: Mapping[str, Any]) -> pd.DataFrame:
    """One roofline's layers (:class:`redo.bench.roofline.LayerKernel`): their FLOPs and time per
    agent, the throughput that makes, and the rows (one minibatch or K) it was reached with."""
    frame = pd.DataFrame(roofline["layers"])
    return pd.DataFrame(
        {
            "layer": frame["name"],
            "MFLOP/agent": (frame["flops"] / 1e6).round(1),
            "ms/agent": (frame["seconds"] * 1e3).round(3),
            "GFLOP/s": (frame["flops"] / frame["seconds"] / 1e9).round(1),
            "rows": frame["rows"],
        }
    )


def _roofline_table(roofline: Sequence[Mapping[str, Any]]) -> str:
    return roofline_frame(roofline).to_string(index=False)


def loop_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The loop rows with short column names, shares in percent and speeds rounded."""
    table = pd.DataFrame(list(rows))
    table["redo"] = table["redo"].map({False: "off", True: "on"})
    for name in ("update_share", "redo_share", "score_share"):
        table[name] = (100 * table[name]).round(1)
    for name in ("env_steps_per_s", "env_steps_per_s_per_agent"):
        table[name] = table[name].round(0).astype(int)
    table["speedup"] = table["speedup"].round(2)
    columns = {
        "env": "env",
        "redo": "redo",
        "method": "method",
        "agents": "K",
        "threads": "threads",
        "resets": "resets",
        "env_steps_per_s": "env steps/s",
        "env_steps_per_s_per_agent": "per agent",
        "speedup": "x single",
        "update_share": "update %",
        "redo_share": "redo %",
        "score_share": "score %",
    }
    return table[[c for c in columns if c in table]].rename(columns=columns)  # old: no threads


def _loop_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return loop_frame(rows).to_string(index=False)


def micro_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The micro-benchmark rows with times in milliseconds and short column names."""
    table = pd.DataFrame(list(rows))
    for name in ("grad_step_s", "score_s", "redo_s"):
        table[name] = 1e3 * table[name]
    columns = {
        "env": "env",
        "method": "method",
        "agents": "K",
        "threads": "threads",
        "grad_step_s": "grad step ms",
        "score_s": "score ms",
        "redo_s": "redo ms",
        "score_per_grad_step": "score/grad",
        "redo_per_grad_step": "redo/grad",
    }
    return table[[c for c in columns if c in table]].rename(columns=columns)  # old: no threads


def _micro_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return micro_frame(rows).to_string(index=False, float_format="{:.3g}".format)


# --- command line ---------------------------------------------------------------------------

#: BenchSettings field -> option, to name the option in an error message.
OPTIONS: dict[str, str] = {
    "envs": "--envs",
    "replay_ratio": "--replay-ratio",
    "population": "--population",
    "steps": "--steps",
    "learning_starts": "--learning-starts",
    "redo_period": "--redo-period",
    "repeats": "--repeats",
    "threads": "--threads",
    "rounds": "--rounds",
    "device": "--device",
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m redo bench``. Those that ``--quick`` changes default to None,
    so that a value given can be told from one left out."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options: list[tuple[str, dict[str, Any]]] = [
        ("--envs", {"nargs": "+", "metavar": "ID", "help": f"env ids (default: {' '.join(DEFAULT_ENVS)})"}),
        ("--replay-ratio", {"type": float, "metavar": "X", "help": "gradient steps per env step: 1/k or a whole number, as the reference trains every k env steps (default: 1)"}),
        ("--population", {"nargs": "+", "type": int, "metavar": "K", "help": "population sizes K, for every env (default: 1 8 32 on cpu, 1 8 64 256 on cuda, Atari at most 64; --quick: 1 8)"}),
        ("--steps", {"type": int, "metavar": "N", "help": "measured env steps per agent, after learning starts and one warm-up log interval, rounded to whole log intervals (default: per env family, below)"}),
        ("--learning-starts", {"type": int, "metavar": "N", "help": "env steps of random play before learning (default: per env family, below)"}),
        ("--redo-period", {"type": int, "metavar": "N", "help": f"gradient steps between resets in the ReDo rows (default: one log interval, at most {MAX_REDO_PERIOD}, so that at least {INTERVALS} resets fall in the window)"}),
        ("--repeats", {"type": int, "metavar": "N", "help": f"timed calls per micro-benchmark, after {WARMUP_CALLS} warm-up calls (default: {DEFAULT_REPEATS}; --quick: {QUICK_REPEATS})"}),
        ("--rounds", {"type": int, "metavar": "R", "help": f"interleaved measurements of every loop row; each row reports its median round (default: {DEFAULT_ROUNDS}; --quick: {QUICK_ROUNDS})"}),
        ("--threads", {"nargs": "+", "type": int, "default": [1], "metavar": "N", "help": "torch intra-op threads, 0 for torch's default; several: every loop row at each (default: 1; why: see redo.bench.runner)"}),
        ("--device", {"default": device, "help": f"torch device, cpu or cuda (default here: {device})"}),
        ("--out", {"default": "bench.json", "metavar": "PATH", "help": "JSON file of the results (default: bench.json)"}),
        ("--quick", {"action": "store_true", "help": "smoke run: the --quick budgets, K in 1 8, fewer repeats"}),
    ]  # fmt: skip
    for option, kwargs in options:
        parser.add_argument(option, **kwargs)


def bench_epilog() -> str:
    """The per-family budgets, for ``--help``."""
    lines = ["env steps per agent (learning starts + measured), by env family:"]
    for family, budget in BUDGETS.items():
        quick = QUICK_BUDGETS[family]
        limit = "" if budget.max_agents is None else f", default K <= {budget.max_agents}"
        lines.append(
            f"  {family:<8} {budget.learning_starts} + {budget.steps}{limit}"
            f"   (--quick: {quick.learning_starts} + {quick.steps})"
        )
    lines.append("rows: single = redo.agent.dqn.train, reference = cleanRL loop with the seed's ReDo")
    lines.append("habits (redo.bench.reference_loop), population = redo.population.train_population")
    return "\n".join(lines)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """Parsed options -> settings, filling what was left out (``--quick`` aware)."""
    return BenchSettings(
        envs=tuple(args.envs or DEFAULT_ENVS),
        replay_ratio=_given(args.replay_ratio, 1.0),
        population=None if args.population is None else tuple(args.population),
        steps=args.steps,
        learning_starts=args.learning_starts,
        redo_period=args.redo_period,
        repeats=_given(args.repeats, QUICK_REPEATS if args.quick else DEFAULT_REPEATS),
        threads=tuple(args.threads),
        rounds=_given(args.rounds, QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS),
        device=str(torch.device(args.device)),
        quick=args.quick,
    )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def run_bench_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m redo bench``: measure, print the tables, write the JSON; exit status."""
    try:
        settings = settings_from_args(args)
    except ConfigError as err:
        parser.error(f"argument {OPTIONS[err.field]}: {err}")
    except RuntimeError as err:  # torch.device() of a malformed name
        parser.error(f"argument --device: {err}")
    report = run_bench(settings)
    print(format_report(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


__all__ = [
    "BUDGETS",
    "DEFINITIONS",
    "INTERVALS",
    "QUICK_BUDGETS",
    "BenchSettings",
    "Budget",
    "Report",
    "Window",
    "add_bench_arguments",
    "bench_config",
    "bench_epilog",
    "format_report",
    "measure_population",
    "measure_reference",
    "measure_single",
    "median_time",
    "micro_population",
    "micro_reference",
    "micro_single",
    "random_observations",
    "run_bench",
    "run_bench_command",
    "settings_from_args",
    "where_measured",
]
