"""Command line: ``python -m redo train --env MinAtar/Breakout-v1 --redo --replay-ratio 1``.

Every :class:`redo.config.DQNConfig` setting is an option; an option left out takes the
default of the environment's family (:data:`redo.config.FAMILY_DEFAULTS`), which ``--help``
lists. Bad values end the program with exit status 2 and one line naming the option and what
is allowed: the checks are the config's own, so the command line and the Python API accept
exactly the same settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redo.bench import add_bench_arguments, bench_epilog, run_bench_command
from redo.config import FAMILY_DEFAULTS, LOSS_CHOICES, ConfigError, DQNConfig, OfTotal
from redo.envs import describe_supported
from redo.recycle import BIAS_CHOICES, INIT_CHOICES, STEP_CHOICES
from redo.results import CHECKPOINT_FILE, RUN_FILES

#: DQNConfig field -> (option, help). Options differ from field names only where a shorter
#: name reads better on a command line.
OPTIONS: dict[str, tuple[str, str]] = {
    "env_id": ("--env", "environment id"),
    "seed": ("--seed", "random seed of the network, env, replay sampling and ReDo"),
    "total_steps": ("--steps", "environment steps to train for"),
    "replay_ratio": (
        "--replay-ratio",
        "gradient steps per environment step, any number > 0 (0.25 = one update every 4 steps)",
    ),
    "redo": ("--redo", "recycle dormant neurons (ReDo) every --redo-period gradient steps"),
    "tau": ("--tau", "dormancy threshold of ReDo's reset (s_i <= tau), >= 0"),
    "redo_period": ("--redo-period", "F: gradient steps between ReDo resets"),
    "score_batch_size": (
        "--score-batch-size",
        "replay states that neurons are scored on, for ReDo and for the logged fractions",
    ),
    "batch_size": ("--batch-size", "replay transitions per gradient step"),
    "buffer_size": ("--buffer-size", "replay capacity in transitions"),
    "learning_starts": ("--learning-starts", "env steps collected before the first update"),
    "target_update_period": (
        "--target-update-period",
        "env steps between copies of the online network into the target network",
    ),
    "gamma": ("--gamma", "discount factor, in [0, 1]"),
    "lr": ("--lr", "Adam learning rate"),
    "adam_eps": ("--adam-eps", "Adam epsilon"),
    "epsilon_start": ("--epsilon-start", "exploration rate until --learning-starts"),
    "epsilon_end": ("--epsilon-end", "exploration rate after the decay"),
    "epsilon_decay_steps": (
        "--epsilon-decay-steps",
        "env steps after --learning-starts over which epsilon falls linearly",
    ),
    "loss": ("--loss", f"TD loss, one of {', '.join(LOSS_CHOICES)} (huber = smooth L1)"),
    "log_interval": ("--log-interval", "gradient steps between metric rows"),
    "redo_init": (
        "--redo-init",
        f"distribution of recycled incoming weights, one of {', '.join(INIT_CHOICES)}",
    ),
    "redo_bias": ("--redo-bias", f"recycled bias, one of {', '.join(BIAS_CHOICES)}"),
    "redo_step_mode": (
        "--redo-step-mode",
        f"Adam step count of recycled weights, one of {', '.join(STEP_CHOICES)}",
    ),
    "device": ("--device", "torch device, e.g. cpu or cuda"),
    "checkpoint_interval": (
        "--checkpoint-interval",
        "env steps between checkpoints (one is also saved at the end)",
    ),
    "save_replay_in_checkpoint": (
        "--save-replay",
        "store the replay buffer in checkpoints, which makes --resume exact",
    ),
}

_BOOLEAN = ("redo", "save_replay_in_checkpoint")
_CHOICES = {
    "loss": LOSS_CHOICES,
    "redo_init": INIT_CHOICES,
    "redo_bias": BIAS_CHOICES,
    "redo_step_mode": STEP_CHOICES,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``redo`` command with its subcommands (``train`` and ``bench``; ``sweep`` will sit
    beside them)."""
    parser = argparse.ArgumentParser(
        prog="python -m redo", description="ReDo: dormant neurons in deep RL, reproduced."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train one DQN agent, with or without ReDo",
        usage="%(prog)s --env ID [options]",
        description="Train one DQN agent (with ReDo if --redo) and record the run in a folder "
        "of --out. Options left out take the defaults of the environment's family.",
        epilog=_family_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    types = {f.name: f.type for f in dataclasses.fields(DQNConfig)}
    for name, (option, text) in OPTIONS.items():
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": f"{text} {_default(name)}"}
        if name == "env_id":
            kwargs |= {"required": True, "metavar": "ID", "help": f"{text}: {describe_supported()}"}
        elif name in _BOOLEAN:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif name in _CHOICES:
            kwargs["choices"] = _CHOICES[name]
        else:
            kind = str(types[name])
            kwargs["type"] = {"int": int, "float": float, "str": str}[kind]
            kwargs["metavar"] = {"int": "N", "float": "X", "str": "NAME"}[kind]
        train.add_argument(option, **kwargs)
    train.add_argument(
        "--out", default="runs", help="root folder of runs; the run goes to "
        "OUT/<env>/<redo|dqn>-rr<replay ratio>-s<seed> (default: runs)",
    )  # fmt: skip
    train.add_argument(
        "--resume", action="store_true", help="continue the run in that folder from its checkpoint"
    )
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: on when stderr is a terminal)",
    )
    bench = commands.add_parser(
        "bench",
        help="time our loops next to the reference loop structure",
        description="Measure env steps per second of the single-agent loop, the reference\n"
        "loop and the population at each K, with and without ReDo, and micro-benchmarks of\n"
        "one gradient step, score pass and ReDo check; print tables and write JSON.",
        epilog=bench_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(bench)
    return parser


def run_folder(out: str | Path, config: DQNConfig) -> Path:
    """``OUT/<env id>/<redo|dqn>-rr<replay ratio>-s<seed>``, e.g. ``runs/MinAtar/Breakout-v1/
    redo-rr1-s0``: the grid's axes are in the path, so runs never collide."""
    method = "redo" if config.redo else "dqn"
    return Path(out) / config.env_id / f"{method}-rr{config.replay_ratio:g}-s{config.seed}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return run_bench_command(args, _subparser(parser, "bench"))
    train_parser = _subparser(parser, args.command)
    overrides = {name: getattr(args, name) for name in OPTIONS if name != "env_id"}
    try:
        config = DQNConfig.for_env(
            args.env_id, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ConfigError as err:
        train_parser.error(f"argument {OPTIONS[err.field][0]}: {err}")
    folder = run_folder(args.out, config)
    _check_folder(train_parser, folder, args.resume)
    progress = sys.stderr.isatty() if args.progress is None else args.progress

    from redo.dqn import train  # torch, gymnasium and the envs load only when needed

    print(f"{'resuming' if args.resume else 'training'} {config.env_id} into {folder}")
    try:
        result = train(config, folder, resume=args.resume, progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted; continue with --resume (run folder {folder})", file=sys.stderr)
        return 130
    returns = result.episodes["episode_return"]
    last = returns.tail(10).mean() if len(returns) else math.nan
    print(
        f"done: {len(returns)} episodes, mean return of the last {min(10, len(returns))}: "
        f"{last:.2f}; run folder {folder}"
    )
    return 0


def _check_folder(parser: argparse.ArgumentParser, folder: Path, resume: bool) -> None:
    holds_run = any((folder / name).exists() for name in RUN_FILES)
    if holds_run and not resume:
        parser.error(
            f"argument --out: {folder} already holds a run; pass --resume to continue it, "
            "or choose another --out"
        )
    if resume and not (folder / CHECKPOINT_FILE).is_file():
        parser.error(
            f"argument --resume: {folder} holds no checkpoint to resume; "
            "run without --resume to start it"
        )


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The subcommand's parser, so that errors print its usage line rather than the top one."""
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError("the parser has no subcommands")


def _default(name: str) -> str:
    if name == "tau":
        return "(default: 0.025 at --replay-ratio 0.25, else 0.1, as in the paper)"
    values = {family: defaults.get(name) for family, defaults in FAMILY_DEFAULTS.items()}
    if name in _BOOLEAN and len(set(values.values())) == 1:
        return f"(default: {'on' if values['atari'] else 'off'})"
    if len({repr(v) for v in values.values()}) == 1:
        return f"(default: {_show(values['atari'])})"
    return "(default: family default)"


def _family_table() -> str:
    """Epilog: the settings whose default depends on the environment family."""
    names = [
        name
        for name in OPTIONS
        if name != "env_id" and len({repr(d.get(name)) for d in FAMILY_DEFAULTS.values()}) > 1
    ]
    families = list(FAMILY_DEFAULTS)
    width = max(len(OPTIONS[n][0]) for n in names)
    cell = 2 + max(len(_show(d[n])) for d in FAMILY_DEFAULTS.values() for n in names)
    lines = ["family defaults (ALE/*-v5 = atari, MinAtar/* = minatar, the rest = classic):"]
    lines.append(f"  {'':{width}}" + "".join(f"{f:>{cell}}" for f in families))
    for name in names:
        cells = "".join(f"{_show(FAMILY_DEFAULTS[f][name]):>{cell}}" for f in families)
        lines.append(f"  {OPTIONS[name][0]:{width}}{cells}")
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, OfTotal):
        cap = "" if value.cap is None else f" (<= {value.cap})"
        return f"{value.fraction:.0%} of steps{cap}"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["OPTIONS", "build_parser", "main", "run_folder"]
