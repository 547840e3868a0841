"""K Q-networks of one architecture evaluated at once, with their gradients: two ways.

A population's parameters are stacked tensors, agent first: ``(K, *shape)`` for each named
parameter of the architecture. A *stacked network* computes, for inputs ``(K, n, ...)``
(agent k's batch in row k), every agent's Q-values and the gradients of every agent's TD
loss with respect to its own parameters.

* :class:`BatchedSequential`, the fast path, for the networks the book trains (the Nature CNN,
  the MinAtar CNN, the MLP: ``nn.Sequential`` of :class:`redo.core.networks.ScaleInput`,
  ``Conv2d`` without padding or dilation, ``ReLU``, ``Flatten`` and ``Linear``). Every layer
  is one batched matrix product over the agents (``baddbmm``/``bmm``): a convolution on
  patches taken by strided views (``Tensor.unfold``), activations kept channels-last so that
  the patches need no transposition. The backward pass is written out (no autograd): it
  computes exactly the gradients the loss needs and nothing else (no gradient for the input).
* :class:`VmappedSequential`, the generic path, for any other ``nn.Sequential``:
  ``torch.func.vmap`` of ``grad_and_value`` of a ``functional_call``.

Both compute the same numbers up to float rounding (a test holds them equal); which one a
population uses is :func:`stacked_network`'s choice.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from redo.agent.td import LOSSES
from redo.core.networks import ScaleInput
from redo.core.structure import hidden_layers

Params = dict[str, Tensor]


class StackedNetwork(Protocol):
    """What a population needs of its networks (see the module docstring)."""

    def q_values(self, params: Params, x: Tensor) -> Tensor:
        """``(K, n, actions)`` Q-values for inputs ``(K, n, ...)``."""
        ...

    def hidden(self, params: Params, x: Tensor) -> list[Tensor]:
        """Every hidden layer's post-activation output, in forward order, agent first and in
        PyTorch's layout: ``(K, n, width)`` or ``(K, n, C, H, W)`` (possibly a view)."""
        ...

    def loss_gradients(
        self, params: Params, obs: Tensor, actions: Tensor, target: Tensor, grads: Params
    ) -> tuple[Tensor, Tensor]:
        """Write each agent's gradient of its mean TD loss on ``(obs, actions, target)``
        (``(K, n, ...)``, ``(K, n)``, ``(K, n)``) into ``grads``; return ``(K,)`` losses and
        ``(K,)`` mean Q-values of the actions taken."""
        ...


#: The largest patch matrix per image (input channels x kernel x output positions) that the
#: batched path gathers. Above it the gather outgrows the arithmetic: on the Nature CNN's
#: first layer (102,400 entries per 84x84 frame) a population of 8 made 10 env steps/s against
#: the single loop's 38 in one ad-hoc run of the Atari bench on the book's 2-core CPU (not a
#: stored report), where the vmapped path's grouped convolution, which builds no patch
#: matrix, makes about three quarters of the single loop's speed (the stored Atari report).
MAX_PATCH_ENTRIES = 16_384


def stacked_network(
    template: nn.Sequential,
    loss: str,
    batched: bool = True,
    observation_shape: Sequence[int] | None = None,
) -> StackedNetwork:
    """The fast :class:`BatchedSequential` when it supports ``template`` (and ``batched``),
    including, for an ``observation_shape`` given, convolutions whose patch matrices stay
    within :data:`MAX_PATCH_ENTRIES`; else the generic :class:`VmappedSequential`."""
    if batched:
        try:
            network = BatchedSequential(template, loss)
            if observation_shape is None or network.patch_entries(observation_shape) <= (
                MAX_PATCH_ENTRIES
            ):
                return network
        except UnsupportedLayer:
            pass
    return VmappedSequential(template, loss)


class UnsupportedLayer(ValueError):
    """A module that :class:`BatchedSequential` has no batched rule for."""


def loss_and_gradient(loss: str, q_taken: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per agent, the mean TD loss over the batch (last dimension) and its gradient with
    respect to ``q_taken``: Huber (smooth L1, threshold 1, as ``F.smooth_l1_loss``) or MSE."""
    diff = q_taken - target
    n = diff.shape[-1]
    if loss == "huber":
        size = diff.abs()
        value = torch.where(size < 1, 0.5 * diff * diff, size - 0.5).mean(dim=-1)
        return value, diff.clamp(-1.0, 1.0) / n
    if loss == "mse":
        return (diff * diff).mean(dim=-1), diff * (2.0 / n)
    raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")


# --- the fast path ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One module of the template, as the batched forward and backward passes run it."""

    kind: str  # "scale", "conv", "relu", "linear"
    name: str = ""  # the module's name (for conv/linear: the prefix of its parameters)
    scale: float = 1.0
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    out_channels: int = 0


class BatchedSequential:
    """The fast stacked network of the module docstring, for a supported ``template``.

    Every activation keeps PyTorch's layout (``(K, n, C, H, W)``, ``(K, n, features)``), so
    flattening is free and the scores read the activations as they are. A convolution is one
    batched product per image: its weight ``(C_out, C_in kh kw)`` times the image's patch
    matrix ``(C_in kh kw, H_out W_out)``, gathered by one precomputed index
    (:func:`patch_index`); the input gradient is scattered back by the same index.
    """

    def __init__(self, template: nn.Sequential, loss: str) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        self.loss = loss
        self.steps = _steps(template)
        self.first_weight = next(s.name for s in self.steps if s.kind in ("conv", "linear"))
        self._index: dict[tuple[Any, ...], Tensor] = {}

    def q_values(self, params: Params, x: Tensor) -> Tensor:
        return self._forward(params, x, cache=None)

    def hidden(self, params: Params, x: Tensor) -> list[Tensor]:
        cache: list[tuple[_Step, Tensor, tuple[int, ...]]] = []
        self._forward(params, x, cache)
        return [h.view(shape) for step, h, shape in cache if step.kind == "relu"]

    def loss_gradients(
        self, params: Params, obs: Tensor, actions: Tensor, target: Tensor, grads: Params
    ) -> tuple[Tensor, Tensor]:
        cache: list[tuple[_Step, Tensor, tuple[int, ...]]] = []
        q = self._forward(params, obs, cache)
        q_taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        loss, grad_taken = loss_and_gradient(self.loss, q_taken, target)
        grad = torch.zeros_like(q).scatter_(-1, actions.unsqueeze(-1), grad_taken.unsqueeze(-1))
        self._backward(params, cache, grad, grads)
        return loss, q_taken.mean(dim=-1)

    def _forward(
        self,
        params: Params,
        x: Tensor,
        cache: list[tuple[_Step, Tensor, tuple[int, ...]]] | None,
    ) -> Tensor:
        """Run the steps; with a ``cache``, keep what the backward pass and the scores need:
        each weight layer's input (a conv's patches), each activation's output."""
        h = x
        for step in self.steps:
            if step.kind == "scale":
                h = h.to(torch.float32)
                h = h if step.scale == 1.0 else h * step.scale
            elif step.kind == "conv":
                k, n, *image = h.shape
                index, out_h, out_w = self._patch_index(tuple(image), step)
                patches = h.reshape(k * n, -1).index_select(1, index).view(k * n, -1, out_h * out_w)
                weight = _per_image(params[f"{step.name}.weight"], n)
                bias = _per_image(params[f"{step.name}.bias"], n)
                out = torch.baddbmm(bias, weight, patches)
                if cache is not None:
                    cache.append((step, patches, (k, n, *image)))
                h = out.view(k, n, -1, out_h, out_w)
            elif step.kind == "relu":
                h = torch.relu(h)
                if cache is not None:
                    cache.append((step, h, tuple(h.shape)))
            else:  # linear (after a convolution, its input is flattened: a free view)
                h = h.reshape(h.shape[0], h.shape[1], -1)
                if cache is not None:
                    cache.append((step, h, ()))
                h = torch.baddbmm(
                    params[f"{step.name}.bias"].unsqueeze(1),
                    h,
                    params[f"{step.name}.weight"].transpose(1, 2),
                )
        return h

    def _backward(
        self,
        params: Params,
        cache: list[tuple[_Step, Tensor, tuple[int, ...]]],
        grad: Tensor,
        grads: Params,
    ) -> None:
        """Back-propagate ``grad`` (of the Q-values) through the cached forward pass, writing
        each parameter's gradient into ``grads``; stops at the first weight layer."""
        for step, saved, shape in reversed(cache):
            if step.kind == "linear":
                weight = params[f"{step.name}.weight"]
                torch.bmm(grad.transpose(1, 2), saved, out=grads[f"{step.name}.weight"])
                torch.sum(grad, dim=1, out=grads[f"{step.name}.bias"])
                if step.name == self.first_weight:
                    return
                grad = torch.bmm(grad, weight)
            elif step.kind == "relu":
                grad = torch.ops.aten.threshold_backward(grad.view(shape), saved, 0.0)
            else:  # conv: saved are the patches (k n, C_in kh kw, H_out W_out)
                k, n, *image = shape
                weight = params[f"{step.name}.weight"]
                out_channels = weight.shape[1]
                grad = grad.reshape(k * n, out_channels, -1)
                per_image = torch.bmm(grad, saved.transpose(1, 2))
                weight_grad = grads[f"{step.name}.weight"].view(k, out_channels, -1)
                torch.sum(per_image.view(k, n, out_channels, -1), dim=1, out=weight_grad)
                torch.sum(
                    grad.view(k, n, out_channels, -1), dim=(1, 3), out=grads[f"{step.name}.bias"]
                )
                if step.name == self.first_weight:
                    return
                index, _, _ = self._patch_index(tuple(image), step)
                weight = _per_image(weight, n)
                patch_grad = torch.bmm(weight.transpose(1, 2), grad).view(k * n, -1)
                input_grad = patch_grad.new_zeros(k * n, math.prod(image))
                grad = input_grad.index_add_(1, index, patch_grad).view(k, n, *image)

    def patch_entries(self, observation_shape: Sequence[int]) -> int:
        """The largest patch matrix per image of any convolution, for inputs of this shape
        (0 without convolutions)."""
        largest, shape = 0, tuple(observation_shape)
        for step in self.steps:
            if step.kind == "conv":
                channels, height, width = shape
                out_h = (height - step.kernel[0]) // step.stride + 1
                out_w = (width - step.kernel[1]) // step.stride + 1
                largest = max(largest, channels * step.kernel[0] * step.kernel[1] * out_h * out_w)
                shape = (step.out_channels, out_h, out_w)
        return largest

    def _patch_index(self, image: tuple[int, int, int], step: _Step) -> tuple[Tensor, int, int]:
        """The gather index of :func:`patch_index` for this input size (made once), and the
        output's height and width."""
        key = (image, step.kernel, step.stride)
        if key not in self._index:
            self._index[key] = patch_index(image, step.kernel, step.stride)
        out_h = (image[1] - step.kernel[0]) // step.stride + 1
        out_w = (image[2] - step.kernel[1]) // step.stride + 1
        return self._index[key], out_h, out_w


def _per_image(tensor: Tensor, n: int) -> Tensor:
    """Each agent's ``(rows, ...)`` slice of ``tensor`` repeated for each of its ``n`` images,
    as ``(K n, rows, columns)`` matrices (one column for a bias)."""
    k, rows = tensor.shape[:2]
    matrix = tensor.reshape(k, 1, rows, -1)
    return matrix.expand(k, n, rows, matrix.shape[-1]).reshape(k * n, rows, -1)


def patch_index(image: tuple[int, int, int], kernel: tuple[int, int], stride: int) -> Tensor:
    """For one ``(C, H, W)`` image flattened, the flat position of every entry of its patch
    matrix: rows in a conv weight's ``(C, kh, kw)`` order, columns the output positions
    ``(oh, ow)``."""
    channels, height, width = image
    grid = torch.arange(channels * height * width).view(channels, height, width)
    patches = grid.unfold(1, kernel[0], stride).unfold(2, kernel[1], stride)  # C, oh, ow, kh, kw
    return patches.permute(0, 3, 4, 1, 2).reshape(-1)


def _steps(template: nn.Sequential) -> list[_Step]:
    """The template's modules as batched steps; raises :class:`UnsupportedLayer`."""
    leaves = [(name, m) for name, m in template.named_modules() if not list(m.children())]
    steps: list[_Step] = []
    for name, module in leaves:
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            continue  # activations keep PyTorch's layout: the next linear layer flattens
        if isinstance(module, ScaleInput):
            steps.append(_Step("scale", name, scale=module.scale))
        elif isinstance(module, nn.ReLU):
            steps.append(_Step("relu", name))
        elif isinstance(module, nn.Linear) and module.bias is not None:
            steps.append(_Step("linear", name))
        elif (
            isinstance(module, nn.Conv2d)
            and module.bias is not None
            and module.padding == (0, 0)
            and module.dilation == (1, 1)
            and module.groups == 1
            and module.stride[0] == module.stride[1]
        ):
            kernel = tuple(module.kernel_size)
            steps.append(
                _Step("conv", name, kernel=kernel, stride=module.stride[0],
                      out_channels=module.out_channels)
            )  # fmt: skip
        else:
            raise UnsupportedLayer(f"no batched rule for module {name!r} ({module})")
    if not steps or steps[0].kind != "scale":
        raise UnsupportedLayer("the batched path expects a ScaleInput first (it casts the input)")
    return steps


# --- the generic path -------------------------------------------------------------------------


class VmappedSequential:
    """The generic stacked network of the module docstring, for any ``nn.Sequential`` that
    :func:`redo.core.structure.hidden_layers` reads."""

    def __init__(self, template: nn.Sequential, loss: str) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        # The template only describes the architecture: its own weights live on "meta".
        self.template = copy.deepcopy(template).to("meta")
        self.layers = hidden_layers(self.template)
        self._loss_fn = LOSSES[loss]
        self._grad = vmap(grad_and_value(self._agent_loss, has_aux=True))

    def q_values(self, params: Params, x: Tensor) -> Tensor:
        return vmap(self._q)(params, x)

    def hidden(self, params: Params, x: Tensor) -> list[Tensor]:
        return list(vmap(self._hidden)(params, x))

    def loss_gradients(
        self, params: Params, obs: Tensor, actions: Tensor, target: Tensor, grads: Params
    ) -> tuple[Tensor, Tensor]:
        computed, (loss, q_mean) = self._grad(params, obs, actions, target)
        for name, grad in computed.items():
            grads[name].copy_(grad)
        return loss, q_mean

    def _q(self, params: Params, obs: Tensor) -> Tensor:
        return functional_call(self.template, params, (obs,))

    def _agent_loss(
        self, params: Params, obs: Tensor, actions: Tensor, target: Tensor
    ) -> tuple[Tensor, Tensor]:
        q_taken = self._q(params, obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        return self._loss_fn(q_taken, target), q_taken.detach().mean()

    def _hidden(self, params: Params, obs: Tensor) -> tuple[Tensor, ...]:
        """One agent's hidden post-activation outputs, caught by forward hooks during a
        ``functional_call``; returned, not stored, so that they leave ``vmap`` batched."""
        captured: dict[str, Tensor] = {}

        def recorder(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
                captured[name] = output.clone()  # an in-place module may overwrite it later

            return hook

        handles = [
            layer.activation.register_forward_hook(recorder(layer.name)) for layer in self.layers
        ]
        try:
            self._q(params, obs)
        finally:
            for handle in handles:
                handle.remove()
        return tuple(captured[layer.name] for layer in self.layers)


__all__ = [
    "MAX_PATCH_ENTRIES",
    "BatchedSequential",
    "StackedNetwork",
    "UnsupportedLayer",
    "VmappedSequential",
    "loss_and_gradient",
    "stacked_network",
]
