"""The replay buffer and draw_slots, the one sampler shared with the population."""

import numpy as np
import pytest

from redo.agent.replay import ReplayBuffer, draw_slots


def filled_buffer(capacity, steps, truncate_every=None):
    """Observation t is the vector [t, t]; transition t goes t -> t + 1 with action t."""
    buffer = ReplayBuffer(capacity, (2,), np.float32)
    for t in range(steps):
        truncated = truncate_every is not None and (t + 1) % truncate_every == 0
        buffer.add(np.full(2, t), t, float(t), np.full(2, t + 1), False, truncated)
    return buffer


@pytest.mark.parametrize(("capacity", "steps"), [(50, 20), (50, 50), (50, 137)])
def test_replay_returns_consistent_transitions(capacity, steps):
    buffer = filled_buffer(capacity, steps)
    batch = buffer.sample(500, np.random.default_rng(0))
    t = batch.observations[:, 0]
    np.testing.assert_array_equal(batch.next_observations[:, 0], t + 1)
    np.testing.assert_array_equal(batch.actions, t)
    np.testing.assert_array_equal(batch.rewards, t)
    assert t.min() >= max(0, steps - capacity + 1)  # the oldest, overwritten slot is skipped
    assert t.max() == steps - 1  # the newest transition is complete
    assert len(buffer) == min(steps, capacity)


def test_replay_never_samples_truncated_transitions():
    buffer = filled_buffer(40, 100, truncate_every=5)
    t = buffer.sample(1_000, np.random.default_rng(1)).observations[:, 0]
    assert not np.any((t + 1) % 5 == 0)


def test_replay_keeps_terminal_flags_and_samples_terminal_transitions():
    buffer = ReplayBuffer(10, (1,), np.float32)
    for t in range(6):
        buffer.add(np.full(1, t), 0, 0.0, np.full(1, t + 1), t == 2, t == 2)
    batch = buffer.sample(400, np.random.default_rng(0))
    t = batch.observations[:, 0].astype(int)
    np.testing.assert_array_equal(batch.terminated, t == 2)
    assert (t == 2).any()  # terminated (and truncated at once) is still usable


def test_replay_state_round_trip():
    buffer = filled_buffer(30, 47, truncate_every=7)
    copy = ReplayBuffer(30, (2,), np.float32)
    copy.load_state_dict(buffer.state_dict())
    a, b = (buf.sample(64, np.random.default_rng(5)) for buf in (buffer, copy))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="holds 30 transitions"):
        ReplayBuffer(31, (2,), np.float32).load_state_dict(buffer.state_dict())


def test_sample_observations_draws_the_slots_of_sample():
    buffer = filled_buffer(30, 47)
    observations = buffer.sample_observations(64, np.random.default_rng(2))
    batch = buffer.sample(64, np.random.default_rng(2))
    np.testing.assert_array_equal(observations, batch.observations)


# --- draw_slots -----------------------------------------------------------------------------


@pytest.mark.parametrize("pos", [0, 3, 9])
def test_draw_slots_of_a_full_ring_skip_pos_and_unusable_slots(pos):
    unusable = np.zeros(10, dtype=bool)
    unusable[[1, 6]] = True
    unusable[pos] = False  # pos's own flag must not matter: it is skipped anyway
    slots = draw_slots(np.random.default_rng(0), 5_000, pos, True, unusable)
    assert slots.dtype.kind == "i" and slots.shape == (5_000,)
    expected = set(range(10)) - {pos, 1, 6}
    assert set(slots.tolist()) == expected  # every usable slot, and only those


def test_draw_slots_of_a_ring_not_yet_full_stay_below_pos():
    unusable = np.zeros(10, dtype=bool)
    unusable[2] = True
    slots = draw_slots(np.random.default_rng(0), 2_000, 5, False, unusable)
    assert set(slots.tolist()) == {0, 1, 3, 4}


@pytest.mark.parametrize(("capacity", "steps"), [(20, 7), (20, 20), (20, 53)])
def test_draw_slots_is_what_the_buffer_samples(capacity, steps):
    buffer = filled_buffer(capacity, steps, truncate_every=4)
    ours = buffer.sample_indices(300, np.random.default_rng(9))
    shared = draw_slots(np.random.default_rng(9), 300, buffer.pos, buffer.full, buffer.unusable)
    np.testing.assert_array_equal(ours, shared)
    assert not buffer.unusable[ours].any()
    if buffer.full:
        assert buffer.pos not in ours


def test_draw_slots_refuses_an_empty_or_unusable_buffer():
    with pytest.raises(ValueError, match="empty"):
        draw_slots(np.random.default_rng(0), 4, 0, False, np.zeros(8, dtype=bool))
    with pytest.raises(RuntimeError, match="only truncated"):
        draw_slots(np.random.default_rng(0), 4, 5, False, np.ones(8, dtype=bool))
