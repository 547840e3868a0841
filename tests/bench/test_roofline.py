"""The roofline's FLOP count against a hand count, and its derived bounds."""

from __future__ import annotations

import pytest

from redo.agent.config import DQNConfig
from redo.bench.roofline import measure_roofline

#: Multiply-adds per sample of the MinAtar Breakout network's layers (see the first test).
MINATAR_MACS = {"conv1": 36_864, "fc1": 131_072, "q": 384}


def test_minatar_update_flops_match_a_hand_count():
    """MinAtar Breakout (4 x 10 x 10 input, 3 actions), batch 32. Multiply-adds per sample:
    conv 3x3, 4 -> 16 channels on an 8 x 8 output: 36,864; dense 1024 -> 128: 131,072;
    dense 128 -> 3: 384. An update runs the online and the target forward (2 x), and the
    backward: the dense layers' input and weight gradients (2 x each), the conv's weight
    gradient only (its input needs none). 2 FLOPs per multiply-add."""
    forward = sum(MINATAR_MACS.values())
    backward = MINATAR_MACS["conv1"] + 2 * (MINATAR_MACS["fc1"] + MINATAR_MACS["q"])
    expected = 2 * 32 * (2 * forward + backward)
    roofline = measure_roofline(DQNConfig.for_env("MinAtar/Breakout-v1"), repeats=2)
    assert roofline.flops_per_update == expected == 40_730_624
    assert roofline.parameters == 16 * 4 * 9 + 16 + 1024 * 128 + 128 + 128 * 3 + 3


def test_floor_is_compute_bound_plus_adam():
    roofline = measure_roofline(DQNConfig.for_env("CartPole-v1"), repeats=2)
    assert roofline.compute_bound_s == pytest.approx(
        roofline.flops_per_update / roofline.matmul_flops_per_s
    )
    assert roofline.per_agent_floor_s == pytest.approx(roofline.compute_bound_s + roofline.adam_s)
    assert roofline.to_dict()["per_agent_floor_s"] == roofline.per_agent_floor_s
    assert 0 < roofline.adam_s < roofline.update_s


def test_layers_are_timed_on_one_update_worth_of_work_each():
    """Each layer does what the update does with it: two forwards (online, target) and a
    backward, with an input gradient for every layer but the first. So the layers' FLOPs
    add up to the update's, and each is timed at one minibatch or at K of them."""
    roofline = measure_roofline(DQNConfig.for_env("MinAtar/Breakout-v1"), repeats=2, population=4)
    flops = {layer.name: layer.flops for layer in roofline.layers}
    assert flops == {
        "conv1": 2 * 32 * 3 * MINATAR_MACS["conv1"],
        "fc1": 2 * 32 * 4 * MINATAR_MACS["fc1"],
        "q": 2 * 32 * 4 * MINATAR_MACS["q"],
    }
    assert sum(flops.values()) == roofline.flops_per_update
    assert all(layer.rows in (32, 4 * 32) and layer.seconds > 0 for layer in roofline.layers)
    assert roofline.kernel_bound_s == pytest.approx(sum(layer.seconds for layer in roofline.layers))
    assert roofline.kernel_floor_s == pytest.approx(roofline.kernel_bound_s + roofline.adam_s)
    stored = roofline.to_dict()
    assert stored["kernel_floor_s"] == roofline.kernel_floor_s
    assert stored["layers"][0] == {
        "name": "conv1",
        "flops": flops["conv1"],
        "seconds": roofline.layers[0].seconds,
        "rows": roofline.layers[0].rows,
    }
