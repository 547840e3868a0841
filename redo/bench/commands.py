"""Whole commands timed side by side: a sweep of 12 MinAtar runs against one ``train`` run.

This is the speed a user sees, start-up included: ``python -m redo train`` of one run against
``python -m redo sweep`` of 2 games x 2 methods x 3 seeds at the same budget, each run as a
fresh process, in interleaved rounds (single, sweep, single, sweep, ...) so that a slow moment
of a shared machine spoils one round, not the ratio. Speeds are environment steps per second:
the single run's steps over its wall time, the sweep's 12 runs' steps over its wall time. The
ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

#: The env steps of every run, and the random steps before learning, as in the speed issue.
STEPS, LEARNING_STARTS = 6000, 1000
SINGLE: tuple[str, ...] = (
    "train", "--env", "MinAtar/Breakout-v1", "--replay-ratio", "1", "--redo",
    "--steps", str(STEPS), "--learning-starts", str(LEARNING_STARTS), "--no-progress",
)  # fmt: skip
SWEEP: tuple[str, ...] = (
    "sweep", "--envs", "MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1",
    "--methods", "dqn", "redo", "--replay-ratios", "1", "--seeds", "0", "1", "2",
    "--steps", str(STEPS), "--set", f"learning_starts={LEARNING_STARTS}", "--no-progress",
)  # fmt: skip
#: The runs of each command.
RUNS = {"single": 1, "sweep": 12}


def command_line(argv: Sequence[str]) -> str:
    """``python -m redo ...`` as a reader would type it (without the output folder)."""
    return " ".join(["python -m redo", *argv])


def measure_commands(
    rounds: int, log: Callable[[str], None], extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One row per command and round: its command line, wall time and env steps per second.
    ``extra`` options are added to both commands (e.g. a shorter ``--steps`` in tests)."""
    rows = []
    for round_ in range(rounds):
        for name, argv in (("single", SINGLE), ("sweep", SWEEP)):
            argv = (*argv, *extra)
            with tempfile.TemporaryDirectory(prefix="redo-bench-") as out:
                tic = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "redo", *argv, "--out", out],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                wall = time.perf_counter() - tic
            steps = RUNS[name] * _steps(argv)
            rows.append(
                {
                    "command": name,
                    "command_line": command_line(argv),
                    "round": round_,
                    "runs": RUNS[name],
                    "env_steps": steps,
                    "wall_time_s": wall,
                    "env_steps_per_s": steps / wall,
                }
            )
            log(f"command {name:<6} round {round_}: {steps / wall:.0f} env steps/s ({wall:.1f} s)")
    return rows


def sweep_speedup(rows: Sequence[dict[str, Any]]) -> float:
    """The median over rounds of the sweep's env steps per second over the single run's."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["command"]] = row["env_steps_per_s"]
    ratios = [r["sweep"] / r["single"] for r in by_round.values() if len(r) == 2]
    if not ratios:
        raise ValueError("no round measured both commands")
    return statistics.median(ratios)


def _steps(argv: Sequence[str]) -> int:
    """The value of the last ``--steps`` in ``argv``."""
    return int(argv[len(argv) - 1 - list(reversed(argv)).index("--steps") + 1])


__all__ = [
    "LEARNING_STARTS",
    "RUNS",
    "SINGLE",
    "STEPS",
    "SWEEP",
    "command_line",
    "measure_commands",
    "sweep_speedup",
]
