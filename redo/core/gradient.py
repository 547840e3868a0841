"""The gradient-magnitude neuron score of GraMa (Liu et al., NeurIPS 2025, arXiv:2505.24061).

"Measure gradients, not activations! Enhancing neuronal activity in deep reinforcement
learning" scores a neuron by how strongly the loss pulls on it rather than by how much it
fires. **Our reading of the paper**, and the per-neuron reduction that public ReGraMa
implementations use, is: for a neuron *i* of a hidden layer *l* with incoming weights
``W_l[i]`` (its row of a Linear weight, or its output channel's kernel of a Conv2d),

    g_i = mean_j |dL/dW_l[i, j]|      (j over the in-features, or over
                                       in-channels x kernel height x kernel width)

    s_i = g_i / ( (1/H_l) * sum_k g_k + eps )

i.e. the mean absolute gradient of the loss with respect to the neuron's incoming weights,
divided by the mean of that quantity over the layer's ``H_l`` neurons plus the same ``eps`` as
:data:`redo.core.dormant.SCORE_EPS`. A neuron is *gradient-dormant* when ``s_i <= tau``. The
bias gradient is not part of the score. As for ReDo's activation score, dividing by the layer
mean makes the score independent of the loss's scale and of the layer's width, and the output
layer is never scored.

The scores are ordinary ``{layer name: 1-D tensor}`` dictionaries, keyed and ordered as
:func:`redo.core.dormant.dormant_scores` returns them, so they go straight into
:func:`redo.core.recycle.select_neurons`, :func:`redo.core.dormant.dormant_masks` and
:func:`redo.core.dormant.dormant_summary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from redo.core.dormant import SCORE_EPS, scores_from_activity
from redo.core.structure import hidden_layers


def gradient_scores(model: nn.Module, loss: Tensor, eps: float = SCORE_EPS) -> dict[str, Tensor]:
    """Per-neuron gradient-magnitude (GraMa) scores of every hidden layer of ``model``.

    For each hidden layer (:func:`redo.core.structure.hidden_layers`: every Linear/Conv2d
    layer but the output one), the score of neuron ``i`` is the mean of ``|dL/dW[i]|`` over
    its incoming weights (in-features, or in-channels x kernel height x kernel width),
    divided by the layer mean of that quantity plus ``eps``; see the module docstring.

    Building ``loss``: any scalar computed from ``model``'s own forward pass with autograd
    enabled, reduced over the batch. In the paper's setting it is the agent's training loss
    on a batch from the replay buffer, e.g. for DQN::

        q = model(states).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            target = rewards + gamma * (1 - dones) * target_net(next_states).max(1).values
        loss = torch.nn.functional.smooth_l1_loss(q, target)   # scalar: mean over the batch
        scores = gradient_scores(model, loss)

    The loss must come from ``model`` itself, not from a copy or the target network, and
    must depend on every hidden layer's weight.

    The gradients are taken with ``torch.autograd.grad(loss, weights)``: the parameters'
    ``.grad`` fields are left exactly as they were (``None`` stays ``None``, accumulated
    gradients are unchanged), so scoring does not disturb a training step. The graph of
    ``loss`` is freed afterwards (``retain_graph=False``); to also call ``loss.backward()``,
    compute the loss again (or score before building the training loss).

    Args:
        model: an ``nn.Sequential`` of Linear/Conv2d layers and activations (see
            :mod:`redo.core.structure`); other models are rejected by ``hidden_layers``.
        loss: a 0-dimensional tensor that requires grad and depends on every hidden layer's
            weight.
        eps: added to each layer's mean gradient magnitude (default
            :data:`redo.core.dormant.SCORE_EPS`), so that a layer with no gradient at all
            scores 0 (all dormant) instead of NaN.

    Returns:
        ``{layer name: 1-D tensor of scores}`` in forward order, as
        :func:`redo.core.dormant.dormant_scores`; detached, on the weights' device and dtype.

    Raises:
        ValueError: ``loss`` is not a scalar tensor, does not require grad, or does not
            depend on a hidden layer's weight (the message names the layers); a hidden
            layer's weight does not require grad; or ``model`` is not a structure that
            ``hidden_layers`` accepts.
    """
    layers = hidden_layers(model)
    _check_loss(loss)
    frozen = [layer.name for layer in layers if not layer.layer.weight.requires_grad]
    if frozen:
        raise ValueError(
            f"the weight of hidden layer(s) {frozen} does not require grad, so no gradient "
            "can score its neurons; set requires_grad=True on it"
        )
    weights = [layer.layer.weight for layer in layers]
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    unused = [layer.name for layer, grad in zip(layers, grads, strict=True) if grad is None]
    if unused:
        raise ValueError(
            f"the loss does not depend on the weight of hidden layer(s) {unused}; compute it "
            "from this model's own forward pass (not a copy, nor the target network) with "
            "autograd enabled"
        )
    return {
        layer.name: scores_from_activity(grad.abs().flatten(start_dim=1).mean(dim=1), eps)
        for layer, grad in zip(layers, grads, strict=True)
    }


def _check_loss(loss: Tensor) -> None:
    if not isinstance(loss, Tensor):
        raise ValueError(f"loss must be a scalar torch.Tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(
            f"loss must be a scalar (0-dimensional) tensor, got shape {tuple(loss.shape)}; "
            "reduce it over the batch first, e.g. loss.mean()"
        )
    if not loss.requires_grad:
        raise ValueError(
            "loss does not require grad, so it has no gradient with respect to the weights; "
            "compute it from the model's forward pass outside torch.no_grad() and without "
            ".detach()"
        )


__all__: Sequence[str] = ["gradient_scores"]
