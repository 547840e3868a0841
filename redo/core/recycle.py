"""ReDo: recycle dormant neurons (Sokar et al., 2023, Algorithm 1), as the paper's code does it.

For the neurons chosen at a recycling step (by default the tau-dormant ones):

1. their incoming weights (a row of a dense layer, an output channel's kernel of a
   convolution) are drawn again from an initial distribution, and their biases set to 0;
2. then their outgoing weights (their columns in the next layer) are set to zero, so that
   right after the reset the network computes what it computed before without those neurons'
   contribution: exactly the same function at tau = 0, where the neurons were silent anyway;
3. the optimizer's moments of exactly those incoming and outgoing entries are zeroed, so that
   stale momentum does not push the fresh weights straight back to where they died.

**One rule, whatever the layer order.** Step 1 is done for every layer before step 2 for any:
when neuron i of layer l and neuron j of layer l+1 are both recycled, the weight
``W[l+1][j, i]`` is both an incoming weight of j and an outgoing weight of i, and it ends at
zero, as it does in the official code (google/dopamine ``labs/redo/weight_recyclers.py``,
which redraws every layer's incoming weights and then zeroes the outgoing ones).

**The paper's ReDo is the default**: new incoming weights from the distribution the layer
was initialised with (``init="default"``: PyTorch's own init, which the package's networks
keep), bias 0, outgoing weights 0, moments 0, and Adam's step count kept (``step_mode="keep"``,
optax's single count). The book's other choices are named options, shown as ablations.

The output layer's own neurons (the Q-values) are never recycled, although its input columns
that belong to a recycled last-hidden neuron are zeroed as that neuron's outgoing weights.
The target network is not an argument and is therefore never touched: it catches up at its
next synchronisation, as in Dopamine.

The reset works on tensors (:class:`LayerTensors`), so the single agent's network and one
agent's slice of a stacked population are recycled by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.optim import CLOCK_RESTART, ElementwiseAdam, restart_clock_
from redo.core.structure import HiddenLayer, hidden_layers, weight_layers

InitName = Literal["default", "xavier_uniform", "lecun_normal", "kaiming_uniform", "scaled"]
BiasMode = Literal["zero", "redraw"]
StepMode = Literal["keep", "elementwise", "zero_all"]
Selection = Literal["dormant", "random", "all"]
ScoreName = Literal["activation", "gradient"]

INIT_CHOICES: tuple[str, ...] = (
    "default",
    "xavier_uniform",
    "lecun_normal",
    "kaiming_uniform",
    "scaled",
)
BIAS_CHOICES: tuple[str, ...] = ("zero", "redraw")
STEP_CHOICES: tuple[str, ...] = ("keep", "elementwise", "zero_all")
SELECTION_CHOICES: tuple[str, ...] = ("dormant", "random", "all")
#: What neurons are scored by: their activations (the paper's,
#: :func:`redo.core.dormant.dormant_scores`) or the gradient of the loss on their incoming
#: weights (GraMa, :func:`redo.core.gradient.gradient_scores`).
SCORE_CHOICES: tuple[str, ...] = ("activation", "gradient")

#: Adam/AdamW state entries shaped like the parameter, zeroed for recycled entries.
MOMENT_KEYS: tuple[str, ...] = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


@dataclass(frozen=True)
class RecycleReport:
    """What one call of :func:`recycle_dormant` did: recycled neurons per layer (``masks``
    says which, ``recycled`` how many), and the scores that chose them (measured before the
    reset)."""

    recycled: dict[str, int]
    neurons: dict[str, int]
    scores: dict[str, Tensor]
    masks: dict[str, Tensor]

    @property
    def total(self) -> int:
        return sum(self.recycled.values())

    @property
    def fraction(self) -> float:
        """Recycled neurons / all hidden neurons."""
        return self.total / sum(self.neurons.values())


@dataclass(frozen=True)
class LayerTensors:
    """The tensors a reset of one hidden layer touches: its ``weight`` (neurons first) and
    ``bias``, and the ``next_weight`` whose input columns (``columns_per_neuron`` per
    neuron, see :class:`redo.core.structure.HiddenLayer`) read it."""

    weight: Tensor
    bias: Tensor | None
    next_weight: Tensor
    columns_per_neuron: int

    @classmethod
    def of(cls, layer: HiddenLayer) -> LayerTensors:
        return cls(
            layer.layer.weight, layer.layer.bias, layer.next_layer.weight, layer.columns_per_neuron
        )


def recycle_dormant(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    x: Tensor,
    tau: float,
    *,
    init: InitName = "default",
    bias: BiasMode = "zero",
    step_mode: StepMode = "keep",
    selection: Selection = "dormant",
    generator: torch.Generator | None = None,
) -> RecycleReport:
    """Score the hidden neurons of ``model`` on the batch ``x`` and recycle the tau-dormant ones.

    Args:
        model: an ``nn.Sequential`` of Linear/Conv2d layers and activations (see
            :mod:`redo.core.structure`), e.g. one of the package's Q-networks.
        optimizer: the optimizer that trains ``model`` (Adam, AdamW or
            :class:`redo.core.optim.ElementwiseAdam`), whose state for the reset entries is
            cleared; ``None`` to reset weights only.
        x: a batch of inputs (the paper uses 64 states sampled from the replay buffer).
        tau: dormancy threshold, ``s_i <= tau`` (paper: 0.025 at replay ratio 0.25, else 0.1).
        init: distribution of the new incoming weights; see :func:`init_like`.
        bias: ``"zero"`` (paper, Dopamine) or ``"redraw"`` from the layer's default bias init.
        step_mode: what happens to Adam's step count; see :func:`clear_optimizer_entries`.
        selection: which neurons: ``"dormant"`` (the paper), ``"random"`` (as many per layer
            as are dormant, chosen at random: the paper's control for its selection rule) or
            ``"all"`` (re-initialise the whole network, output layer included).
        generator: random source of the new weights (and of a random selection).
    """
    scores = dormant_scores(model, x)
    masks = select_neurons(scores, tau, selection, generator)
    return reset_neurons(
        model, optimizer, masks, init=init, bias=bias, step_mode=step_mode,
        whole_network=selection == "all", generator=generator, scores=scores,
    )  # fmt: skip


def select_neurons(
    scores: Mapping[str, Tensor],
    tau: float,
    selection: Selection = "dormant",
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The neurons to recycle per layer: the tau-dormant ones (``score <= tau``), as many
    random ones per layer, or all of them (``selection="all"``)."""
    _check_choice("selection", selection, SELECTION_CHOICES)
    masks = dormant_masks(scores, tau)
    if selection == "all":
        return {name: torch.ones_like(mask) for name, mask in masks.items()}
    if selection == "random":
        return {name: random_mask_like(mask, generator) for name, mask in masks.items()}
    return masks


def random_mask_like(mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A mask with as many True entries as ``mask`` (1-D), at uniformly random positions."""
    chosen = torch.randperm(mask.numel(), generator=generator, device=mask.device)
    random = torch.zeros_like(mask)
    random[chosen[: int(mask.sum())]] = True
    return random


def reset_neurons(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    masks: Mapping[str, Tensor],
    *,
    init: InitName = "default",
    bias: BiasMode = "zero",
    step_mode: StepMode = "keep",
    whole_network: bool = False,
    generator: torch.Generator | None = None,
    scores: Mapping[str, Tensor] | None = None,
) -> RecycleReport:
    """Recycle the neurons selected by ``masks`` (``{layer name: bool tensor}``) in place.

    ``whole_network`` re-initialises every layer instead, the output layer included (the
    "reset everything" ablation; ``masks`` must then select every neuron). ``scores``, if
    given, are reported back (those that chose the masks).
    """
    _check_options(init, bias, step_mode)
    layers = {layer.name: layer for layer in hidden_layers(model)}
    unknown = set(masks) - set(layers)
    if unknown:
        raise ValueError(
            f"masks name unknown layers {sorted(unknown)}; hidden layers are {list(layers)}"
        )
    full_masks = {
        name: masks.get(name, torch.zeros(layer.width, dtype=torch.bool)).to(
            layer.layer.weight.device
        )
        for name, layer in layers.items()
    }
    for name, mask in full_masks.items():  # all checked before anything changes
        _check_mask(name, mask, layers[name].width)
    if whole_network and not all(bool(mask.all()) for mask in full_masks.values()):
        raise ValueError(
            "whole_network=True re-initialises every neuron, so masks must select all of "
            "them in every hidden layer (select_neurons(..., selection='all'))"
        )
    if optimizer is not None:
        check_step_mode(optimizer, step_mode)
    tensors = [LayerTensors.of(layer) for layer in layers.values()]
    output = weight_layers(model)[-1] if whole_network else None
    with torch.no_grad():
        if output is None:
            entries = reset_tensors(tensors, list(full_masks.values()), init, bias, generator)
        else:
            entries = reinitialise_tensors(
                [(m.weight, m.bias) for m in weight_layers(model)], init, bias, generator
            )
        if optimizer is not None:
            clear_optimizer_entries(optimizer, entries, step_mode)
    return RecycleReport(
        recycled={name: int(mask.sum()) for name, mask in full_masks.items()},
        neurons={name: layer.width for name, layer in layers.items()},
        scores=dict(scores or {}),
        masks={name: mask.cpu() for name, mask in full_masks.items()},
    )


@torch.no_grad()
def reset_tensors(
    layers: Sequence[LayerTensors],
    masks: Sequence[Tensor],
    init: InitName = "default",
    bias: BiasMode = "zero",
    generator: torch.Generator | None = None,
) -> dict[Tensor, Tensor]:
    """The reset rule on tensors, in place: every layer's chosen neurons get fresh incoming
    weights (and bias), then their outgoing weights are zeroed.

    ``layers[i]`` is recycled where ``masks[i]`` (one bool per neuron) is True; each layer
    names the weight its neurons feed (``next_weight``), so the order of ``layers`` does not
    matter. A layer with nothing to recycle draws no random numbers.
    Returns every changed tensor with the mask of its changed entries (the union of its
    incoming rows and outgoing columns), for the optimizer's state.
    """
    changed: dict[Tensor, Tensor] = {}

    def touch(tensor: Tensor, entries: Tensor) -> None:
        changed[tensor] = changed[tensor] | entries if tensor in changed else entries

    for layer, mask in zip(layers, masks, strict=True):
        if mask.any():
            rows = _rows(mask, layer.weight)
            fresh = init_like(layer.weight, init, generator)
            if init == "scaled":
                fresh = scaled_to_layer(fresh, layer.weight, mask)
            layer.weight.copy_(torch.where(rows, fresh, layer.weight))
            touch(layer.weight, rows)
            if layer.bias is not None:
                fresh = fresh_bias(layer.weight, layer.bias, bias, generator)
                layer.bias.copy_(torch.where(mask, fresh, layer.bias))
                touch(layer.bias, mask)
    for layer, mask in zip(layers, masks, strict=True):
        if mask.any():
            columns = outgoing_mask(mask, layer.columns_per_neuron, layer.next_weight)
            layer.next_weight.masked_fill_(columns, 0.0)
            touch(layer.next_weight, columns)
    return changed


@torch.no_grad()
def reinitialise_tensors(
    layers: Sequence[tuple[Tensor, Tensor | None]],
    init: InitName = "default",
    bias: BiasMode = "zero",
    generator: torch.Generator | None = None,
) -> dict[Tensor, Tensor]:
    """Draw every ``(weight, bias)`` pair afresh, the output layer's too: the "reset
    everything" ablation. Returns each tensor with an all-True mask."""
    changed: dict[Tensor, Tensor] = {}
    for weight, layer_bias in layers:
        weight.copy_(init_like(weight, init, generator))
        changed[weight] = torch.ones_like(weight, dtype=torch.bool)
        if layer_bias is not None:
            layer_bias.copy_(fresh_bias(weight, layer_bias, bias, generator))
            changed[layer_bias] = torch.ones_like(layer_bias, dtype=torch.bool)
    return changed


def init_like(weight: Tensor, init: InitName, generator: torch.Generator | None = None) -> Tensor:
    """A fresh tensor shaped like ``weight`` drawn from the named initial distribution.

    * ``default``: PyTorch's own Linear/Conv2d init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
      (``kaiming_uniform_`` with ``a = sqrt(5)``), i.e. the distribution the package's layers
      started from: the paper's rule of redrawing from the network's own initialiser.
    * ``xavier_uniform``: Glorot uniform, the initialiser of the official code's networks
      (and so what it redraws with); on our PyTorch-initialised layers it is another
      distribution than the one they started from.
    * ``lecun_normal``: truncated normal with variance ``1/fan_in`` (JAX/Flax's default).
    * ``kaiming_uniform``: He uniform for ReLU, ``U(-sqrt(6/fan_in), sqrt(6/fan_in))``, the
      bound the PyTorch seed repository uses, about 2.45x PyTorch's default.
    * ``scaled``: drawn as ``default``; a reset then rescales each recycled neuron's
      incoming weights to the layer's trained scale (:func:`scaled_to_layer`). Where nothing
      is left to measure that scale (a whole-network reset), it stays ``default``.
    """
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    fresh = torch.empty_like(weight)
    if init in ("default", "scaled"):
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


def scaled_to_layer(fresh: Tensor, weight: Tensor, mask: Tensor) -> Tensor:
    """``fresh`` with every neuron's incoming weights (a row, or an output channel's kernel)
    rescaled to the mean L2 norm of the incoming weights of ``weight``'s neurons that
    ``mask`` does not recycle: the official code's ``weight_scaling=True`` option.

    Why: a trained layer's weights grow far beyond their initial scale, so a neuron redrawn
    at that scale starts with a normalised score well below the others' and may be dormant
    again at the next check. When every neuron is recycled there is no trained scale to
    copy, and ``fresh`` is returned as drawn.
    """
    kept = ~mask
    if not kept.any():
        return fresh
    target = weight.flatten(1)[kept].norm(dim=1).mean()
    norms = fresh.flatten(1).norm(dim=1).clamp_min(torch.finfo(fresh.dtype).tiny)
    return fresh * (target / norms).view(-1, *([1] * (fresh.dim() - 1)))


def fresh_bias(
    weight: Tensor, layer_bias: Tensor, bias: BiasMode, generator: torch.Generator | None
) -> Tensor:
    """New biases for the layer of ``weight``: 0, or drawn from PyTorch's default bias init."""
    if bias == "zero":
        return torch.zeros_like(layer_bias)
    bound = 1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(weight)[0])
    return torch.empty_like(layer_bias).uniform_(-bound, bound, generator=generator)


def outgoing_mask(neuron_mask: Tensor, columns_per_neuron: int, next_weight: Tensor) -> Tensor:
    """Boolean mask over ``next_weight`` of the weights that read the neurons in ``neuron_mask``.

    A dense or conv next layer reads neuron c through input column / channel c. After
    ``nn.Flatten`` of an NCHW convolution output, channel c owns the contiguous block of
    columns ``c*H*W ... (c+1)*H*W - 1``: hence ``repeat_interleave``. (The official JAX code
    repeats the mask block-wise, ``jnp.repeat``'s tiling, over Flax's NHWC flatten, whose
    column of channel c at position p is ``p*C + c``: see the recycling chapter.)
    """
    columns = neuron_mask.repeat_interleave(columns_per_neuron)
    shape = [1, columns.numel()] + [1] * (next_weight.dim() - 2)
    return columns.view(shape).expand_as(next_weight)


def clear_optimizer_entries(
    optimizer: torch.optim.Optimizer, entries: Mapping[Tensor, Tensor], step_mode: StepMode
) -> None:
    """Zero the optimizer's moments of each parameter where its ``entries`` mask is True.

    ``step_mode`` decides what happens to Adam's step count, which drives its bias correction:

    * ``keep`` (the paper's, the official code's single optax count): steps unchanged.
    * ``elementwise`` (the book's; needs :class:`redo.core.optim.ElementwiseAdam`): the reset
      entries' step restarts at 0, the others keep theirs: fresh moments get a fresh correction.
    * ``zero_all`` (the PyTorch seed repository): every parameter's step is set to 0, which
      restarts the bias correction of all weights and shrinks their next updates.
    """
    check_step_mode(optimizer, step_mode)
    clear_moments(optimizer.state, entries)
    if step_mode == "elementwise":
        for param, mask in entries.items():
            if optimizer.state.get(param):
                restart_clock_(optimizer.state[param], mask)
    if step_mode == "zero_all" and entries:
        for state in optimizer.state.values():
            for key, value in CLOCK_RESTART.items():
                if key not in state:
                    continue
                if isinstance(state[key], Tensor):
                    state[key].fill_(value)
                else:
                    state[key] = type(state[key])(value)


def clear_moments(
    states: Mapping[Tensor, Mapping[str, Tensor]], entries: Mapping[Tensor, Tensor]
) -> None:
    """Zero the Adam moments in ``states[param]`` (``exp_avg``, ``exp_avg_sq`` and, for
    AMSGrad, ``max_exp_avg_sq``) where ``entries[param]`` is True. ``states`` is an
    optimizer's ``state``, or the same mapping built over one agent's slice of a population."""
    for param, mask in entries.items():
        state = states.get(param)
        if not state:  # the optimizer has not stepped yet, or does not train this parameter
            continue
        for key in MOMENT_KEYS:
            value = state.get(key)
            if value is not None and value.shape == param.shape:
                value.masked_fill_(mask, 0.0)


def check_step_mode(optimizer: torch.optim.Optimizer, step_mode: StepMode) -> None:
    """``elementwise`` needs one step count per weight, which only ElementwiseAdam keeps."""
    _check_choice("step_mode", step_mode, STEP_CHOICES)
    if step_mode == "elementwise" and not isinstance(optimizer, ElementwiseAdam):
        raise ValueError(
            f"step_mode='elementwise' needs one step count per weight, but "
            f"{type(optimizer).__name__} keeps one per tensor; use redo.core.optim.ElementwiseAdam, "
            "or step_mode='keep' (the paper's) or 'zero_all' (seed repository)"
        )


def _check_options(init: str, bias: str, step_mode: str) -> None:
    _check_choice("init", init, INIT_CHOICES)
    _check_choice("bias", bias, BIAS_CHOICES)
    _check_choice("step_mode", step_mode, STEP_CHOICES)


def _rows(mask: Tensor, weight: Tensor) -> Tensor:
    """A per-neuron mask expanded over the neurons' rows (or kernels) of ``weight``."""
    return mask.view([-1] + [1] * (weight.dim() - 1)).expand_as(weight)


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
    "SCORE_CHOICES",
    "SELECTION_CHOICES",
    "STEP_CHOICES",
    "LayerTensors",
    "RecycleReport",
    "check_step_mode",
    "clear_moments",
    "clear_optimizer_entries",
    "fresh_bias",
    "init_like",
    "outgoing_mask",
    "random_mask_like",
    "recycle_dormant",
    "reinitialise_tensors",
    "reset_neurons",
    "reset_tensors",
    "scaled_to_layer",
    "select_neurons",
]
