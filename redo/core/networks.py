"""Q-networks: the Nature DQN CNN (Atari), the MinAtar CNN, and an MLP (classic control).

Each network is a flat ``nn.Sequential`` with named children, e.g. for the Nature CNN::

    input -> conv1 -> relu1 -> conv2 -> relu2 -> conv3 -> relu3 -> flatten -> fc1 -> relu4 -> q

so that :func:`redo.core.structure.hidden_layers` reads layer -> activation -> next layer from the
module order it checks, and the per-layer logs of dormant fractions say ``conv1`` or ``fc1``
rather than ``0`` or ``3``. The first child is :class:`ScaleInput`, which has no parameters:
it turns stored observations (uint8 Atari frames, 0/1 MinAtar planes) into float32 inside the
network, so replay buffers keep the compact dtype and every caller scales the same way.

All layers keep PyTorch's default initialisation. The ReDo reset's default redraws a
recycled neuron's incoming weights from its layer's initial distribution, which is then
exactly the distribution the network started from.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Atari frames are uint8 in [0, 255]; the Nature DQN divides by 255.
ATARI_SCALE = 1.0 / 255.0

#: Default hidden widths of :func:`mlp`: cleanRL's DQN for CartPole (120 and 84 units).
MLP_HIDDEN: tuple[int, ...] = (120, 84)


class ScaleInput(nn.Module):
    """Cast the observation to float32 and multiply it by ``scale``; no parameters.

    Being parameter-free, it may lead the ``nn.Sequential`` without disturbing the
    layer/activation pattern that the dormant-neuron code checks.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.float32)
        return x if self.scale == 1.0 else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


def nature_cnn(in_channels: int, n_actions: int) -> nn.Sequential:
    """The DQN network of Mnih et al. (2015, Nature), for ``(C, 84, 84)`` uint8 frames.

    Conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3 stride 1 (84 -> 20 -> 9 -> 7),
    a dense layer of 512 and one output per action, all with ReLU. It is the network of the
    ReDo paper's DQN experiments (Dopamine's ``NatureDQNNetwork``). Each channel of ``conv3``
    feeds 7 * 7 = 49 inputs of ``fc1``.
    """
    in_channels = _positive_int("in_channels", in_channels)
    n_actions = _positive_int("n_actions", n_actions)
    return nn.Sequential(
        OrderedDict(
            [
                ("input", ScaleInput(ATARI_SCALE)),
                ("conv1", nn.Conv2d(in_channels, 32, kernel_size=8, stride=4)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(32, 64, kernel_size=4, stride=2)),
                ("relu2", nn.ReLU()),
                ("conv3", nn.Conv2d(64, 64, kernel_size=3, stride=1)),
                ("relu3", nn.ReLU()),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(64 * 7 * 7, 512)),
                ("relu4", nn.ReLU()),
                ("q", nn.Linear(512, n_actions)),
            ]
        )
    )


def minatar_cnn(in_channels: int, n_actions: int) -> nn.Sequential:
    """The MinAtar network of Young & Tian (2019), for ``(C, 10, 10)`` 0/1 planes.

    One conv of 16 channels, 3x3, stride 1, no padding (10x10 -> 8x8), a dense layer of 128
    and one output per action, all with ReLU: the network of the MinAtar paper's DQN
    baseline. Each channel of ``conv1`` feeds 8 * 8 = 64 inputs of ``fc1``.
    """
    in_channels = _positive_int("in_channels", in_channels)
    n_actions = _positive_int("n_actions", n_actions)
    return nn.Sequential(
        OrderedDict(
            [
                ("input", ScaleInput(1.0)),
                ("conv1", nn.Conv2d(in_channels, 16, kernel_size=3, stride=1)),
                ("relu1", nn.ReLU()),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(16 * 8 * 8, 128)),
                ("relu2", nn.ReLU()),
                ("q", nn.Linear(128, n_actions)),
            ]
        )
    )


def mlp(obs_dim: int, n_actions: int, hidden: Sequence[int] = MLP_HIDDEN) -> nn.Sequential:
    """A ReLU MLP for vector observations: ``input -> fc1 -> relu1 -> ... -> q``.

    The default widths (120, 84) are cleanRL's DQN for CartPole; ReDo was not run on classic
    control in the paper, so this network is for quick checks and teaching.
    """
    obs_dim = _positive_int("obs_dim", obs_dim)
    n_actions = _positive_int("n_actions", n_actions)
    hidden = tuple(_positive_int(f"hidden[{i}]", width) for i, width in enumerate(hidden))
    if not hidden:
        raise ValueError("hidden is empty: an MLP needs at least one hidden layer to score")
    modules: list[tuple[str, nn.Module]] = [("input", ScaleInput(1.0))]
    for i, (fan_in, fan_out) in enumerate(zip((obs_dim, *hidden), hidden, strict=False), 1):
        modules += [(f"fc{i}", nn.Linear(fan_in, fan_out)), (f"relu{i}", nn.ReLU())]
    modules.append(("q", nn.Linear(hidden[-1], n_actions)))
    return nn.Sequential(OrderedDict(modules))


def q_network_for(observation_shape: Sequence[int], n_actions: int) -> nn.Sequential:
    """Choose the network from the observation shape made by :func:`redo.agent.envs.make_env`.

    ``(C, 84, 84)`` -> :func:`nature_cnn`, ``(C, 10, 10)`` -> :func:`minatar_cnn`,
    ``(d,)`` -> :func:`mlp`; any other shape raises ValueError.
    """
    shape = tuple(observation_shape)
    if all(isinstance(n, numbers.Integral) and n >= 1 for n in shape):
        shape = tuple(int(n) for n in shape)
        if len(shape) == 3 and shape[1:] == (84, 84):
            return nature_cnn(shape[0], n_actions)
        if len(shape) == 3 and shape[1:] == (10, 10):
            return minatar_cnn(shape[0], n_actions)
        if len(shape) == 1:
            return mlp(shape[0], n_actions)
    raise ValueError(
        f"no Q-network for observation shape {shape}; supported: (C, 84, 84) Atari frames "
        "(Nature CNN), (C, 10, 10) MinAtar planes (MinAtar CNN), (d,) vectors (MLP)"
    )


def _positive_int(name: str, value: int) -> int:
    """``value`` as a Python int (numpy integers such as ``Discrete.n`` are fine), or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


__all__ = [
    "ATARI_SCALE",
    "MLP_HIDDEN",
    "ScaleInput",
    "minatar_cnn",
    "mlp",
    "nature_cnn",
    "q_network_for",
]
