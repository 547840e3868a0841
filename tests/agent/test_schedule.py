"""The replay ratio's gradient steps and the epsilon schedule."""

import pytest

from redo.agent.config import DQNConfig
from redo.agent.schedule import linear_epsilon, updates_due


@pytest.mark.parametrize(("ratio", "every"), [(0.25, 4), (1, 1)])
def test_updates_due_spreads_fractional_ratios(ratio, every):
    done = 0
    for n in range(1, 401):
        due = updates_due(n, ratio, done)
        assert due == (1 if n % every == 0 else 0)
        done += due


def test_updates_due_makes_several_per_step_above_one():
    assert [updates_due(n, 3, 3 * (n - 1)) for n in range(1, 6)] == [3] * 5


def test_updates_due_is_exact_in_the_long_run():
    done = 0
    for n in range(1, 100_001):
        done += updates_due(n, 0.4, done)
        assert done == (2 * n) // 5
    assert updates_due(10**12, 0.29, 0) == 29 * 10**10  # no float drift (0.29 * 100 < 29)


def test_updates_due_rejects_impossible_counts():
    with pytest.raises(ValueError, match="only 2 are due"):
        updates_due(10, 0.25, 3)
    with pytest.raises(ValueError, match=">= 0"):
        updates_due(-1, 0.25, 0)
    with pytest.raises(ValueError, match="replay_ratio"):
        updates_due(4, 0.0, 0)


def test_epsilon_is_flat_then_linear_then_flat():
    config = DQNConfig.for_env(
        "CartPole-v1", learning_starts=100, epsilon_decay_steps=200, epsilon_end=0.05
    )
    assert linear_epsilon(0, config) == linear_epsilon(100, config) == 1.0
    assert linear_epsilon(200, config) == pytest.approx(0.525)
    assert linear_epsilon(300, config) == linear_epsilon(10_000, config) == 0.05


def test_epsilon_without_decay_drops_at_learning_starts():
    config = DQNConfig.for_env("CartPole-v1", learning_starts=10, epsilon_decay_steps=0)
    assert linear_epsilon(10, config) == 1.0
    assert linear_epsilon(11, config) == config.epsilon_end
