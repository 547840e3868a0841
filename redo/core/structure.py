"""Find the hidden layers of a network: layer -> activation -> (Flatten) -> next layer.

Scoring a neuron needs its post-activation output; recycling it needs its incoming weights
(a row of the layer) and its outgoing weights (columns of the next layer). Both are read from
an ``nn.Sequential`` whose structure is checked, never guessed: every Linear/Conv2d layer but
the last must be followed by exactly one activation module before the next Linear/Conv2d, with
an optional ``nn.Flatten`` between a convolution and a dense layer. Anything else (a
normalisation layer, a missing activation, a dense layer feeding a convolution) is rejected
with a message that says which module breaks the pattern.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from torch import nn

WeightLayer = nn.Linear | nn.Conv2d

#: Parameter-free modules that may sit between a layer and the next one without changing
#: which neuron feeds which weights.
_PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class HiddenLayer:
    """One scorable layer and the modules around it.

    ``name`` is the module's dotted path in the model (as in ``model.named_modules()``).
    ``columns_per_neuron`` is how many input columns of ``next_layer`` one neuron feeds: 1 for
    linear->linear and conv->conv (input channel), H*W for conv->Flatten->linear, where PyTorch
    flattens (C, H, W) so channel c owns the contiguous columns c*H*W ... (c+1)*H*W - 1.
    """

    name: str
    layer: WeightLayer
    activation: nn.Module
    next_layer: WeightLayer
    columns_per_neuron: int

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, nn.Conv2d)

    @property
    def width(self) -> int:
        """Number of neurons: output features, or output channels of a convolution."""
        return self.layer.weight.shape[0]


def hidden_layers(model: nn.Module) -> list[HiddenLayer]:
    """The hidden layers of ``model`` in forward order (every weight layer but the output one)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"expected an nn.Sequential of Linear/Conv2d layers and activations, got "
            f"{type(model).__name__}; build the network as nn.Sequential (the package's Q-networks "
            "are) so that each layer's activation and next layer are known"
        )
    leaves = _leaf_modules(model, prefix="")
    weight_positions = [
        i for i, (_, module) in enumerate(leaves) if isinstance(module, WeightLayer)
    ]
    if len(weight_positions) < 2:
        raise ValueError(
            f"the model has {len(weight_positions)} Linear/Conv2d layer(s); a scorable hidden layer "
            "needs a Linear/Conv2d layer followed by an activation and another Linear/Conv2d layer"
        )
    for name, module in leaves[: weight_positions[0]]:
        _require_parameter_free(name, module)
    layers = [
        _hidden_layer(leaves, start, stop) for start, stop in itertools.pairwise(weight_positions)
    ]
    activation_ids = [id(layer.activation) for layer in layers]
    if len(set(activation_ids)) != len(activation_ids):
        raise ValueError(
            "one activation module instance follows several layers; give each layer its own "
            "activation module (e.g. nn.ReLU() per layer) so their outputs can be told apart"
        )
    return layers


def weight_layers(model: nn.Module) -> list[WeightLayer]:
    """Every Linear/Conv2d layer in forward order: the hidden layers, then the output layer
    (the last one, whose neurons ReDo never recycles)."""
    hidden = hidden_layers(model)
    return [layer.layer for layer in hidden] + [hidden[-1].next_layer]


def _hidden_layer(leaves: list[tuple[str, nn.Module]], start: int, stop: int) -> HiddenLayer:
    name, layer = leaves[start]
    next_name, next_layer = leaves[stop]
    between = leaves[start + 1 : stop]
    for module_name, module in between:
        _require_parameter_free(module_name, module)
    activations = [m for _, m in between if not isinstance(m, _PASS_THROUGH)]
    if len(activations) != 1:
        found = [type(m).__name__ for _, m in between] or ["nothing"]
        raise ValueError(
            f"layer {name!r} must be followed by exactly one activation module before "
            f"{next_name!r}, found {found}; the dormant score is defined on post-activation outputs"
        )
    flattens = any(isinstance(m, nn.Flatten) for _, m in between)
    if flattens and _position(between, nn.Flatten) < _position(between, type(activations[0])):
        raise ValueError(
            f"layer {name!r} is flattened before its activation; put the activation before "
            "nn.Flatten so that each channel's output can be scored"
        )
    return HiddenLayer(
        name=name,
        layer=layer,
        activation=activations[0],
        next_layer=next_layer,
        columns_per_neuron=_columns_per_neuron(name, layer, next_name, next_layer, flattens),
    )


def _columns_per_neuron(
    name: str, layer: WeightLayer, next_name: str, next_layer: WeightLayer, flattens: bool
) -> int:
    width = layer.weight.shape[0]
    if isinstance(next_layer, nn.Conv2d):
        if not isinstance(layer, nn.Conv2d):
            raise ValueError(f"dense layer {name!r} feeds convolution {next_name!r}: not supported")
        if next_layer.groups != 1 or next_layer.in_channels != width:
            raise ValueError(
                f"convolution {next_name!r} must read all {width} channels of {name!r} "
                f"(groups=1), got in_channels={next_layer.in_channels}, groups={next_layer.groups}"
            )
        return 1
    if isinstance(layer, nn.Conv2d) and not flattens:
        raise ValueError(f"convolution {name!r} feeds dense layer {next_name!r} without nn.Flatten")
    if next_layer.in_features % width != 0:
        raise ValueError(
            f"{next_name!r} has {next_layer.in_features} inputs, not a multiple of the {width} "
            f"neurons of {name!r}"
        )
    return next_layer.in_features // width


def _leaf_modules(module: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    leaves: list[tuple[str, nn.Module]] = []
    # _modules, not named_children(): the latter skips a module instance that appears twice.
    for child_name, child in module._modules.items():
        name = f"{prefix}{child_name}"
        if isinstance(child, nn.Sequential):
            leaves.extend(_leaf_modules(child, prefix=f"{name}."))
        else:
            leaves.append((name, child))
    return leaves


def _position(modules: list[tuple[str, nn.Module]], kind: type) -> int:
    return next(i for i, (_, module) in enumerate(modules) if isinstance(module, kind))


def _require_parameter_free(name: str, module: nn.Module) -> None:
    if any(True for _ in module.parameters()):
        raise ValueError(
            f"module {name!r} ({type(module).__name__}) has parameters but is not Linear/Conv2d; "
            "ReDo's reset is only defined for Linear/Conv2d layers joined by activations"
        )
