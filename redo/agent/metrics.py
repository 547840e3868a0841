"""What one agent logs: dormant fractions at the paper's thresholds, and its metric rows.

Every ``log_interval`` gradient steps a metrics row records the dormant fractions (measured
whether or not ReDo is on), what ReDo recycled (``redo/recycled_again``: how many of those
the check before had recycled too, i.e. neurons a reset did not revive), the mean TD loss
and Q, epsilon, speed, mean episode return, and the cumulative wall time spent in gradient
steps, in dormant scoring for the log, and in ReDo resets. At a gradient step where ReDo
also recycles, the fractions are those of the batch that decided the reset, measured
*before* it (as the official code logs them), and ``redo/scored_before_reset`` is 1; between
resets they come from a score batch of their own. A row right after a reset therefore never
shows the neurons ReDo just revived.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from redo.core.dormant import PAPER_TAUS, dormant_scores, dormant_summary

#: Metric columns that measure time, which differ between otherwise identical runs.
TIMING_COLUMNS: tuple[str, ...] = (
    "wall_time_s",
    "sps",
    "time/update_s",
    "time/score_s",
    "time/redo_s",
)


def dormant_columns(
    q_network: nn.Module, x: Tensor, taus: tuple[float, ...] = PAPER_TAUS
) -> dict[str, float]:
    """Dormant fractions on the batch ``x``: overall (``dormant/tau=0.1``, all layers' neurons
    pooled, as the paper plots), per layer (``dormant/tau=0.1/fc1``) and the mean of the layer
    fractions (``dormant_mean_layer/tau=0.1``)."""
    return dormant_columns_from_scores(dormant_scores(q_network, x), taus)


def dormant_columns_from_scores(
    scores: Mapping[str, Tensor], taus: tuple[float, ...] = PAPER_TAUS
) -> dict[str, float]:
    """The columns of :func:`dormant_columns` from scores already computed (the population
    scores all its agents in one pass)."""
    summary = dormant_summary(scores, taus)
    columns: dict[str, float] = {}
    for tau in taus:
        key = f"tau={tau:g}"
        columns[f"dormant/{key}"] = summary.fraction(tau)
        columns[f"dormant_mean_layer/{key}"] = summary.mean_layer_fraction(tau)
        for layer in summary.layers:
            columns[f"dormant/{key}/{layer}"] = summary.fraction(tau, layer)
    return columns


@dataclass
class LoopState:
    """The loop's counters and running sums: everything an exact resume needs besides the
    networks, optimizer, generators, env and replay."""

    env_step: int = 0
    grad_step: int = 0
    #: updates_due counts from here: learning_starts, or a resume that refills the replay
    updates_from_env_step: int = 0
    updates_from_grad_step: int = 0
    redo_calls: int = 0
    recycled_total: int = 0
    #: the hidden neurons (indices over the layers in order) recycled at the last ReDo check
    recycled_last: list[int] = field(default_factory=list)
    time_update_s: float = 0.0
    time_score_s: float = 0.0
    time_redo_s: float = 0.0
    # the current logging interval
    loss_sum: float = 0.0
    q_sum: float = 0.0
    updates: int = 0
    recycled: int = 0
    recycled_again: int = 0
    returns: list[float] = field(default_factory=list)
    # wall clock of the interval (not saved: a resumed run measures its own speed)
    clock_start: float = field(default_factory=time.perf_counter)
    clock_env_step: int = 0

    _UNSAVED = ("clock_start", "clock_env_step")

    def start_interval(self) -> None:
        self.loss_sum = self.q_sum = 0.0
        self.updates = self.recycled = self.recycled_again = 0
        self.returns = []
        self.clock_start, self.clock_env_step = time.perf_counter(), self.env_step

    def count_recycled(self, masks: Mapping[str, Tensor]) -> int:
        """Count one ReDo check that recycled the neurons in ``masks`` (``{layer: bool}``) and
        return how many it recycled. ``recycled_again`` counts those the check before had
        recycled too: neurons that a reset did not bring back to life within one period."""
        chosen = torch.cat([mask.flatten() for mask in masks.values()]).nonzero().flatten()
        self.recycled_again += len(set(chosen.tolist()) & set(self.recycled_last))
        self.recycled_last = chosen.tolist()
        self.redo_calls += 1
        self.recycled += len(chosen)
        self.recycled_total += len(chosen)
        return len(chosen)

    def refill_before_learning(self, learning_starts: int) -> None:
        """Learn again only after ``learning_starts`` new transitions, and count the replay
        ratio from there: a resume without its replay buffer restarts with an empty one."""
        self.updates_from_env_step = self.env_step + learning_starts
        self.updates_from_grad_step = self.grad_step

    def last_return(self) -> float:
        return self.returns[-1] if self.returns else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._UNSAVED}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name not in self._UNSAVED:
                setattr(self, f.name, copy.copy(state[f.name]))
        self.clock_start, self.clock_env_step = time.perf_counter(), self.env_step


def metrics_row(
    state: LoopState, dormant: dict[str, float], epsilon: float, before_reset: bool
) -> dict[str, Any]:
    """One metrics row for the interval that ends now; ``before_reset`` says that ``dormant``
    holds the scores of the batch that decided this step's ReDo reset."""
    elapsed = time.perf_counter() - state.clock_start
    return {
        "env_step": state.env_step,
        "grad_step": state.grad_step,
        **dormant,
        "redo/recycled": state.recycled,
        "redo/recycled_again": state.recycled_again,
        "redo/recycled_total": state.recycled_total,
        "redo/calls": state.redo_calls,
        "redo/scored_before_reset": int(before_reset),
        "loss": state.loss_sum / state.updates if state.updates else math.nan,
        "q_mean": state.q_sum / state.updates if state.updates else math.nan,
        "epsilon": epsilon,
        "episodes": len(state.returns),
        "return_mean": float(np.mean(state.returns)) if state.returns else math.nan,
        "sps": (state.env_step - state.clock_env_step) / elapsed if elapsed > 0 else math.nan,
        "time/update_s": state.time_update_s,
        "time/score_s": state.time_score_s,
        "time/redo_s": state.time_redo_s,
    }


__all__ = [
    "TIMING_COLUMNS",
    "LoopState",
    "dormant_columns",
    "dormant_columns_from_scores",
    "metrics_row",
]
