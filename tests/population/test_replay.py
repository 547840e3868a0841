"""PopulationReplay: the single buffer's rules for K agents, sampled with each agent's own
generator by the package's one sampler."""

import numpy as np
import pytest
import torch

from redo.agent.replay import ReplayBuffer
from redo.population.replay import PopulationReplay

SHAPE = (2, 3, 3)


def filled(agents=3, capacity=20, steps=27, truncate_every=None, seed=0):
    """A population replay and one single buffer per agent with the same transitions."""
    rng = np.random.default_rng(seed)
    population = PopulationReplay(agents, capacity, SHAPE, torch.uint8)
    singles = [ReplayBuffer(capacity, SHAPE, np.uint8) for _ in range(agents)]
    obs = rng.integers(0, 255, (agents, *SHAPE), dtype=np.uint8)
    for step in range(steps):
        next_obs = rng.integers(0, 255, (agents, *SHAPE), dtype=np.uint8)
        actions = rng.integers(0, 4, agents)
        rewards = rng.random(agents).astype(np.float32)
        terminated = rng.random(agents) < 0.2
        truncated = np.zeros(agents, dtype=bool)
        if truncate_every and step % truncate_every == 0:
            truncated[:] = ~terminated
        population.add(obs, actions, rewards, next_obs, terminated, truncated)
        for k, single in enumerate(singles):
            single.add(
                obs[k], int(actions[k]), float(rewards[k]), next_obs[k], terminated[k], truncated[k]
            )
        obs = next_obs
    return population, singles


@pytest.mark.parametrize("steps", [7, 27])  # before and after the ring wraps
def test_each_agent_samples_what_its_single_buffer_samples(steps):
    population, singles = filled(steps=steps, truncate_every=3)
    rngs = [np.random.default_rng(s) for s in range(3)]
    twins = [np.random.default_rng(s) for s in range(3)]
    batch = population.sample(16, rngs)
    for k, single in enumerate(singles):
        expected = single.sample(16, twins[k])
        assert np.array_equal(batch.observations[k].numpy(), expected.observations)
        assert np.array_equal(batch.next_observations[k].numpy(), expected.next_observations)
        assert np.array_equal(batch.actions[k].numpy(), expected.actions)
        assert np.array_equal(batch.rewards[k].numpy(), expected.rewards)
        assert np.array_equal(batch.terminated[k].numpy(), expected.terminated)


def test_an_agents_draws_do_not_depend_on_the_other_agents():
    population, _ = filled()
    alone = population.sample_indices(8, [1], [np.random.default_rng(5)])
    together = population.sample_indices(
        8, [0, 1, 2], [np.random.default_rng(9), np.random.default_rng(5), np.random.default_rng(1)]
    )
    assert np.array_equal(alone[0], together[1])


def test_observations_of_a_subset_of_agents():
    population, singles = filled()
    x = population.sample_observations(
        5, [2, 0], [np.random.default_rng(3), np.random.default_rng(4)]
    )
    assert np.array_equal(x[0].numpy(), singles[2].sample_observations(5, np.random.default_rng(3)))
    assert np.array_equal(x[1].numpy(), singles[0].sample_observations(5, np.random.default_rng(4)))
    with pytest.raises(ValueError, match="one generator per agent"):
        population.sample_indices(5, [0, 1], [np.random.default_rng(0)])


def test_agent_state_round_trips():
    population, _ = filled(truncate_every=4)
    fresh = PopulationReplay(3, 20, SHAPE, torch.uint8)
    for k in range(3):
        fresh.load_agent_state_dict(k, population.agent_state_dict(k))
    a = population.sample(16, [np.random.default_rng(s) for s in range(3)])
    b = fresh.sample(16, [np.random.default_rng(s) for s in range(3)])
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_bad_sizes_and_empty_buffers_are_refused():
    with pytest.raises(ValueError, match="capacity must be an integer >= 2"):
        PopulationReplay(2, 1, SHAPE, torch.uint8)
    with pytest.raises(ValueError, match="agents must be an integer >= 1"):
        PopulationReplay(0, 10, SHAPE, torch.uint8)
    with pytest.raises(ValueError, match="empty"):
        PopulationReplay(2, 10, SHAPE, torch.uint8).sample(4, [np.random.default_rng(0)] * 2)
