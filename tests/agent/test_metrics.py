"""Dormant columns, the loop's counters, and one metrics row."""

import math

import pytest
import torch

from redo.agent.metrics import (
    TIMING_COLUMNS,
    LoopState,
    dormant_columns,
    dormant_columns_from_scores,
    metrics_row,
)
from redo.core.dormant import PAPER_TAUS, dormant_scores
from redo.core.networks import q_network_for


def network_and_batch():
    torch.manual_seed(0)
    return q_network_for((4,), 2), torch.randn(64, 4)


def test_dormant_columns_name_every_tau_and_layer():
    network, x = network_and_batch()
    columns = dormant_columns(network, x)
    expected = set()
    for tau in ("0", "0.025", "0.1"):
        expected |= {f"dormant/tau={tau}", f"dormant_mean_layer/tau={tau}"}
        expected |= {f"dormant/tau={tau}/fc1", f"dormant/tau={tau}/fc2"}
    assert set(columns) == expected
    assert all(0 <= value <= 1 for value in columns.values())
    assert PAPER_TAUS == (0.0, 0.025, 0.1)


def test_dormant_columns_pool_the_layers_and_average_them():
    network, x = network_and_batch()
    with torch.no_grad():
        network.fc1.bias[:60] = -1e3  # 60 of fc1's 120 neurons dead
    columns = dormant_columns(network, x, taus=(0.0,))
    fc1, fc2 = columns["dormant/tau=0/fc1"], columns["dormant/tau=0/fc2"]
    assert fc1 >= 0.5
    assert columns["dormant/tau=0"] == pytest.approx((120 * fc1 + 84 * fc2) / 204)
    assert columns["dormant_mean_layer/tau=0"] == pytest.approx((fc1 + fc2) / 2)


def test_columns_from_scores_are_those_of_the_batch():
    network, x = network_and_batch()
    assert dormant_columns_from_scores(dormant_scores(network, x)) == dormant_columns(network, x)
    assert set(dormant_columns_from_scores(dormant_scores(network, x), (0.5,))) == {
        "dormant/tau=0.5",
        "dormant_mean_layer/tau=0.5",
        "dormant/tau=0.5/fc1",
        "dormant/tau=0.5/fc2",
    }


def test_metrics_row_says_where_its_scores_came_from():
    state = LoopState(env_step=120, grad_step=10)
    state.loss_sum, state.q_sum, state.updates = 3.0, 6.0, 2
    state.returns = [10.0, 20.0]
    dormant = {"dormant/tau=0.1": 0.25}
    row = metrics_row(state, dormant, epsilon=0.5, before_reset=True)
    assert row["redo/scored_before_reset"] == 1
    assert metrics_row(state, dormant, 0.5, before_reset=False)["redo/scored_before_reset"] == 0
    assert (row["env_step"], row["grad_step"], row["dormant/tau=0.1"]) == (120, 10, 0.25)
    assert (row["loss"], row["q_mean"], row["return_mean"], row["episodes"]) == (1.5, 3.0, 15, 2)
    assert set(TIMING_COLUMNS) - {"wall_time_s"} <= set(row)  # the writer adds the wall time


def test_metrics_row_of_an_empty_interval_is_nan_not_an_error():
    row = metrics_row(LoopState(), {}, epsilon=1.0, before_reset=False)
    assert math.isnan(row["loss"]) and math.isnan(row["q_mean"])
    assert math.isnan(row["return_mean"]) and row["episodes"] == 0


def test_loop_state_round_trips_without_its_clock():
    state = LoopState(env_step=50, grad_step=7, redo_calls=2, recycled_total=11)
    state.returns = [1.0, 2.0]
    saved = state.state_dict()
    assert "clock_start" not in saved and "clock_env_step" not in saved
    restored = LoopState()
    restored.load_state_dict(saved)
    assert restored.state_dict() == saved
    assert restored.clock_env_step == 50  # speed is measured from the resume on
    state.returns.append(3.0)
    assert restored.returns == [1.0, 2.0]  # a copy, not the saved list


def test_count_recycled_counts_the_neurons_a_reset_did_not_revive():
    state = LoopState()
    first = {"conv": torch.tensor([True, False]), "fc": torch.tensor([True, True, False])}
    assert state.count_recycled(first) == 3
    assert (state.recycled, state.recycled_again, state.recycled_last) == (3, 0, [0, 2, 3])
    second = {"conv": torch.tensor([True, True]), "fc": torch.tensor([False, True, False])}
    assert state.count_recycled(second) == 3  # conv 0 and fc 1 were recycled last time too
    assert (state.redo_calls, state.recycled, state.recycled_total) == (2, 6, 6)
    assert (state.recycled_again, state.recycled_last) == (2, [0, 1, 3])
    assert metrics_row(state, {}, 0.1, before_reset=True)["redo/recycled_again"] == 2
    restored = LoopState()
    restored.load_state_dict(state.state_dict())
    assert restored.recycled_last == [0, 1, 3]  # a resume remembers the last check
    state.start_interval()
    assert (state.recycled, state.recycled_again, state.recycled_total) == (0, 0, 6)


def test_start_interval_and_refill():
    state = LoopState(env_step=300, grad_step=40, loss_sum=2.0, updates=4, recycled=3)
    state.returns = [5.0]
    state.start_interval()
    assert (state.loss_sum, state.updates, state.recycled, state.returns) == (0.0, 0, 0, [])
    assert math.isnan(state.last_return())
    state.refill_before_learning(100)
    assert (state.updates_from_env_step, state.updates_from_grad_step) == (400, 40)
