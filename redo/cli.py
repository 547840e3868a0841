"""Command line: ``python -m redo train --env MinAtar/Breakout-v1 --redo --replay-ratio 1``.

Every :class:`redo.agent.config.DQNConfig` setting is an option; an option left out takes the
default of the environment's family (:data:`redo.agent.config.FAMILY_DEFAULTS`), which ``--help``
lists. Bad values end the program with exit status 2 and one line naming the option and what
is allowed: the checks are the config's own, so the command line and the Python API accept
exactly the same settings.

``python -m redo sweep --envs CartPole-v1 --out runs/sweep`` trains a grid of runs as
populations (:mod:`redo.population.sweep`), here or on a Ray cluster; run again, it skips the finished
runs and resumes the interrupted populations. ``python -m redo bench`` times the loops.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from redo.agent.config import FAMILY_DEFAULTS, LOSS_CHOICES, ConfigError, DQNConfig, OfTotal
from redo.agent.env_ids import describe_supported
from redo.bench.command import add_bench_arguments, bench_epilog, run_bench_command
from redo.core.recycle import (
    BIAS_CHOICES,
    INIT_CHOICES,
    SCORE_CHOICES,
    SELECTION_CHOICES,
    STEP_CHOICES,
)
from redo.population.sweep import (
    AXES,
    METHODS,
    Grid,
    PopulationJob,
    SweepError,
    interrupt_on_sigterm,
    plan,
    planned_min_populations,
    run_folder,
    run_sweep,
)
from redo.records.record import CHECKPOINT_FILE, RUN_FILES

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
    "redo_score": (
        "--redo-score",
        f"what ReDo scores neurons by, one of {', '.join(SCORE_CHOICES)}: activation (the "
        "paper), gradient (GraMa: the TD loss's gradient on each neuron's incoming weights)",
    ),
    "redo_selection": (
        "--redo-selection",
        f"neurons a ReDo step recycles, one of {', '.join(SELECTION_CHOICES)}: dormant (the "
        "paper), random (as many as are dormant, at random), all (the whole network)",
    ),
    "redo_init": (
        "--redo-init",
        f"distribution of recycled incoming weights, one of {', '.join(INIT_CHOICES)}",
    ),
    "redo_bias": ("--redo-bias", f"recycled bias, one of {', '.join(BIAS_CHOICES)}"),
    "redo_step_mode": (
        "--redo-step-mode",
        f"Adam step count at a reset, one of {', '.join(STEP_CHOICES)}: keep (the paper), "
        "elementwise (restart the recycled entries'), zero_all (the seed repository)",
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
_CHOICES = DQNConfig.CHOICES


#: Grid axis (:class:`redo.population.sweep.Grid`) -> (option, type of a value, metavar, help) of
#: ``python -m redo sweep``.
SWEEP_AXES: dict[str, tuple[str, type, str, str]] = {
    "envs": ("--envs", str, "ID", "environment ids"),
    "methods": ("--methods", str, "METHOD", "dqn (without ReDo), redo (with ReDo), or both"),
    "replay_ratios": ("--replay-ratios", float, "X", "gradient steps per environment step"),
    "taus": ("--taus", float, "X", "dormancy thresholds of ReDo's reset"),
    "seeds": ("--seeds", int, "N", "random seeds"),
}

#: DQNConfig settings that ``sweep`` sets through an option of their own, not ``--set``.
_SWEEP_OWN_OPTIONS = {
    **{setting: SWEEP_AXES[axis][0] for axis, setting in AXES.items()},
    "total_steps": "--steps",
    "device": "--device",
}

_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


def build_parser() -> argparse.ArgumentParser:
    """The ``redo`` command with its subcommands ``train``, ``sweep`` and ``bench``."""
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
        "OUT/<env>/<redo|dqn>-rr<replay ratio>-s<seed>, with -tau<tau> before -s when --tau "
        "is not the paper's (default: runs)",
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
    sweep = commands.add_parser(
        "sweep",
        help="train a grid of runs as populations, here or on a Ray cluster",
        usage="%(prog)s --envs ID [ID ...] --out DIR [options]",
        description="Train every combination of --envs, --methods, --replay-ratios, --taus "
        "and --seeds, as populations of at most --max-population agents, one run folder each:"
        " OUT/<env>/<method>-rr<replay ratio>-s<seed> (with -tau<tau> before -s when tau is "
        "not the paper's). Run again, a sweep skips the finished runs, resumes the "
        "interrupted populations and trains the rest.",
    )
    add_sweep_arguments(sweep)
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
    add_campaign_arguments(commands)
    return parser


def add_campaign_arguments(commands: argparse._SubParsersAction) -> None:
    """``python -m redo campaign run|status|collect PLAN``."""
    campaign = commands.add_parser(
        "campaign",
        help="train a committed plan of sweeps over many sessions; its status",
        description="A campaign trains every block of a plan file (redo.population.campaign) "
        "in a working folder outside the repository, and copies each finished run's record "
        "into the block's data folder. Run it again to continue where it stopped.",
    )
    actions = campaign.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("run", "start or continue the campaign"),
        ("status", "planned, finished and running runs, hours spent and left"),
        ("collect", "copy finished runs into the data folders (run does it as it goes)"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("plan", metavar="PLAN", help="the plan file, e.g. campaigns/evidence.json")
        sub.add_argument(
            "--work",
            metavar="DIR",
            help="working folder (default: ~/.cache/redo-book/campaigns/<plan name>)",
        )
        if action in ("run", "status"):
            sub.add_argument(
                "--workers",
                type=_positive_int,
                metavar="N",
                help="populations trained at once (default: one per core)",
            )
        if action == "run":
            sub.add_argument(
                "--threads",
                type=_positive_int,
                default=1,
                metavar="N",
                help="torch threads per worker (default: 1)",
            )
            sub.add_argument("--device", help="torch device of the populations (default: cpu)")
            sub.add_argument(
                "--hours",
                type=_positive_float,
                metavar="H",
                help="start only the populations expected to finish within H hours at the "
                "fastest speed a finished population reached, with 25%% to spare; the others "
                "wait for a later run (for a session whose working folder may not outlive it)",
            )


def run_campaign_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m redo campaign ...``: exit status."""
    from redo.population import campaign
    from redo.population.sweep import local_workers

    try:
        plan = campaign.load_plan(args.plan)
    except ValueError as err:
        parser.error(f"argument PLAN: {err}")
    work = (Path(args.work) if args.work else campaign.default_work_dir(plan)).absolute()
    workers = getattr(args, "workers", None) or local_workers()
    if args.action == "status":
        print(campaign.format_status(plan, work, workers))
        return 0
    if args.action == "collect":
        copies = campaign.collect(plan, work)
        print(f"copied {_count(len(copies), 'finished run')} into the data folders")
        return 0
    start = time.perf_counter()

    def report(job: PopulationJob) -> None:
        print(f"[{time.perf_counter() - start:.0f} s] population {job.name} done "
              f"({_count(len(job.run_folders), 'run')} of block {job.out.relative_to(work)})", flush=True)  # fmt: skip

    print(f"campaign {plan.name}: working folder {work}, {workers} worker(s)", flush=True)
    interrupt_on_sigterm()  # `kill <pid>` stops it as Ctrl-C does, resumably
    try:
        started = campaign.run(
            plan, work, workers, args.threads, args.device, on_done=report, hours=args.hours
        )
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except SweepError as err:
        print(f"error: {err}; run the same command again to retry them", file=sys.stderr)
        return 1
    if args.hours is not None:
        print(f"{_count(len(started), 'population')} started within the budget of {args.hours:g} h; "
              "what is left would not have finished in it")  # fmt: skip
    print(campaign.format_status(plan, work, workers))
    return 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m redo sweep``: the grid's axes, then how to run it."""
    defaults = {f.name: f.default for f in dataclasses.fields(Grid)}
    for axis, (option, kind, metavar, text) in SWEEP_AXES.items():
        kwargs: dict[str, Any] = {"dest": axis, "nargs": "+", "type": kind, "metavar": metavar}
        if axis == "envs":
            kwargs |= {"required": True, "help": f"{text}: {describe_supported()}"}
        elif axis == "taus":
            kwargs["help"] = f"{text} (default: the paper's, 0.025 at replay ratio 0.25, else 0.1)"
        else:
            shown = " ".join(_show(v) for v in defaults[axis])
            kwargs |= {"default": list(defaults[axis]), "help": f"{text} (default: {shown})"}
        if axis == "methods":
            kwargs["choices"] = list(METHODS)
            del kwargs["metavar"]
        parser.add_argument(option, **kwargs)
    options: list[tuple[str, dict[str, Any]]] = [
        ("--steps", {"dest": "total_steps", "type": int, "metavar": "N", "help": "environment steps per run (default: family default, see python -m redo train --help)"}),
        ("--set", {"dest": "settings", "action": "append", "default": [], "type": _setting, "metavar": "NAME=VALUE", "help": "any other DQNConfig setting for every run, e.g. --set log_interval=500 --set redo_step_mode=keep; repeat for more (names: the options of python -m redo train, with _ for -)"}),
        ("--out", {"required": True, "metavar": "DIR", "help": "root folder of the sweep's runs and of its populations (OUT/populations)"}),
        ("--max-population", {"type": _positive_int, "default": 32, "metavar": "K", "help": "most agents trained together in one population (default: 32)"}),
        ("--device", {"help": "torch device the populations train on, e.g. cpu or cuda (default: cpu)"}),
        ("--workers", {"type": _positive_int, "metavar": "N", "help": "populations trained at once on this machine, each in its own process (default: one per core; 1: one after another, in this process)"}),
        ("--threads", {"type": _positive_int, "default": 1, "metavar": "N", "help": "torch threads of each worker (default: 1; small populations use a core each far better than several cores together)"}),
        ("--ray-address", {"metavar": "ADDR", "help": "run each population as a Ray task instead: 'local' starts Ray on this machine, 'auto' or HOST:PORT joins a cluster"}),
        ("--cpus-per-population", {"type": _non_negative, "default": 1.0, "metavar": "X", "help": "CPUs a population's Ray task asks for (default: 1)"}),
        ("--gpus-per-population", {"type": _non_negative, "default": 0.0, "metavar": "X", "help": "GPUs a population's Ray task asks for, e.g. 0.25 to share a GPU by 4 (default: 0)"}),
        ("--dry-run", {"action": "store_true", "help": "print the populations to train and the finished runs to skip, and exit"}),
        ("--progress", {"action": argparse.BooleanOptionalAction, "default": None, "help": "show a progress bar per population, without Ray (default: on when stderr is a terminal)"}),
    ]  # fmt: skip
    for option, kwargs in options:
        parser.add_argument(option, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return run_bench_command(args, _subparser(parser, "bench"))
    if args.command == "sweep":
        return run_sweep_command(args, _subparser(parser, "sweep"))
    if args.command == "campaign":
        # errors print the action's usage line, e.g. `python -m redo campaign run ...`
        return run_campaign_command(args, _subparser(_subparser(parser, "campaign"), args.action))
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

    from redo.agent.dqn import train  # torch, gymnasium and the envs load only when needed

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


def run_sweep_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m redo sweep``: plan the grid, print the plan or train it; exit status."""
    settings: dict[str, Any] = {}
    for name, value in args.settings:
        if name in settings:
            parser.error(f"argument --set: {name} is set twice")
        settings[name] = value
    if args.total_steps is not None:
        settings["total_steps"] = args.total_steps
    if args.device is not None:
        try:
            torch.device(args.device)
        except (RuntimeError, TypeError):
            parser.error(f"argument --device: not a torch device: {args.device!r}")
    axes = {axis: getattr(args, axis) or () for axis in SWEEP_AXES}
    out = Path(args.out)
    try:
        grid = Grid(**axes, settings=settings)
        # the populations run_sweep will train: as many as it has workers, where it can
        jobs = plan(
            grid, out, args.max_population, planned_min_populations(args.workers, args.ray_address)
        )
    except ConfigError as err:
        parser.error(f"argument {_sweep_option(err.field)}: {err}")
    except ValueError as err:  # a run folder under --out that the sweep cannot use
        parser.error(f"argument --out: {err}")
    planned = {f for job in jobs for f in job.run_folders}
    finished = [f for f in (run_folder(out, c) for c in grid.configs()) if f not in planned]
    new = sum(len(job.run_folders) for job in jobs if not job.resume)
    resumed = len(planned) - new
    print(
        f"sweep under {out}: {_count(new, 'new run')} and {resumed} to resume in "
        f"{_count(len(jobs), 'population')}; {_count(len(finished), 'finished run')} skipped"
    )
    if args.dry_run:
        for job in jobs:
            kind = "resume" if job.resume else "restart" if job.restart else "new"
            print(f"population {job.name} ({kind}, {_count(len(job.run_folders), 'run')}):")
            print("".join(f"  {member}\n" for member in job.members()), end="")
        if finished:
            print(f"finished, skipped ({_count(len(finished), 'run')}):")
            print("".join(f"  {f.relative_to(out)}\n" for f in finished), end="")
        return 0

    start = time.perf_counter()

    def report(job: PopulationJob) -> None:
        members = job.members()
        shown = ", ".join(members[:3]) + (
            f" and {len(members) - 3} more" if len(members) > 3 else ""
        )
        print(
            f"[{time.perf_counter() - start:.0f} s] population {job.name} done "
            f"({'resumed' if job.resume else 'restarted' if job.restart else 'new'}, "
            f"{_count(len(members), 'run')}): {shown}",
            flush=True,
        )

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    interrupt_on_sigterm()  # `kill <pid>` stops it as Ctrl-C does, resumably
    try:
        run_sweep(
            grid,
            out,
            max_population=args.max_population,
            device=args.device,
            workers=args.workers,
            threads=args.threads,
            ray_address=args.ray_address,
            cpus_per_population=args.cpus_per_population,
            gpus_per_population=args.gpus_per_population,
            progress=progress,
            on_done=report,
        )
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except SweepError as err:
        print(f"error: {err}; run the same command again to retry them", file=sys.stderr)
        return 1
    print(
        f"sweep done in {time.perf_counter() - start:.0f} s: {_count(new, 'run')} trained, "
        f"{resumed} resumed, {len(finished)} skipped as finished; runs under {out}"
    )
    return 0


def _setting(text: str) -> tuple[str, Any]:
    """``--set NAME=VALUE``: the value read as the DQNConfig field's type."""
    name, equals, value = text.partition("=")
    name = name.strip()
    types = {f.name: str(f.type) for f in dataclasses.fields(DQNConfig)}
    if not equals:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if name not in types:
        raise argparse.ArgumentTypeError(
            f"unknown setting {name!r}; settings are {sorted(set(types) - set(_SWEEP_OWN_OPTIONS))}"
        )
    if name in _SWEEP_OWN_OPTIONS:
        raise argparse.ArgumentTypeError(
            f"{name} has an option of its own: use {_SWEEP_OWN_OPTIONS[name]}"
        )
    kind = types[name]
    if kind == "bool":
        if value.lower() not in (*_TRUE, *_FALSE):
            raise argparse.ArgumentTypeError(
                f"{name}={value}: {name} takes true or false, got {value!r}"
            )
        return name, value.lower() in _TRUE
    parse = {"int": int, "float": float}.get(kind, str)
    try:
        return name, parse(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name}={value}: invalid {kind} value {value!r}"
        ) from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _sweep_option(name: str) -> str:
    """The ``sweep`` option behind a grid axis or a DQNConfig setting."""
    if name in SWEEP_AXES:
        return SWEEP_AXES[name][0]
    return _SWEEP_OWN_OPTIONS.get(name, "--set")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or value == math.inf:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


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


__all__ = [
    "OPTIONS",
    "SWEEP_AXES",
    "add_sweep_arguments",
    "build_parser",
    "main",
    "run_folder",
    "run_sweep_command",
]
