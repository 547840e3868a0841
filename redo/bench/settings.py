"""What ``python -m redo bench`` measures: budgets per env family, the settings, the window."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from redo.agent.config import ConfigError
from redo.agent.env_ids import EnvFamily, env_family

#: Log intervals in the measured window; one more before them is warm-up.
INTERVALS = 4
#: Calls of a micro-benchmark before the timed ones (caches, allocator, lazy init).
WARMUP_CALLS = 3
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
    #: time only the whole commands of :mod:`redo.bench.commands`, nothing else
    commands: bool = False

    def __post_init__(self) -> None:
        if not self.envs or len(set(self.envs)) != len(self.envs):
            raise ConfigError("envs", f"envs must be distinct env ids, got {list(self.envs)}")
        for env_id in self.envs:
            try:
                env_family(env_id)
            except ValueError as err:
                raise ConfigError("envs", str(err)) from err
        from redo.bench.reference_loop import train_schedule  # it loads stable-baselines3

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
            learning_starts=given(self.learning_starts, budget.learning_starts),
            steps=given(self.steps, budget.steps),
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
        if self.commands:  # the whole commands are fixed: only the rounds vary
            return f"python -m redo bench --commands --rounds {self.rounds}"
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
        flags = (["--quick"] if self.quick else []) + (["--commands"] if self.commands else [])
        return " ".join(parts + flags)


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


def given(value: Any, default: Any) -> Any:
    return default if value is None else value


__all__ = [
    "BUDGETS",
    "DEFAULT_ENVS",
    "DEFAULT_POPULATION",
    "DEFINITIONS",
    "INTERVALS",
    "MAX_REDO_PERIOD",
    "MICRO_CAPACITY",
    "MICRO_TAU",
    "QUICK_BUDGETS",
    "QUICK_POPULATION",
    "SEED",
    "WARMUP_CALLS",
    "BenchSettings",
    "Budget",
    "Window",
    "given",
]
