"""A measured roofline for one DQN update: how fast could K agents' updates be on this device?

A population makes K agents' updates one vectorised update. That saves what one update
spends on per-operation overhead (Python, dispatch, kernel launches), which does not grow
with K, but not its arithmetic, which does. On a GPU an eager MinAtar update is almost all
overhead, so K agents cost little more than one; on a CPU the arithmetic is a large part of
an update, and the gain of a population is bounded by it. :func:`measure_roofline` measures
the pieces that bound it on the machine it runs on:

* ``flops_per_update``: the floating-point operations of one agent's update (online forward
  and backward, target forward), counted by :class:`torch.utils.flop_counter.FlopCounterMode`;
* ``matmul_flops_per_s``: the device's measured dense matrix-multiply throughput, an upper
  bound on how fast those FLOPs can run;
* ``adam_s``: the measured time of one Adam step over one agent's parameters, the update's
  element-wise, memory-bound part, which also grows with K;
* ``update_s``: the measured time of one whole update of one agent.

From them: ``compute_bound_s = flops / throughput`` and the time that grows with K per agent,
``per_agent_floor_s = compute_bound_s + adam_s``. No population can update an agent in less,
however large K; the rest of ``update_s`` is what vectorising can save.

That floor assumes every FLOP runs at the speed of a large matrix product. The layers of a
Q-network do not: a convolution with a large stride or a thin matrix product reaches a
fraction of it. So the roofline also times each layer with weights (``layers``), as the
update runs it (online forward and backward, target forward), on one agent's minibatch and
on K agents' worth of rows at once (the largest population measured), and keeps the faster
time per agent: what this device's kernels do with the layer at the sizes a population can
give them. ``kernel_floor_s = kernel_bound_s + adam_s`` is the floor at those speeds. It
leaves out every element-wise operation but Adam, so it is still a floor: a population whose
layers ran as fast as measured here, and did nothing else, would take this long per agent.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from redo.agent.config import DQNConfig
from redo.agent.envs import make_env
from redo.agent.replay import ReplaySamples
from redo.agent.td import LOSSES, td_update
from redo.bench.settings import WARMUP_CALLS
from redo.core.networks import q_network_for
from redo.core.optim import ElementwiseAdam
from redo.core.structure import WeightLayer


@dataclass(frozen=True)
class LayerKernel:
    """One layer's work in one agent's update, at the faster of the two measured sizes."""

    name: str
    #: FLOPs per agent: online forward and backward, target forward
    flops: int
    #: seconds per agent
    seconds: float
    #: the rows the faster time was measured with: one minibatch, or K of them at once
    rows: int


@dataclass(frozen=True)
class Roofline:
    """The measured bounds of one agent's update (seconds, FLOPs); see the module docstring."""

    env_id: str
    device: str
    threads: int
    batch_size: int
    parameters: int
    flops_per_update: int
    matmul_flops_per_s: float
    update_s: float
    adam_s: float
    #: the population size whose rows the layers were also timed with
    population: int = 1
    layers: tuple[LayerKernel, ...] = ()

    @property
    def compute_bound_s(self) -> float:
        return self.flops_per_update / self.matmul_flops_per_s

    @property
    def per_agent_floor_s(self) -> float:
        return self.compute_bound_s + self.adam_s

    @property
    def kernel_bound_s(self) -> float:
        return sum(layer.seconds for layer in self.layers)

    @property
    def kernel_floor_s(self) -> float:
        return self.kernel_bound_s + self.adam_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "compute_bound_s": self.compute_bound_s,
            "per_agent_floor_s": self.per_agent_floor_s,
            "kernel_bound_s": self.kernel_bound_s,
            "kernel_floor_s": self.kernel_floor_s,
        }


def measure_roofline(
    config: DQNConfig,
    repeats: int = 50,
    matmul_size: int = 512,
    device: str = "cpu",
    population: int = 1,
) -> Roofline:
    """Measure :class:`Roofline` for ``config``'s network and batch size on ``device``, its
    layers also at ``population`` minibatches at once."""
    dev = torch.device(device)
    env = make_env(config.env_id, seed=config.seed)
    space, n_actions = env.observation_space, int(env.action_space.n)
    rng = np.random.default_rng(config.seed)
    batch = ReplaySamples(
        observations=random_observations(space, config.batch_size, rng),
        actions=np.arange(config.batch_size) % n_actions,
        rewards=np.ones(config.batch_size, dtype=np.float32),
        next_observations=random_observations(space, config.batch_size, rng),
        terminated=np.zeros(config.batch_size, dtype=bool),
    )
    env.close()
    online = q_network_for(space.shape, n_actions).to(dev)
    target = q_network_for(space.shape, n_actions).to(dev).requires_grad_(False)
    optimizer = ElementwiseAdam(online.parameters(), lr=config.lr, eps=config.adam_eps)
    loss_fn = LOSSES[config.loss]

    def update() -> None:
        td_update(online, target, optimizer, batch, config.gamma, loss_fn)

    with FlopCounterMode(display=False) as counter:
        update()
    return Roofline(
        env_id=config.env_id,
        device=str(dev),
        threads=torch.get_num_threads(),
        batch_size=config.batch_size,
        parameters=sum(p.numel() for p in online.parameters()),
        flops_per_update=int(counter.get_total_flops()),
        matmul_flops_per_s=matmul_throughput(matmul_size, repeats, dev),
        update_s=median_time(update, dev, repeats),
        adam_s=median_time(optimizer.step, dev, repeats),  # the gradients stay in place
        population=population,
        layers=layer_kernels(
            online, torch.as_tensor(batch.observations, device=dev), population, repeats
        ),
    )


def layer_kernels(
    network: nn.Sequential, obs: Tensor, population: int, repeats: int
) -> tuple[LayerKernel, ...]:
    """Time every ``Conv2d`` and ``Linear`` of ``network`` on the inputs it sees for ``obs``
    (see the module docstring). The first layer computes no input gradient, as in the update,
    where the observations need none."""
    kernels = []
    for index, (name, (layer, x)) in enumerate(layer_inputs(network, obs).items()):
        per_agent = {}  # seconds per agent, by the rows they were measured with
        for copies in sorted({1, population}):
            rows = x.repeat(copies, *[1] * (x.dim() - 1))
            work = _layer_work(layer, rows, input_grad=index > 0)
            if copies == 1:
                with FlopCounterMode(display=False) as counter:
                    work()
            per_agent[len(rows)] = median_time(work, x.device, repeats) / copies
        fastest = min(per_agent, key=per_agent.__getitem__)
        flops = int(counter.get_total_flops())
        kernels.append(LayerKernel(name, flops, per_agent[fastest], fastest))
    return tuple(kernels)


def layer_inputs(network: nn.Sequential, obs: Tensor) -> dict[str, tuple[nn.Module, Tensor]]:
    """``{name: (layer, its input)}`` for the weighted layers, in forward order, found by
    running the package's Q-networks (flat ``nn.Sequential``, see :mod:`redo.core.networks`) one
    module at a time."""
    seen: dict[str, tuple[nn.Module, Tensor]] = {}
    x = obs
    with torch.no_grad():
        for name, module in network.named_children():
            if isinstance(module, WeightLayer):
                seen[name] = (module, x)
            x = module(x)
    return seen


def _layer_work(layer: nn.Module, x: Tensor, input_grad: bool) -> Callable[[], object]:
    """One update's work of ``layer`` on ``x``: forward and backward for the online network
    (weight gradients, and the input's if ``input_grad``), one more forward for the target."""
    x = x.clone().requires_grad_(input_grad)
    wrt = [*layer.parameters(), *([x] if input_grad else [])]
    grad_out = torch.ones_like(layer(x.detach()))

    def work() -> object:
        for tensor in wrt:  # fresh gradients, as after the update's zero_grad
            tensor.grad = None
        layer(x).backward(grad_out)
        with torch.no_grad():
            return layer(x)

    return work


def matmul_throughput(size: int, repeats: int, device: torch.device) -> float:
    """FLOP/s of a ``size`` x ``size`` float32 matrix product (2 size^3 FLOPs)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / median_time(lambda: a @ b, device, repeats)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after :data:`WARMUP_CALLS` warm-up
    calls; on a GPU each call is timed from an idle device to its last kernel's end."""
    for _ in range(WARMUP_CALLS):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        tic = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def synchronize(device: torch.device) -> None:
    """Wait for the device's launched work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_observations(
    space: gym.spaces.Space, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` observations with the space's shape and dtype: timing needs no real ones
    (uniform integers for images and planes, standard normals for vectors)."""
    shape = (count, *space.shape)
    if np.issubdtype(space.dtype, np.integer):
        low, high = int(space.low.min()), int(space.high.max())
        return rng.integers(low, high, size=shape, endpoint=True, dtype=space.dtype)
    return rng.standard_normal(shape).astype(space.dtype)
