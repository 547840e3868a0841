"""The Q-networks: shapes, input scaling, structure seen by the dormant code, chooser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from redo.agent.envs import make_env
from redo.core.dormant import dormant_scores
from redo.core.networks import ScaleInput, minatar_cnn, mlp, nature_cnn, q_network_for
from redo.core.structure import hidden_layers


def test_scale_input_casts_and_scales() -> None:
    frames = torch.tensor([[0, 255, 51]], dtype=torch.uint8)
    out = ScaleInput(1 / 255)(frames)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.2]]))
    planes = torch.tensor([True, False])
    torch.testing.assert_close(ScaleInput()(planes), torch.tensor([1.0, 0.0]))
    doubles = torch.tensor([0.5], dtype=torch.float64)
    assert ScaleInput()(doubles).dtype == torch.float32
    assert list(ScaleInput().parameters()) == [] and list(ScaleInput().buffers()) == []


@pytest.mark.parametrize(
    ("net", "obs_shape", "dtype"),
    [
        (nature_cnn(4, 6), (4, 84, 84), torch.uint8),
        (minatar_cnn(7, 3), (7, 10, 10), torch.uint8),
        (mlp(4, 2), (4,), torch.float32),
        (mlp(6, 3, hidden=(32,)), (6,), torch.float64),
    ],
)
def test_output_shape(net: nn.Sequential, obs_shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = torch.zeros((5, *obs_shape), dtype=dtype)
    q = net(x)
    assert q.shape == (5, net.q.out_features)
    assert q.dtype == torch.float32


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        (
            nature_cnn(4, 6),
            [("conv1", 32, 1), ("conv2", 64, 1), ("conv3", 64, 49), ("fc1", 512, 1)],
        ),
        (minatar_cnn(4, 3), [("conv1", 16, 64), ("fc1", 128, 1)]),
        (mlp(4, 2), [("fc1", 120, 1), ("fc2", 84, 1)]),
        (mlp(4, 2, hidden=(16, 8, 4)), [("fc1", 16, 1), ("fc2", 8, 1), ("fc3", 4, 1)]),
    ],
)
def test_hidden_layers_are_found(net: nn.Sequential, expected: list[tuple[str, int, int]]) -> None:
    found = [(h.name, h.width, h.columns_per_neuron) for h in hidden_layers(net)]
    assert found == expected
    assert all(isinstance(h.activation, nn.ReLU) for h in hidden_layers(net))
    assert hidden_layers(net)[-1].next_layer is net.q
    assert isinstance(net[0], ScaleInput)


@pytest.mark.parametrize("net", [nature_cnn(4, 6), minatar_cnn(4, 3), mlp(4, 2)])
def test_layers_keep_pytorch_default_init(net: nn.Sequential) -> None:
    # PyTorch's default draws weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            bound = 1 / math.sqrt(module.weight[0].numel())
            assert module.weight.abs().max() <= bound
            assert module.bias.abs().max() <= bound
            assert module.weight.abs().max() > 0.9 * bound  # drawn over the whole range


@pytest.mark.parametrize(
    ("env_id", "first_layer"),
    [("MinAtar/Breakout-v1", "conv1"), ("ALE/Breakout-v5", "conv1"), ("CartPole-v1", "fc1")],
)
def test_dormant_scores_run_on_real_observations(env_id: str, first_layer: str) -> None:
    env = make_env(env_id, seed=0)
    obs, _ = env.reset()
    batch = [obs]
    for _ in range(15):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        batch.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    net = q_network_for(env.observation_space.shape, env.action_space.n)
    x = torch.as_tensor(np.stack(batch))
    scores = dormant_scores(net, x)
    assert next(iter(scores)) == first_layer
    assert [(name, s.numel()) for name, s in scores.items()] == [
        (h.name, h.width) for h in hidden_layers(net)
    ]
    for s in scores.values():
        assert torch.isfinite(s).all() and (s >= 0).all()
        assert s.mean() == pytest.approx(1.0, rel=1e-4)  # normalised by the layer mean


def test_q_network_for_chooses_by_shape() -> None:
    atari = q_network_for((4, 84, 84), 6)
    assert atari.conv1.kernel_size == (8, 8) and atari.conv1.in_channels == 4
    assert atari.input.scale == pytest.approx(1 / 255)
    minatar = q_network_for((10, 10, 10), np.int64(5))  # Seaquest
    assert minatar.conv1.kernel_size == (3, 3) and minatar.q.out_features == 5
    assert minatar.input.scale == 1.0
    vector = q_network_for(np.zeros(4, dtype=np.float32).shape, 2)
    assert vector.fc1.in_features == 4


@pytest.mark.parametrize("shape", [(3, 64, 64), (10, 10, 4), (84, 84), (), (2, 3), (0,)])
def test_q_network_for_rejects_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"observation shape .*supported"):
        q_network_for(shape, 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nature_cnn(4, 0),
        lambda: minatar_cnn(0, 3),
        lambda: mlp(4, 2, hidden=()),
        lambda: mlp(4, 2, hidden=(8, -1)),
        lambda: mlp(4.5, 2),  # type: ignore[arg-type]
        lambda: nature_cnn(4, True),
    ],
)
def test_bad_sizes_are_rejected(make) -> None:
    with pytest.raises(ValueError, match=r"positive integer|hidden is empty"):
        make()
