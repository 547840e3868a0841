"""The stacked networks: the batched fast path equals the generic vmap path and autograd."""

import functools
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from redo.core.networks import ScaleInput, minatar_cnn, mlp, nature_cnn
from redo.population.networks import (
    BatchedSequential,
    VmappedSequential,
    loss_and_gradient,
    patch_index,
    stacked_network,
)


def two_convs(in_channels=3, n_actions=4):
    """conv -> conv (stride 2) -> flatten -> dense -> output: a conv's input gradient."""
    return nn.Sequential(
        OrderedDict(
            [
                ("input", ScaleInput(0.5)),
                ("conv1", nn.Conv2d(in_channels, 4, 3)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(4, 5, 2, stride=2)),
                ("relu2", nn.ReLU()),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(5 * 3 * 3, 6)),
                ("relu3", nn.ReLU()),
                ("q", nn.Linear(6, n_actions)),
            ]
        )
    )


#: (builder, observation shape, uint8 observations?)
NETWORKS = {
    "minatar": (functools.partial(minatar_cnn, 4, 3), (4, 10, 10), True),
    "nature": (functools.partial(nature_cnn, 4, 3), (4, 84, 84), True),
    "mlp": (functools.partial(mlp, 6, 3, (12, 10)), (6,), False),
    "two_convs": (two_convs, (3, 8, 8), False),
}


def stacked(kind, agents=3, seed=0):
    build = NETWORKS[kind][0]
    torch.manual_seed(seed)
    nets = [build() for _ in range(agents)]
    params = {
        name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets])
        for name, _ in nets[0].named_parameters()
    }
    return nets, params


def inputs(kind, agents, n, seed=1):
    _, shape, binary = NETWORKS[kind]
    g = torch.Generator().manual_seed(seed)
    if binary:
        return (torch.rand((agents, n, *shape), generator=g) < 0.3).to(torch.uint8)
    return torch.randn((agents, n, *shape), generator=g)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_batched_path_equals_autograd_on_each_agent(kind, loss):
    nets, params = stacked(kind)
    n = 2 if kind == "nature" else 8
    x = inputs(kind, 3, n)
    g = torch.Generator().manual_seed(2)
    actions = torch.randint(3, (3, n), generator=g)
    target = torch.randn(3, n, generator=g) * 2  # beyond Huber's threshold too
    network = BatchedSequential(nets[0], loss)
    grads = {name: torch.empty_like(p) for name, p in params.items()}
    losses, q_means = network.loss_gradients(params, x, actions, target, grads)
    loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    for k, net in enumerate(nets):
        net.zero_grad()
        q_taken = net(x[k]).gather(1, actions[k].unsqueeze(1)).squeeze(1)
        expected = loss_fn(q_taken, target[k])
        expected.backward()
        assert losses[k].item() == pytest.approx(expected.item(), rel=1e-5)
        assert q_means[k].item() == pytest.approx(q_taken.mean().item(), rel=1e-5, abs=1e-6)
        for name, p in net.named_parameters():
            torch.testing.assert_close(grads[name][k], p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", NETWORKS)
def test_batched_and_vmapped_paths_agree(kind):
    nets, params = stacked(kind)
    x = inputs(kind, 3, 2 if kind == "nature" else 8)
    batched, vmapped = BatchedSequential(nets[0], "huber"), VmappedSequential(nets[0], "huber")
    torch.testing.assert_close(batched.q_values(params, x), vmapped.q_values(params, x))
    for fast, generic in zip(batched.hidden(params, x), vmapped.hidden(params, x), strict=True):
        assert fast.shape == generic.shape
        torch.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-5)


def test_other_architectures_fall_back_to_vmap():
    leaky = nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(), nn.Linear(5, 2))
    assert isinstance(stacked_network(leaky, "huber"), VmappedSequential)
    assert isinstance(stacked_network(mlp(4, 2), "huber"), BatchedSequential)
    assert isinstance(stacked_network(mlp(4, 2), "huber", batched=False), VmappedSequential)


def test_patch_index_gathers_what_unfold_gives():
    image = torch.randn(3, 9, 7)
    for kernel, stride in (((3, 3), 1), ((2, 3), 2), ((4, 4), 3)):
        index = patch_index(tuple(image.shape), kernel, stride)
        unfolded = F.unfold(image.unsqueeze(0), kernel, stride=stride)[0]  # (C kh kw, L)
        torch.testing.assert_close(image.reshape(-1)[index].view_as(unfolded), unfolded)


@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_loss_and_gradient_match_autograd(loss):
    q = torch.tensor([[0.2, -3.0, 1.5, 0.0], [2.0, 0.5, -0.5, 4.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    value, grad = loss_and_gradient(loss, q.detach(), target)
    loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    for k in range(2):
        q.grad = None
        expected = loss_fn(q[k], target[k])
        expected.backward()
        assert value[k].item() == pytest.approx(expected.item())
        torch.testing.assert_close(grad[k], q.grad[k])
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_and_gradient("l1", q.detach(), target)


def test_convolutions_with_large_patch_matrices_go_through_vmap():
    assert BatchedSequential(minatar_cnn(10, 3), "huber").patch_entries((10, 10, 10)) == 5760
    assert BatchedSequential(nature_cnn(4, 3), "huber").patch_entries((4, 84, 84)) == 102_400
    small = stacked_network(minatar_cnn(10, 3), "huber", observation_shape=(10, 10, 10))
    large = stacked_network(nature_cnn(4, 3), "huber", observation_shape=(4, 84, 84))
    assert isinstance(small, BatchedSequential) and isinstance(large, VmappedSequential)
    assert isinstance(stacked_network(nature_cnn(4, 3), "huber"), BatchedSequential)
