"""ReDo: recycle dormant neurons (Sokar et al., 2023, Algorithm 1).

For every tau-dormant neuron of a hidden layer:

1. its incoming weights (a row of a dense layer, an output channel's kernel of a
   convolution) are drawn again from an initial distribution, and its bias is set to 0;
2. its outgoing weights (its columns in the next layer) are set to zero, so that the network
   computes, right after the reset, what it computed before without that neuron's
   contribution: exactly the same function at tau = 0, where the neuron was silent anyway;
3. the optimizer's moments of exactly those incoming and outgoing entries are zeroed, so that
   stale momentum does not push the fresh weights straight back to where they died.

The output layer's own neurons (the Q-values) are never recycled, although its input columns
that belong to a recycled last-hidden neuron are zeroed as that neuron's outgoing weights.
The target network is not an argument and is therefore never touched: it catches up at its
next synchronisation, as in Dopamine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.optim import CLOCK_RESTART, has_elementwise_step, restart_clock_
from redo.core.structure import HiddenLayer, WeightLayer, hidden_layers

InitName = Literal["default", "xavier_uniform", "lecun_normal", "kaiming_uniform"]
BiasMode = Literal["zero", "redraw"]
StepMode = Literal["auto", "elementwise", "keep", "zero_all"]

INIT_CHOICES: tuple[str, ...] = ("default", "xavier_uniform", "lecun_normal", "kaiming_uniform")
BIAS_CHOICES: tuple[str, ...] = ("zero", "redraw")
STEP_CHOICES: tuple[str, ...] = ("auto", "elementwise", "keep", "zero_all")

#: Adam/AdamW state entries shaped like the parameter, zeroed for recycled entries.
_MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


@dataclass(frozen=True)
class RecycleReport:
    """What one call of :func:`recycle_dormant` did: recycled neurons per layer."""

    recycled: dict[str, int]
    neurons: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.recycled.values())

    @property
    def fraction(self) -> float:
        """Recycled neurons / all hidden neurons."""
        return self.total / sum(self.neurons.values())


def recycle_dormant(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    x: Tensor,
    tau: float,
    *,
    init: InitName = "default",
    bias: BiasMode = "zero",
    step_mode: StepMode = "auto",
    generator: torch.Generator | None = None,
) -> RecycleReport:
    """Score the hidden neurons of ``model`` on the batch ``x`` and recycle the tau-dormant ones.

    Args:
        model: an ``nn.Sequential`` of Linear/Conv2d layers and activations (see
            :mod:`redo.core.structure`), e.g. one of the package's Q-networks.
        optimizer: the optimizer that trains ``model`` (Adam, AdamW or
            :class:`redo.core.optim.ElementwiseAdam`), whose state for the reset entries is cleared;
            ``None`` to reset weights only.
        x: a batch of inputs (the paper uses 64 states sampled from the replay buffer).
        tau: dormancy threshold, ``s_i <= tau`` (paper: 0.025 at replay ratio 0.25, else 0.1).
        init: distribution of the new incoming weights; see :func:`init_like`.
        bias: ``"zero"`` (paper, Dopamine) or ``"redraw"`` from the layer's default bias init.
        step_mode: what happens to Adam's step count; see :func:`reset_optimizer_entries`.
        generator: random source of the new weights, for reproducible resets.
    """
    masks = dormant_masks(dormant_scores(model, x), tau)
    return reset_neurons(
        model, optimizer, masks, init=init, bias=bias, step_mode=step_mode, generator=generator
    )


def reset_neurons(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    masks: Mapping[str, Tensor],
    *,
    init: InitName = "default",
    bias: BiasMode = "zero",
    step_mode: StepMode = "auto",
    generator: torch.Generator | None = None,
) -> RecycleReport:
    """Recycle the neurons selected by ``masks`` (``{layer name: bool tensor}``) in place."""
    _check_choice("init", init, INIT_CHOICES)
    _check_choice("bias", bias, BIAS_CHOICES)
    _check_choice("step_mode", step_mode, STEP_CHOICES)
    if optimizer is not None:
        step_mode = _resolve_step_mode(optimizer, step_mode)
    layers = {layer.name: layer for layer in hidden_layers(model)}
    unknown = set(masks) - set(layers)
    if unknown:
        raise ValueError(
            f"masks name unknown layers {sorted(unknown)}; hidden layers are {list(layers)}"
        )

    full_masks = {
        name: masks.get(name, torch.zeros(layer.width, dtype=torch.bool))
        for name, layer in layers.items()
    }
    for name, mask in full_masks.items():  # all checked before anything changes
        _check_mask(name, mask, layers[name].width)

    recycled: dict[str, int] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            mask = full_masks[name]
            recycled[name] = int(mask.sum())
            if recycled[name] == 0:
                continue
            entries = _reset_layer(layer, mask.to(layer.layer.weight.device), init, bias, generator)
            if optimizer is not None:
                for param, entry_mask in entries:
                    _clear_state(optimizer, param, entry_mask, step_mode)
    if optimizer is not None and step_mode == "zero_all" and sum(recycled.values()) > 0:
        _zero_all_steps(optimizer)
    return RecycleReport(recycled=recycled, neurons={n: layer.width for n, layer in layers.items()})


def init_like(weight: Tensor, init: InitName, generator: torch.Generator | None = None) -> Tensor:
    """A fresh tensor shaped like ``weight`` drawn from the named initial distribution.

    * ``default``: PyTorch's own Linear/Conv2d init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
      (``kaiming_uniform_`` with ``a = sqrt(5)``), i.e. the distribution the layer started from.
    * ``xavier_uniform``: Glorot uniform, what Dopamine's ReDo always uses.
    * ``lecun_normal``: truncated normal with variance ``1/fan_in`` (JAX/Flax's default).
    * ``kaiming_uniform``: He uniform for ReLU, ``U(-sqrt(6/fan_in), sqrt(6/fan_in))``, the
      bound the PyTorch seed repository uses, about 2.45x PyTorch's default.
    """
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    fresh = torch.empty_like(weight)
    if init == "default":
        bound = 1 / math.sqrt(fan_in)
    elif init == "xavier_uniform":
        bound = math.sqrt(6 / (fan_in + fan_out))
    elif init == "kaiming_uniform":
        bound = math.sqrt(6 / fan_in)
    elif init == "lecun_normal":
        # std of a unit normal truncated to [-2, 2] is 0.8796: divide it out, as JAX does.
        std = 1 / math.sqrt(fan_in) / 0.87962566103423978
        return nn.init.trunc_normal_(fresh, 0.0, std, -2 * std, 2 * std, generator=generator)
    else:
        _check_choice("init", init, INIT_CHOICES)
    return fresh.uniform_(-bound, bound, generator=generator)


def outgoing_mask(layer: HiddenLayer, neuron_mask: Tensor) -> Tensor:
    """Boolean mask over ``layer.next_layer.weight`` of the weights that read ``neuron_mask``.

    A dense or conv next layer reads neuron c through input column / channel c. After
    ``nn.Flatten`` of an NCHW convolution output, channel c owns the contiguous block of
    columns ``c*H*W ... (c+1)*H*W - 1``: hence ``repeat_interleave``, not ``repeat`` (which
    would be right for an NHWC flatten, the layout of JAX/TensorFlow convolutions).
    """
    columns = neuron_mask.repeat_interleave(layer.columns_per_neuron)
    weight = layer.next_layer.weight
    shape = [1, columns.numel()] + [1] * (weight.dim() - 2)
    return columns.view(shape).expand_as(weight)


def reset_optimizer_entries(
    optimizer: torch.optim.Optimizer, param: Tensor, entries: Tensor, step_mode: StepMode = "auto"
) -> None:
    """Zero the optimizer's moments of ``param`` where ``entries`` is True.

    ``step_mode`` decides what happens to Adam's step count, which drives its bias correction:

    * ``elementwise`` (default with :class:`redo.core.optim.ElementwiseAdam`): the reset entries'
      step restarts at 0, the others keep theirs. Correct: fresh moments get a fresh correction.
    * ``keep`` (default with ``torch.optim.Adam``/``AdamW``, which hold one step per tensor;
      Dopamine's choice): steps unchanged.
    * ``zero_all`` (the seed repository): every parameter's step is set to 0, which restarts
      the bias correction of all weights and shrinks their next updates. Applied once per
      reset by :func:`reset_neurons`; here it behaves like ``keep``.
    """
    _clear_state(optimizer, param, entries, _resolve_step_mode(optimizer, step_mode))


def _reset_layer(
    layer: HiddenLayer,
    mask: Tensor,
    init: InitName,
    bias: BiasMode,
    generator: torch.Generator | None,
) -> list[tuple[Tensor, Tensor]]:
    """Reset one layer's dormant neurons; return (parameter, changed-entries mask) pairs."""
    weight = layer.layer.weight
    rows = mask.view([-1] + [1] * (weight.dim() - 1)).expand_as(weight)
    weight.copy_(torch.where(rows, init_like(weight, init, generator), weight))
    entries = [(weight, rows)]
    if layer.layer.bias is not None:
        layer_bias = layer.layer.bias
        if bias == "zero":
            fresh_bias = torch.zeros_like(layer_bias)
        else:
            bound = 1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(weight)[0])
            fresh_bias = torch.empty_like(layer_bias).uniform_(-bound, bound, generator=generator)
        layer_bias.copy_(torch.where(mask, fresh_bias, layer_bias))
        entries.append((layer_bias, mask))
    next_weight = layer.next_layer.weight
    columns = outgoing_mask(layer, mask)
    next_weight.masked_fill_(columns, 0.0)
    entries.append((next_weight, columns))
    return entries


def _clear_state(
    optimizer: torch.optim.Optimizer, param: Tensor, entries: Tensor, step_mode: StepMode
) -> None:
    state = optimizer.state.get(param)
    if not state:  # the optimizer has not stepped yet, or does not train this parameter
        return
    for key in _MOMENT_KEYS:
        if key in state and state[key] is not None and state[key].shape == param.shape:
            state[key].masked_fill_(entries, 0.0)
    if step_mode == "elementwise":
        restart_clock_(state, entries)


def _zero_all_steps(optimizer: torch.optim.Optimizer) -> None:
    """Restart every step count (and, for ElementwiseAdam, the bias corrections kept with it)."""
    for state in optimizer.state.values():
        for key, value in CLOCK_RESTART.items():
            if key not in state:
                continue
            if isinstance(state[key], Tensor):
                state[key].fill_(value)
            else:
                state[key] = type(state[key])(value)


def _resolve_step_mode(optimizer: torch.optim.Optimizer, step_mode: StepMode) -> StepMode:
    elementwise = has_elementwise_step(optimizer)
    if step_mode == "auto":
        return "elementwise" if elementwise else "keep"
    if step_mode == "elementwise" and not elementwise:
        raise ValueError(
            f"step_mode='elementwise' needs one step count per weight, but "
            f"{type(optimizer).__name__} keeps one per tensor; use redo.core.optim.ElementwiseAdam, "
            "or step_mode='keep' (Dopamine) or 'zero_all' (seed repository)"
        )
    return step_mode


def _check_mask(name: str, mask: Tensor, width: int) -> None:
    if mask.dtype != torch.bool or mask.shape != (width,):
        raise ValueError(
            f"mask of layer {name!r} must be a bool tensor of shape ({width},), "
            f"got {mask.dtype} of shape {tuple(mask.shape)}"
        )


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {list(choices)}, got {value!r}")


__all__ = [
    "BIAS_CHOICES",
    "INIT_CHOICES",
    "STEP_CHOICES",
    "RecycleReport",
    "WeightLayer",
    "init_like",
    "outgoing_mask",
    "recycle_dormant",
    "reset_neurons",
    "reset_optimizer_entries",
]
