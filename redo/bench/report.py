"""The benchmark's report: what was measured and where, as JSON, tables and text."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from redo.bench.commands import sweep_speedup
from redo.bench.settings import DEFINITIONS, INTERVALS, BenchSettings


@dataclass
class Report:
    """Everything one benchmark measured, and where; :meth:`to_json` is the file's content."""

    settings: BenchSettings
    provenance: dict[str, Any]
    date: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    micro: list[dict[str, Any]] = field(default_factory=list)
    roofline: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
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
            "commands": self.commands,
        }


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
    """The report as text: a header saying where and how, the loop table, the micro table
    (or, for ``--commands``, the commands' table and the sweep's speed-up)."""
    if report.commands:
        return "\n".join(
            [
                *where_measured(report.provenance, report.date, report.wall_time_s),
                "whole commands, interleaved rounds (env steps per second, start-up included)",
                command_frame(report.commands).to_string(index=False),
                f"sweep / single: {sweep_speedup(report.commands):.2f} (median of the rounds' ratios)",
            ]
        )
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


def command_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The commands' rows: command, round, runs, wall time and env steps per second."""
    frame = pd.DataFrame(rows)
    return frame[["command", "round", "runs", "wall_time_s", "env_steps_per_s"]].round(1)


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


__all__ = [
    "Report",
    "command_frame",
    "format_report",
    "layer_frame",
    "loop_frame",
    "micro_frame",
    "roofline_frame",
    "where_measured",
]
