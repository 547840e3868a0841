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

import contextlib
import copy
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from redo.agent.config import DQNConfig
from redo.agent.dqn import train
from redo.agent.envs import make_env
from redo.agent.replay import ReplayBuffer
from redo.agent.streams import AgentStreams, seeded_q_network
from redo.agent.td import LOSSES, td_update
from redo.bench.commands import measure_commands
from redo.bench.reference_loop import (
    reference_buffer,
    reference_loop,
    reference_update,
    seed_redo_check,
)
from redo.bench.report import Report
from redo.bench.roofline import measure_roofline, median_time, random_observations
from redo.bench.settings import (
    MICRO_CAPACITY,
    MICRO_TAU,
    SEED,
    BenchSettings,
    Window,
)
from redo.core.dormant import dormant_scores
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import recycle_dormant, select_neurons
from redo.population.learner import PopulationLearner
from redo.population.lockstep import train_population
from redo.population.replay import PopulationReplay
from redo.records.provenance import collect_provenance

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
    if settings.commands:
        report.commands = measure_commands(settings.rounds, log)
        report.wall_time_s = time.perf_counter() - start
        return report
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
    ``PopulationReplay`` sample, ``scores`` and a reset of every agent; times are per agent."""
    device = torch.device(config.device)
    configs = [config.replace(seed=config.seed + i) for i in range(agents)]
    streams = [AgentStreams.from_seed(c.seed, device) for c in configs]
    space = env.observation_space
    learner = PopulationLearner.for_configs(configs, space.shape, int(env.action_space.n), device)
    dtype = torch.from_numpy(np.empty(0, dtype=space.dtype)).dtype
    replay = PopulationReplay(agents, MICRO_CAPACITY, space.shape, dtype, device)
    rng = np.random.default_rng(config.seed)
    for _ in range(MICRO_CAPACITY):
        obs = random_observations(space, agents, rng)
        actions = rng.integers(int(env.action_space.n), size=agents)
        no = np.zeros(agents, dtype=bool)
        replay.add(obs, actions, np.zeros(agents, dtype=np.float32), obs, no, no)
    everyone = list(range(agents))

    def score_batch() -> torch.Tensor:
        rngs = [s.redo_batch for s in streams]
        return replay.sample_observations(config.score_batch_size, everyone, rngs)

    def redo_check() -> None:
        scores = learner.scores(score_batch(), everyone)
        for i in everyone:
            generator = streams[i].redo_weights
            agent_scores = {name: s[i] for name, s in scores.items()}
            masks = select_neurons(agent_scores, config.tau, config.redo_selection, generator)
            learner.reset(
                i, masks, init=config.redo_init, bias=config.redo_bias,
                step_mode=config.redo_step_mode, whole_network=False, generator=generator,
            )  # fmt: skip

    times = _micro_times(
        device,
        repeats,
        lambda: learner.update(replay.sample(config.batch_size, [s.replay for s in streams])),
        lambda: learner.scores(score_batch(), everyone),
        redo_check,
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
    shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    q_network = seeded_q_network(shape, n_actions, config.seed, config.device)
    return q_network, copy.deepcopy(q_network).requires_grad_(False)


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = [
    "add_speedups",
    "bench_config",
    "intra_op_threads",
    "loop_rows",
    "measure_population",
    "measure_reference",
    "measure_single",
    "median_round",
    "micro_population",
    "micro_reference",
    "micro_rows",
    "micro_single",
    "run_bench",
    "speed_ratio",
]
