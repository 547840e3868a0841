"""The one-step TD target and update, checked against numbers worked out by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from redo.agent.replay import ReplaySamples
from redo.agent.td import LOSSES, td_target, td_update


def test_td_target_by_hand():
    rewards = torch.tensor([1.0, 2.0, 0.5])
    terminated = torch.tensor([False, True, False])
    next_q = torch.tensor([[1.0, 3.0], [5.0, 4.0], [-2.0, -1.0]])
    target = td_target(rewards, terminated, next_q, gamma=0.9)
    # r + 0.9 * max: 1 + 2.7; terminated: r only, the 5 is never read; 0.5 - 0.9
    torch.testing.assert_close(target, torch.tensor([3.7, 2.0, -0.4]))


def test_td_target_keeps_leading_dimensions():
    rewards = torch.zeros(2, 3)
    terminated = torch.tensor([[True, False, False], [False, False, True]])
    next_q = torch.arange(12.0).reshape(2, 3, 2)
    target = td_target(rewards, terminated, next_q, gamma=1.0)
    torch.testing.assert_close(target, torch.tensor([[0.0, 3.0, 5.0], [7.0, 9.0, 0.0]]))


def linear(weight):
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


def tiny_batch():
    return ReplaySamples(
        observations=np.array([[1.0, 2.0], [3.0, 0.0]], dtype=np.float32),
        actions=np.array([0, 1]),
        rewards=np.array([1.0, -1.0], dtype=np.float32),
        next_observations=np.array([[1.0, 1.0], [2.0, 0.0]], dtype=np.float32),
        terminated=np.array([False, True]),
    )


def test_td_update_bootstraps_from_the_target_network_by_hand():
    online = linear([[1.0, 0.0], [0.0, 1.0]])  # Q(s) = s
    target = linear([[0.0, 2.0], [1.0, 0.0]])
    optimizer = torch.optim.SGD(online.parameters(), lr=0.1)
    loss, q_mean = td_update(online, target, optimizer, tiny_batch(), 0.5, LOSSES["mse"])
    # Q(s, a) taken: [1, 0]. Target net on s': [[2, 1], [0, 2]], max [2, 2]; targets
    # [1 + 0.5 * 2, -1 (terminated)] = [2, -1]. The online net's max ([1, 2]) would give
    # targets [1.5, -1] and a loss of 0.625.
    assert loss == pytest.approx(((1 - 2) ** 2 + (0 + 1) ** 2) / 2)
    assert q_mean == pytest.approx(0.5)
    # dL/dQ = 2 (Q - y) / 2 = [-1, 1]: row 0 gets -1 * s_0, row 1 gets 1 * s_1
    torch.testing.assert_close(online.weight, torch.tensor([[1.1, 0.2], [-0.3, 1.0]]))
    torch.testing.assert_close(target.weight, torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
    assert target.weight.grad is None


def test_td_update_huber_loss():
    online, target = linear([[1.0, 0.0], [0.0, 1.0]]), linear([[0.0, 2.0], [1.0, 0.0]])
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)
    loss, _ = td_update(online, target, optimizer, tiny_batch(), 0.5, LOSSES["huber"])
    assert loss == pytest.approx(0.5)  # two errors of size 1: 0.5 * 1^2 each


def test_losses_are_the_named_ones():
    assert set(LOSSES) == {"huber", "mse"}
    errors = torch.tensor([0.5, 3.0])
    assert LOSSES["huber"](errors, torch.zeros(2)).item() == pytest.approx((0.125 + 2.5) / 2)
    assert LOSSES["mse"](errors, torch.zeros(2)).item() == pytest.approx((0.25 + 9) / 2)
