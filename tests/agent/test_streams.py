"""AgentStreams and seeded_q_network: every random draw of an agent comes from its seed."""

import io

import numpy as np
import pytest
import torch

from redo.agent.streams import NUMPY_STREAMS, AgentStreams, seeded_q_network
from redo.core.networks import q_network_for

STREAMS = (*NUMPY_STREAMS, "redo_weights")


def draw(streams, name, n=8):
    """The next ``n`` numbers of one stream, as a numpy array."""
    if name == "redo_weights":
        return torch.rand(n, generator=streams.redo_weights).numpy()
    return getattr(streams, name).random(n)


def test_the_streams_are_the_documented_ones():
    assert NUMPY_STREAMS == ("explore", "replay", "redo_batch", "log_batch")
    streams = AgentStreams.from_seed(0)
    for name in NUMPY_STREAMS:
        assert isinstance(getattr(streams, name), np.random.Generator)
    assert isinstance(streams.redo_weights, torch.Generator)


@pytest.mark.parametrize("name", STREAMS)
def test_equal_seeds_give_equal_draws(name):
    a, b = AgentStreams.from_seed(11), AgentStreams.from_seed(11)
    np.testing.assert_array_equal(draw(a, name), draw(b, name))
    assert not np.array_equal(draw(a, name), draw(AgentStreams.from_seed(12), name))


def test_the_streams_draw_different_numbers():
    streams = AgentStreams.from_seed(3)
    firsts = [tuple(draw(streams, name)) for name in STREAMS]
    assert len(set(firsts)) == len(STREAMS)


@pytest.mark.parametrize("consumed", STREAMS)
def test_drawing_from_one_stream_leaves_the_others_alone(consumed):
    untouched, busy = AgentStreams.from_seed(5), AgentStreams.from_seed(5)
    draw(busy, consumed, n=1_000)
    for name in STREAMS:
        if name != consumed:
            np.testing.assert_array_equal(draw(busy, name), draw(untouched, name))


def test_streams_round_trip_through_state_dict():
    streams = AgentStreams.from_seed(7)
    for name in STREAMS:
        draw(streams, name, n=13)
    buffer = io.BytesIO()
    torch.save(streams.state_dict(), buffer)  # as a checkpoint stores them
    buffer.seek(0)
    restored = AgentStreams.from_seed(99)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    for name in STREAMS:
        np.testing.assert_array_equal(draw(restored, name), draw(streams, name))


def test_state_dict_is_a_copy():
    streams = AgentStreams.from_seed(7)
    state = streams.state_dict()
    expected = [draw(streams, name) for name in STREAMS]
    streams.load_state_dict(state)  # drawing did not change the saved state
    for name, numbers in zip(STREAMS, expected, strict=True):
        np.testing.assert_array_equal(draw(streams, name), numbers)


@pytest.mark.parametrize("shape", [(4,), (4, 10, 10)])
def test_seeded_q_network_leaves_the_global_rng_alone(shape):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = seeded_q_network(shape, 3, seed=7, device="cpu")
    assert torch.equal(torch.get_rng_state(), before)
    second = seeded_q_network(shape, 3, seed=7, device="cpu")
    other = seeded_q_network(shape, 3, seed=8, device="cpu")
    torch.manual_seed(7)
    reference = q_network_for(shape, 3)  # the documented draw: manual_seed(seed), then build
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name])
        assert torch.equal(tensor, reference.state_dict()[name])
    assert any(
        not torch.equal(tensor, other.state_dict()[name])
        for name, tensor in first.state_dict().items()
    )


def test_seeded_q_network_does_not_depend_on_the_global_rng():
    torch.manual_seed(0)
    a = seeded_q_network((4,), 2, seed=3, device="cpu")
    torch.rand(100)
    b = seeded_q_network((4,), 2, seed=3, device="cpu")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name])
