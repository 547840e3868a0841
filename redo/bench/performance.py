"""Reading stored benchmark reports and checking them against the project's speed targets.

``python -m redo bench --out FILE`` writes one JSON report (:class:`redo.bench.Report`). The
book keeps the reports it shows under ``book/data/bench/``; this module loads them and turns
each into the table of targets that the Performance chapter prints: which target, the
measured value, the goal, and whether it was met. The checks are functions of the report
alone, so a reader's own report is judged by exactly the same rules.

**Targets** (ratios within one report, so that both sides ran on the same machine; with
``--rounds``, the median of the ratios of rounds measured side by side,
:func:`redo.bench.speed_ratio`):

* the single-agent loop is at least as fast as the reference loop (env steps/s);
* on a CPU a population of 8 (or the smallest measured population of more) reaches 1.5x the
  single loop's aggregate env steps/s, on a GPU a population of 64 reaches 30x; when the
  report measured several thread counts, each loop is taken at its fastest;
* the sweep of 12 MinAtar runs, as a whole command on the machine's workers, reaches 3x the
  env steps/s of one ``python -m redo train`` run (a ``--commands`` report,
  :mod:`redo.bench.commands`);
* ReDo costs under 3% of training time at the paper's settings: its share of the measured
  window, rescaled from the benchmark's recycling period and log interval (chosen short so
  that resets fall inside a short window) to the paper's F = 1000 and a log interval of 1000
  gradient steps. A second row compares whole runs, ReDo on against off: it also counts what
  the resets make slower afterwards (Adam's per-entry bias correction once counts differ),
  but at the benchmark's 10x shorter period, and with the noise of two separate windows.

**The roofline bound.** :func:`population_bound` is the speed-up over the single loop that no
population can exceed on the machine: even if acting, stepping and storing cost nothing, each
agent's update takes at least the per-agent floor of :mod:`redo.bench.roofline`, at the matmul
speed of the device (a bound of arithmetic) or at the speed its kernels reached on the
network's layers (a bound of this device and library). :func:`population_reach` compares the
target with them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from redo.bench.commands import sweep_speedup
from redo.bench.runner import speed_ratio
from redo.bench.settings import INTERVALS  # INTERVALS: log intervals in the window

#: The paper's recycling period and the log interval the shares are rescaled to.
PAPER_REDO_PERIOD = 1_000
PAPER_LOG_INTERVAL = 1_000

#: (device type, population size K, required speed-up over the single loop).
POPULATION_TARGETS: dict[str, tuple[int, float]] = {"cpu": (8, 1.5), "cuda": (64, 30.0)}
REDO_COST_TARGET = 0.03
#: The sweep of :mod:`redo.bench.commands` against one run: the goal (and the moonshot).
SWEEP_TARGET, SWEEP_MOONSHOT = 3.0, 4.0
REQUIRED_KEYS = ("command", "date", "provenance", "rows", "micro")


def load_reports(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``*.json`` benchmark report in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no benchmark folder {folder}: write a report there with "
            f"`python -m redo bench --out {folder}/<name>.json`"
        )
    reports = []
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in REQUIRED_KEYS if key not in report]
        if missing:
            raise ValueError(
                f"{path} is not a `python -m redo bench` report (missing {missing}); "
                "move it out of the folder or write it again with the bench command"
            )
        reports.append(report | {"file": path.name})
    return sorted(reports, key=lambda r: r["date"])


def device_type(report: Mapping[str, Any]) -> str:
    """``cpu`` or ``cuda``: the device the report's loops trained on."""
    return str(report["provenance"]["device"]).split(":")[0]


def target_checks(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (target, env, ReDo setting): measured value, goal, and whether it is met."""
    if report.get("commands"):
        speedup = sweep_speedup(report["commands"])
        name = "sweep of 12 runs / one train run, whole commands (median of rounds)"
        return pd.DataFrame(
            [
                _check(name, "MinAtar, replay ratio 1", speedup, SWEEP_TARGET),
                _check(f"{name}, moonshot", "MinAtar, replay ratio 1", speedup, SWEEP_MOONSHOT),
            ]
        )
    rows = pd.DataFrame(report["rows"])
    if "threads" not in rows:  # reports written before rows recorded their threads
        rows["threads"] = report["provenance"]["hardware"]["torch_threads"]
    checks = []
    for (env, redo), group in rows.groupby(["env", "redo"], sort=False):
        records = group.to_dict("records")
        label = f"{env}, ReDo {'on' if redo else 'off'}"
        for single in _rows_of(records, "single", 1):
            for reference in _rows_of(records, "reference", 1, single["threads"]):
                name = f"single / reference loop (threads {single['threads']})"
                checks.append(_check(name, label, speed_ratio(single, reference), 1.0))
        least, goal = POPULATION_TARGETS[device_type(report)]
        sizes = sorted({r["agents"] for r in records if r["method"] == "population"})
        agents = next((k for k in sizes if k >= least), least)
        population = _fastest(_rows_of(records, "population", agents))
        if population is not None:
            single = _fastest(_rows_of(records, "single", 1))
            name = (
                f"population K={agents} / single "
                f"(threads {population['threads']} / {single['threads']})"
            )
            checks.append(_check(name, label, speed_ratio(population, single), goal))
        if redo:
            off_records = rows[(rows["env"] == env) & ~rows["redo"]].to_dict("records")
            for row in records:
                if row["method"] not in ("single", "population"):
                    continue
                where = f"{row['method']} K={row['agents']}, threads {row['threads']}"
                cost = redo_cost_share(row)
                checks.append(_check(f"ReDo cost, {where}", env, cost, REDO_COST_TARGET, True))
                for off in _rows_of(off_records, row["method"], row["agents"], row["threads"]):
                    name = f"ReDo on / off, env steps/s, {where}"
                    ratio = speed_ratio(row, off)
                    checks.append(_check(name, env, ratio, 1 - REDO_COST_TARGET))
    return pd.DataFrame(checks)


def _rows_of(
    records: list[dict[str, Any]], method: str, agents: int, threads: int | None = None
) -> list[dict[str, Any]]:
    """The rows of one method and K (and thread count, if given)."""
    return [
        r
        for r in records
        if r["method"] == method
        and r["agents"] == agents
        and (threads is None or r["threads"] == threads)
    ]


def _fastest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest speed (a loop at the thread count that suits it), if any."""
    return max(records, key=lambda r: r["env_steps_per_s"], default=None)


def round_spread(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per loop row: its slowest and its fastest round as multiples of its median round, the
    noise against which the report's ratios are to be read."""
    frame = pd.DataFrame(report["rows"])
    rounds = frame["rounds_env_steps_per_s"].apply(pd.Series)
    return pd.DataFrame(
        {
            "env": frame["env"],
            "redo": frame["redo"].map({False: "off", True: "on"}),
            "method": frame["method"],
            "K": frame["agents"],
            "threads": frame["threads"],
            "slowest / median": rounds.min(axis=1) / frame["env_steps_per_s"],
            "fastest / median": rounds.max(axis=1) / frame["env_steps_per_s"],
        }
    )


def redo_cost_share(row: Mapping[str, Any]) -> float:
    """The share of training time in ReDo's resets and the logged dormant scores, rescaled
    from the benchmark's recycling period and log interval to the paper's (1000 each)."""
    log_interval = row["window_env_steps"] / INTERVALS * row["replay_ratio"]
    return float(
        row["redo_share"] * row["redo_period"] / PAPER_REDO_PERIOD
        + row["score_share"] * log_interval / PAPER_LOG_INTERVAL
    )


def population_bound(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per env and roofline (one per thread count): the single loop's time per env step, at
    its faster thread count as the population target takes it; the floors of the updates an
    env step owes, at matmul speed (compute) and at the layers' measured speed (kernels); and
    the largest speed-up over the single loop that a population on the roofline's threads
    could reach under each floor."""
    rows = pd.DataFrame(report["rows"])
    bounds = []
    for roofline in report.get("roofline", []):
        env = roofline["env_id"]
        records = rows[(rows["env"] == env) & ~rows["redo"]].to_dict("records")
        single = _fastest(_rows_of(records, "single", 1))
        if single is None:
            continue
        step_s = 1.0 / single["env_steps_per_s"]
        floors = {
            kind: single["replay_ratio"] * roofline.get(key, math.nan)
            for kind, key in (("compute", "per_agent_floor_s"), ("kernels", "kernel_floor_s"))
        }
        bounds.append(
            {"env": env, "threads": roofline.get("threads"), "single ms/env step": 1e3 * step_s}
            | {f"floor ms/env step ({kind})": 1e3 * floor for kind, floor in floors.items()}
            | {f"max speed-up ({kind})": step_s / floor for kind, floor in floors.items()}
        )
    return pd.DataFrame(bounds)


def population_reach(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per env: the population target's goal against the largest speed-up any measured thread
    count allows (:func:`population_bound`), and whether the goal lies within the bound at
    the layers' measured speed. A goal beyond it cannot be met with this device's kernels,
    however the population's own overhead is cut."""
    bound = population_bound(report)
    if bound.empty:
        return bound
    agents, goal = POPULATION_TARGETS[device_type(report)]
    reach = bound.groupby("env", sort=False)[["max speed-up (compute)", "max speed-up (kernels)"]]
    frame = reach.max().reset_index()
    frame.insert(1, "goal", f"K={agents}: {goal:g}x")
    frame["within reach of the kernels"] = frame["max speed-up (kernels)"] >= goal
    return frame


def _check(
    target: str, where: str, measured: float, goal: float, at_most: bool = False
) -> dict[str, Any]:
    met = measured <= goal if at_most else measured >= goal
    return {
        "target": target,
        "where": where,
        "measured": float(measured),
        "goal": f"{'<=' if at_most else '>='} {goal:g}",
        "met": bool(met),
    }
