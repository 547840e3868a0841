"""``python -m redo bench`` on the command line: its options, and the command itself.

Only the option definitions load with the parser; the benchmark itself (torch work,
environments, populations) loads when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from redo.agent.config import ConfigError
from redo.bench.settings import (
    BUDGETS,
    DEFAULT_ENVS,
    DEFAULT_REPEATS,
    DEFAULT_ROUNDS,
    INTERVALS,
    MAX_REDO_PERIOD,
    QUICK_BUDGETS,
    QUICK_REPEATS,
    QUICK_ROUNDS,
    WARMUP_CALLS,
    BenchSettings,
    given,
)

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
        ("--commands", {"action": "store_true", "help": "time only whole commands side by side: python -m redo train of one MinAtar run against python -m redo sweep of 12 (see redo.bench.commands), --rounds times"}),
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
    lines.append(
        "rows: single = redo.agent.dqn.train, reference = cleanRL loop with the seed's ReDo"
    )
    lines.append(
        "habits (redo.bench.reference_loop), population = redo.population.train_population"
    )
    return "\n".join(lines)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """Parsed options -> settings, filling what was left out (``--quick`` aware)."""
    return BenchSettings(
        envs=tuple(args.envs or DEFAULT_ENVS),
        replay_ratio=given(args.replay_ratio, 1.0),
        population=None if args.population is None else tuple(args.population),
        steps=args.steps,
        learning_starts=args.learning_starts,
        redo_period=args.redo_period,
        repeats=given(args.repeats, QUICK_REPEATS if args.quick else DEFAULT_REPEATS),
        threads=tuple(args.threads),
        rounds=given(args.rounds, QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS),
        device=str(torch.device(args.device)),
        quick=args.quick,
        commands=args.commands,
    )


def run_bench_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``python -m redo bench``: measure, print the tables, write the JSON; exit status."""
    try:
        settings = settings_from_args(args)
    except ConfigError as err:
        parser.error(f"argument {OPTIONS[err.field]}: {err}")
    except RuntimeError as err:  # torch.device() of a malformed name
        parser.error(f"argument --device: {err}")
    from redo.bench.report import format_report
    from redo.bench.runner import run_bench

    report = run_bench(settings)
    print(format_report(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


__all__ = [
    "add_bench_arguments",
    "bench_epilog",
    "run_bench_command",
    "settings_from_args",
]
