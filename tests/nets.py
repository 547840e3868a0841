"""Small networks and independent reference computations shared by the tests."""

import copy
import itertools

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh)
_WEIGHT_TYPES = (nn.Linear, nn.Conv2d)


def mlp(*widths, act=nn.ReLU, seed=0):
    """Linear layers of the given widths joined by ``act``; no activation after the last."""
    torch.manual_seed(seed)
    modules = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        modules.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            modules.append(act())
    return nn.Sequential(*modules)


def conv_conv(act=nn.ReLU, seed=0):
    """Conv(3->4) -> Conv(4->5) -> Conv(5->2, 1x1) output; input (N, 3, 7, 7)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), act(), nn.Conv2d(4, 5, 3), act(), nn.Conv2d(5, 2, 1))


def conv_flatten_linear(act=nn.ReLU, seed=0):
    """Conv(3->4) -> Conv(4->5, 3x3 output) -> Flatten -> Linear(45->6) -> Linear(6->3).

    Layer "2" has 5 channels of 3x3 = 9 positions, so it owns 9 columns each of layer "5".
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        act(),
        nn.Conv2d(4, 5, 3),
        act(),
        nn.Flatten(),
        nn.Linear(45, 6),
        act(),
        nn.Linear(6, 3),
    )


def mlp_net(act=nn.ReLU, seed=0):
    return mlp(5, 8, 7, 3, act=act, seed=seed)


#: (builder, input shape without batch); every builder takes ``act`` and ``seed``.
NETS = {
    "mlp": (mlp_net, (5,)),
    "conv_conv": (conv_conv, (3, 7, 7)),
    "conv_flatten_linear": (conv_flatten_linear, (3, 7, 7)),
}


def inputs(shape, n=32, seed=1):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def leaves(model):
    """(name, module) of the model's leaf modules, in definition (= forward) order."""
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def activations_by_hand(model, x):
    """Run the leaves one by one; return {weight layer name: output of its activation}."""
    out, last_weight, h = {}, None, x
    with torch.no_grad():
        for name, module in leaves(model):
            h = module(h)
            if isinstance(module, _WEIGHT_TYPES):
                last_weight = name
            elif not isinstance(module, nn.Flatten | nn.Dropout | nn.Identity) and (
                last_weight is not None and last_weight not in out
            ):  # the activation: the first module after the layer that is not a pass-through
                out[last_weight] = h.clone()
    return out


def reference_scores(model, x):
    """s_i = E|h_i| / (mean_k E|h_k| + 1e-9) in float64, from activations_by_hand."""
    scores = {}
    for name, h in activations_by_hand(model, x).items():
        dims = (0, 2, 3) if h.dim() == 4 else (0,)
        activity = h.double().abs().mean(dim=dims)
        scores[name] = activity / (activity.mean() + 1e-9)
    return scores


def activation_after(model, layer_name):
    """The module that directly follows ``layer_name`` among the leaves."""
    names = [n for n, _ in leaves(model)]
    return model.get_submodule(names[names.index(layer_name) + 1])


def silenced(model, masks):
    """A copy of ``model`` whose neurons in ``masks`` ({layer: bool}) output exactly 0."""
    twin = copy.deepcopy(model)
    for layer_name, mask in masks.items():
        keep = (~mask).float()

        def hook(_module, _inputs, output, keep=keep):
            shape = [1, -1] + [1] * (output.dim() - 2)  # neurons on dim 1: features or channels
            return output * keep.view(shape)

        activation_after(twin, layer_name).register_forward_hook(hook)
    return twin


def kill(model, layer_name, neurons, bias=-1e3):
    """Make ``neurons`` of a ReLU layer silent on any moderate input via a huge negative bias."""
    with torch.no_grad():
        model.get_submodule(layer_name).bias[list(neurons)] = bias


def weaken(model, layer_name, neurons, factor=1e-3):
    """Scale the incoming weights and bias of ``neurons`` (ReLU: their activations) by factor."""
    layer = model.get_submodule(layer_name)
    with torch.no_grad():
        layer.weight[list(neurons)] *= factor
        layer.bias[list(neurons)] *= factor


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def next_weight_layer(model, layer_name):
    names = [n for n, m in leaves(model) if isinstance(m, _WEIGHT_TYPES)]
    return names[names.index(layer_name) + 1]


def outgoing_columns(model, layer_name, neurons):
    """Input columns (channels) of the next weight layer read by ``neurons``: after an NCHW
    flatten, channel c owns the contiguous block c*H*W ... (c+1)*H*W - 1."""
    width = model.get_submodule(layer_name).weight.shape[0]
    per_neuron = model.get_submodule(next_weight_layer(model, layer_name)).weight.shape[1] // width
    return [j for c in neurons for j in range(c * per_neuron, (c + 1) * per_neuron)]


def reset_regions(model, masks):
    """{parameter name: bool tensor of the entries a reset of ``masks`` may change}."""
    regions = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    for layer_name, mask in masks.items():
        neurons = mask.nonzero().flatten().tolist()
        regions[f"{layer_name}.weight"][neurons] = True
        regions[f"{layer_name}.bias"][neurons] = True
        next_name = next_weight_layer(model, layer_name)
        regions[f"{next_name}.weight"][:, outgoing_columns(model, layer_name, neurons)] = True
    return regions
