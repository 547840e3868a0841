"""Every setting of a DQN run in one frozen dataclass, with per-family defaults and their sources.

A run is fully described by a :class:`DQNConfig`: it is what :func:`redo.agent.dqn.train` reads,
what the run record stores (``to_dict``), and what a resumed run is checked against. Build one
with :meth:`DQNConfig.for_env`, which fills the defaults of the environment's family
(:data:`FAMILY_DEFAULTS`) and then applies your overrides.

Units, because they are easy to confuse when the replay ratio changes:

* ``total_steps``, ``learning_starts``, ``target_update_period``, ``epsilon_decay_steps`` and
  ``checkpoint_interval`` count **environment (agent) steps**, as Dopamine counts its
  ``target_update_period``, ``min_replay_history`` and ``epsilon_decay_period``. For Atari one
  agent step is 4 emulator frames. Keeping the target period in env steps keeps the target
  network's age in *experience* fixed when the replay ratio changes.
* ``redo_period`` and ``log_interval`` count **gradient steps**, as the paper's recycling
  period F = 1000 does.
* ``replay_ratio`` is gradient steps per environment step after ``learning_starts``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from redo.agent.env_ids import EnvFamily, env_family
from redo.core.recycle import (
    BIAS_CHOICES,
    INIT_CHOICES,
    SCORE_CHOICES,
    SELECTION_CHOICES,
    STEP_CHOICES,
    BiasMode,
    InitName,
    ScoreName,
    Selection,
    StepMode,
)

LossName = Literal["huber", "mse"]
LOSS_CHOICES: tuple[str, ...] = ("huber", "mse")


@dataclass(frozen=True)
class OfTotal:
    """A default that is a fraction of ``total_steps`` (rounded down), for budgets that scale."""

    fraction: float
    cap: int | None = None

    def resolve(self, total_steps: int) -> int:
        value = int(self.fraction * total_steps)
        return value if self.cap is None else min(value, self.cap)


#: Settings shared by every family: the ReDo paper's (Sokar et al., 2023, section 4 and
#: appendix) recycling period F = 1000 gradient steps and 64 states to score, no ReDo unless
#: asked for, and the paper's reset (:mod:`redo.core.recycle`): the dormant neurons, new
#: incoming weights from the layer's own initial distribution, bias 0, Adam's step kept.
_COMMON: dict[str, Any] = {
    "seed": 0,
    "redo": False,
    "redo_period": 1_000,
    "score_batch_size": 64,
    "redo_score": "activation",
    "redo_selection": "dormant",
    "redo_init": "default",
    "redo_bias": "zero",
    "redo_step_mode": "keep",
    "device": "cpu",
}

#: The defaults of each environment family: the one place where they are written down.
FAMILY_DEFAULTS: dict[EnvFamily, dict[str, Any]] = {
    # Dopamine's JAX DQN (dopamine/jax/agents/dqn/configs/dqn.gin), the agent of the ReDo
    # paper's DQN experiments.
    "atari": {
        **_COMMON,
        "total_steps": 2_500_000,  # the paper's 10M frames at frame skip 4
        "replay_ratio": 0.25,  # update_period = 4
        "batch_size": 32,
        "buffer_size": 1_000_000,
        "learning_starts": 20_000,  # min_replay_history
        "target_update_period": 8_000,  # env steps
        "gamma": 0.99,
        "lr": 6.25e-5,
        "adam_eps": 1.5e-4,
        "epsilon_start": 1.0,
        "epsilon_end": 0.01,  # epsilon_train
        "epsilon_decay_steps": 250_000,  # epsilon_decay_period
        "loss": "huber",
        "log_interval": 1_000,
        "checkpoint_interval": 250_000,  # one Dopamine iteration
        # A million stacks of 4x84x84 uint8 frames is ~28 GB: too big to checkpoint by default,
        # so an Atari resume refills the buffer (see redo.agent.dqn.train).
        "save_replay_in_checkpoint": False,
    },
    # The MinAtar paper's DQN (Young & Tian, 2019, examples/dqn.py): batch 32, buffer 100k,
    # target update every 1000 frames, one update per frame, epsilon 1 -> 0.1 over the first
    # 100k frames after a replay start of 5000, Huber loss, gamma 0.99, 5M frames. It trains
    # with RMSProp (lr 2.5e-4, min squared gradient 0.01); we use Adam, as the ReDo paper's DQN
    # does, because ReDo's reset is defined on Adam's moments. lr keeps MinAtar's 2.5e-4;
    # eps = 3.125e-4 = 0.01 / 32 is the Adam epsilon of Adam-based MinAtar DQN baselines
    # (Obando-Ceron & Castro, 2021, "Revisiting Rainbow"), which plays the part of RMSProp's
    # 0.01 floor on the squared gradient.
    "minatar": {
        **_COMMON,
        "total_steps": 5_000_000,
        "replay_ratio": 1.0,  # TRAINING_FREQ = 1
        "batch_size": 32,
        "buffer_size": 100_000,
        "learning_starts": 5_000,  # REPLAY_START_SIZE
        "target_update_period": 1_000,  # env steps
        "gamma": 0.99,
        "lr": 2.5e-4,
        "adam_eps": 3.125e-4,
        "epsilon_start": 1.0,
        "epsilon_end": 0.1,
        "epsilon_decay_steps": 100_000,  # FIRST_N_FRAMES
        "loss": "huber",
        "log_interval": 1_000,
        "checkpoint_interval": 100_000,
        "save_replay_in_checkpoint": True,  # 100k MinAtar frames are a few tens of MB
    },
    # cleanRL's dqn.py for CartPole-v1 (Huang et al., 2022): 500k steps, Adam lr 2.5e-4 with
    # torch's eps, buffer 10k, batch 128, MSE loss, target copied every 500 steps, one update
    # every 10 steps, epsilon 1 -> 0.05 over half of the run, learning starts at 10k. The two
    # settings tied to the budget scale with it so that short runs still learn: learning starts
    # after 2% of the steps (cleanRL's 10k of 500k, capped there) and epsilon decays over 50%.
    "classic": {
        **_COMMON,
        "total_steps": 500_000,
        "replay_ratio": 0.1,  # train_frequency = 10
        "batch_size": 128,
        "buffer_size": 10_000,
        "learning_starts": OfTotal(0.02, cap=10_000),
        "target_update_period": 500,  # env steps
        "gamma": 0.99,
        "lr": 2.5e-4,
        "adam_eps": 1e-8,
        "epsilon_start": 1.0,
        "epsilon_end": 0.05,
        "epsilon_decay_steps": OfTotal(0.5),  # exploration_fraction
        "loss": "mse",
        "log_interval": 250,
        "checkpoint_interval": 50_000,
        "save_replay_in_checkpoint": True,
    },
}


def paper_tau(replay_ratio: float) -> float:
    """The paper's threshold: 0.025 at DQN's default replay ratio 0.25, 0.1 otherwise."""
    return 0.025 if replay_ratio == 0.25 else 0.1


class ConfigError(ValueError):
    """A setting with a value that is not allowed; ``field`` names the setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DQNConfig:
    """All settings of one DQN (+ ReDo) run. See the module docstring for the units.

    Construct with :meth:`for_env`; direct construction needs every field and is validated
    the same way.
    """

    env_id: str
    seed: int
    #: environment steps to train for
    total_steps: int
    #: gradient steps per environment step after learning_starts (0.25 = one every 4 steps)
    replay_ratio: float
    #: recycle dormant neurons (ReDo) every redo_period gradient steps
    redo: bool
    #: dormancy threshold of ReDo's reset, s_i <= tau
    tau: float
    #: F, in gradient steps
    redo_period: int
    #: states sampled from replay to score neurons (for ReDo and for the logged fractions)
    score_batch_size: int
    batch_size: int
    buffer_size: int
    #: env steps of experience collected before the first gradient step
    learning_starts: int
    #: env steps between copies of the online network into the target network
    target_update_period: int
    gamma: float
    lr: float
    adam_eps: float
    epsilon_start: float
    epsilon_end: float
    #: env steps after learning_starts over which epsilon falls linearly from start to end
    epsilon_decay_steps: int
    loss: LossName
    #: gradient steps between metric rows
    log_interval: int
    #: what ReDo scores neurons by: their activations (the paper) or the TD loss's gradient
    #: on their incoming weights (GraMa), on score_batch_size transitions
    redo_score: ScoreName
    #: which neurons a ReDo step recycles: dormant (the paper), random (as many), all
    redo_selection: Selection
    redo_init: InitName
    redo_bias: BiasMode
    redo_step_mode: StepMode
    device: str
    #: env steps between checkpoints (one is also saved at the end)
    checkpoint_interval: int
    save_replay_in_checkpoint: bool

    _INTS: ClassVar[dict[str, int]] = {  # integer fields and their minimum
        "seed": 0,
        "total_steps": 1,
        "redo_period": 1,
        "score_batch_size": 1,
        "batch_size": 1,
        "buffer_size": 2,
        "learning_starts": 0,
        "target_update_period": 1,
        "epsilon_decay_steps": 0,
        "log_interval": 1,
        "checkpoint_interval": 1,
    }
    #: settings with a fixed set of values, and the values
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss": LOSS_CHOICES,
        "redo_score": SCORE_CHOICES,
        "redo_selection": SELECTION_CHOICES,
        "redo_init": INIT_CHOICES,
        "redo_bias": BIAS_CHOICES,
        "redo_step_mode": STEP_CHOICES,
    }

    @classmethod
    def for_env(cls, env_id: str, **overrides: Any) -> DQNConfig:
        """The family defaults of ``env_id`` with ``overrides`` applied, validated.

        ``tau`` defaults to the paper's rule for the (possibly overridden) replay ratio, and
        budget-dependent defaults (:class:`OfTotal`) to the (possibly overridden) total_steps.
        """
        family = _family(env_id)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                unknown[0], f"unknown setting(s) {unknown}; settings are {sorted(names)}"
            )
        values = dict(FAMILY_DEFAULTS[family]) | overrides
        total = values["total_steps"]
        if isinstance(total, numbers.Integral) and total > 0:
            values = {
                k: v.resolve(int(total)) if isinstance(v, OfTotal) else v for k, v in values.items()
            }
        if "tau" not in overrides:
            ratio = values["replay_ratio"]
            values["tau"] = paper_tau(ratio) if isinstance(ratio, numbers.Real) else ratio
        return cls(env_id=env_id, **values)

    def __post_init__(self) -> None:
        _family(self.env_id)
        for name, minimum in self._INTS.items():
            object.__setattr__(self, name, _check_int(name, getattr(self, name), minimum))
        for name in ("redo", "save_replay_in_checkpoint"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    name, f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        for name, choices in self.CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(
                    name, f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}"
                )
        self._check_float("replay_ratio", "> 0", lambda v: v > 0)
        self._check_float("tau", ">= 0 (0 means exactly silent)", lambda v: v >= 0)
        self._check_float("gamma", "in [0, 1]", lambda v: 0 <= v <= 1)
        self._check_float("lr", "> 0", lambda v: v > 0)
        self._check_float("adam_eps", "> 0", lambda v: v > 0)
        self._check_float("epsilon_start", "in [0, 1]", lambda v: 0 <= v <= 1)
        self._check_float("epsilon_end", "in [0, 1]", lambda v: 0 <= v <= 1)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ConfigError(
                "device",
                f"device must be a torch device such as 'cpu' or 'cuda:0', got {self.device!r}",
            ) from err

    def _check_float(self, name: str, allowed: str, ok: Any) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(name, f"{name} must be a number {allowed}, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or not ok(value):
            raise ConfigError(name, f"{name} must be a finite number {allowed}, got {value}")
        object.__setattr__(self, name, value)  # 1 and 1.0 are the same setting: store floats

    @property
    def family(self) -> EnvFamily:
        return env_family(self.env_id)

    def replace(self, **changes: Any) -> DQNConfig:
        """A copy with ``changes`` applied and validated (tau is *not* re-derived)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict (str, int, float and bool values only)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DQNConfig:
        """Rebuild a config from :meth:`to_dict` output, e.g. a run record's ``config``."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, extra = sorted(names - set(data)), sorted(set(data) - names)
        if missing or extra:
            raise ConfigError(
                (missing or extra)[0],
                f"a DQNConfig dict needs exactly the settings {sorted(names)}: "
                f"missing {missing}, unknown {extra}",
            )
        return cls(**data)


def differing_settings(
    stored: Mapping[str, Any], config: DQNConfig, ignore: tuple[str, ...] = ()
) -> list[str]:
    """The settings, but ``ignore``, in which a stored run's config (``run.json``) differs
    from ``config``, sorted: what every "is this the same run?" check reports."""
    given = config.to_dict()
    keys = (set(stored) | set(given)) - set(ignore)
    return sorted(k for k in keys if stored.get(k, _ABSENT) != given.get(k, _ABSENT))


_ABSENT = object()


def describe_redo(config: DQNConfig | Mapping[str, Any]) -> str:
    """Which ReDo a run used, in words: "the paper's ReDo" for the defaults, else the settings
    that differ from them (or "no ReDo"). The paper's threshold depends on the replay ratio
    (:func:`paper_tau`), so a tau is named only where it differs from that rule's."""
    values = config.to_dict() if isinstance(config, DQNConfig) else config
    if not values["redo"]:
        return "no ReDo"
    changed = [
        f"{key.removeprefix('redo_')}={values[key]}"
        for key in (*REDO_OPTIONS, "redo_period")
        if values[key] != _COMMON[key]
    ]
    if values["tau"] != paper_tau(values["replay_ratio"]):
        changed.append(f"tau={values['tau']:g}")
    return "the paper's ReDo" if not changed else f"ReDo with {', '.join(changed)}"


#: The settings that choose a ReDo variant (their defaults are the paper's).
REDO_OPTIONS: tuple[str, ...] = (
    "redo_score",
    "redo_selection",
    "redo_init",
    "redo_bias",
    "redo_step_mode",
)


def _family(env_id: object) -> EnvFamily:
    if not isinstance(env_id, str):
        raise ConfigError("env_id", f"env_id must be a string, got {env_id!r}")
    try:
        return env_family(env_id)
    except ValueError as err:
        raise ConfigError("env_id", str(err)) from err


def _check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as a Python int (numpy integers are fine, so that ``to_dict`` is JSON-safe)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(name, f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


__all__ = [
    "FAMILY_DEFAULTS",
    "LOSS_CHOICES",
    "REDO_OPTIONS",
    "ConfigError",
    "DQNConfig",
    "LossName",
    "OfTotal",
    "describe_redo",
    "differing_settings",
    "paper_tau",
]
