"""The tau-dormant score of Sokar et al. (2023), eq. (1), and the bookkeeping around it.

A neuron *i* of a hidden layer *l* with post-activation output ``h_i(x)`` has the score

    s_i = E_x |h_i(x)| / ( (1/H_l) * sum_k E_x |h_k(x)| + eps )

i.e. its mean absolute activation divided by the mean of that quantity over the layer's
``H_l`` neurons. A neuron is *tau-dormant* when ``s_i <= tau``. Dividing by the layer mean (the
paper's equation and both reference codes; the paper's text says "sum") makes the score
independent of the layer's overall scale and of its width, so one tau serves every layer.

The maths here is written for any number of leading dimensions, so the same functions score
a single network (batch first) or a stacked population of networks (agent first, then batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from redo.core.structure import HiddenLayer, hidden_layers

if TYPE_CHECKING:
    import pandas as pd

#: Added to the layer mean so that a layer whose neurons are all silent gets scores of 0
#: (all dormant) instead of NaN. Dopamine's ReDo uses the same constant.
SCORE_EPS = 1e-9

#: The thresholds the paper reports: 0 (exactly silent), 0.025 (DQN at the default replay
#: ratio) and 0.1 (higher replay ratios).
PAPER_TAUS: tuple[float, ...] = (0.0, 0.025, 0.1)


def neuron_activity(h: Tensor, conv: bool) -> Tensor:
    """Mean absolute activation ``E|h_i|`` of each neuron.

    ``h`` is a layer's post-activation output: ``(..., batch, neurons)`` for a dense layer and
    ``(..., batch, channels, height, width)`` for a convolution, whose neurons are its channels
    (the expectation then runs over the batch and every spatial position). Leading dimensions
    (for example one per agent of a population) are kept.
    """
    if conv:
        if h.dim() < 4:
            raise ValueError(
                f"a conv activation needs (batch, C, H, W) dims, got shape {tuple(h.shape)}"
            )
        return h.abs().mean(dim=(-4, -2, -1))
    if h.dim() < 2:
        raise ValueError(
            f"a dense activation needs (batch, neurons) dims, got shape {tuple(h.shape)}"
        )
    return h.abs().mean(dim=-2)


def scores_from_activity(activity: Tensor, eps: float = SCORE_EPS) -> Tensor:
    """Normalise per-neuron activity by the layer mean: ``s_i = a_i / (mean_k a_k + eps)``."""
    return activity / (activity.mean(dim=-1, keepdim=True) + eps)


def capture_activations(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Run ``model`` on ``x`` once and return each hidden layer's post-activation output.

    Forward hooks on the activation modules record the outputs; they are removed before this
    function returns, also when the forward pass raises, so the model is left as it was.
    """
    layers = hidden_layers(model)
    _check_batch(x)
    captured: dict[str, Tensor] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
            # clone: an in-place module after the activation must not overwrite what we score
            captured[name] = output.detach().clone()

        return hook

    handles = [layer.activation.register_forward_hook(recorder(layer.name)) for layer in layers]
    try:
        with torch.no_grad():
            try:
                model(x)
            except RuntimeError as error:
                raise ValueError(
                    f"the model could not run on an input of shape {tuple(x.shape)}: {error}"
                ) from error
    finally:
        for handle in handles:
            handle.remove()
    return captured


def dormant_scores(model: nn.Module, x: Tensor, eps: float = SCORE_EPS) -> dict[str, Tensor]:
    """Per-neuron tau-dormant scores of every hidden layer of ``model`` on the batch ``x``.

    Returns ``{layer name: 1-D tensor of scores}`` in forward order, for every Linear/Conv2d
    layer except the output layer. One forward pass; no hooks remain afterwards.
    """
    layers = hidden_layers(model)
    activations = capture_activations(model, x)
    return {
        layer.name: scores_from_activity(
            neuron_activity(activations[layer.name], layer.is_conv), eps
        )
        for layer in layers
    }


def dormant_masks(scores: Mapping[str, Tensor], tau: float) -> dict[str, Tensor]:
    """Boolean masks of the tau-dormant neurons, ``s_i <= tau``, per layer.

    With ``tau = 0`` only neurons whose activation was exactly zero on every input are dormant
    (dead ReLUs): a score is zero exactly when its numerator is.
    """
    check_tau(tau)
    return {name: score <= tau for name, score in scores.items()}


def check_tau(tau: float) -> None:
    """Reject thresholds that cannot mean anything: negative, NaN or infinite."""
    if not isinstance(tau, int | float) or isinstance(tau, bool):
        raise ValueError(f"tau must be a number >= 0, got {tau!r}")
    if math.isnan(tau) or math.isinf(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0 (0 means exactly silent), got {tau}")


@dataclass(frozen=True)
class DormantSummary:
    """Counts of dormant neurons per layer for several thresholds.

    Two overall numbers are common and they differ when layers have different widths:

    * :meth:`fraction` with no layer: total dormant neurons / total neurons. This is what the
      paper's plots show ("percentage of dormant neurons") and what Dopamine's ReDo code and the
      PyTorch seed repository log: counts summed over layers, divided by the summed widths.
      In a DQN it is dominated by the widest layer (the 512-unit dense layer of the Nature CNN).
    * :meth:`mean_layer_fraction`: the mean of the per-layer fractions, which weighs every
      layer equally; useful when a narrow layer dies and the total hides it.
    """

    neurons: dict[str, int]
    dormant: dict[float, dict[str, int]]

    @property
    def taus(self) -> tuple[float, ...]:
        return tuple(self.dormant)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.neurons)

    def count(self, tau: float, layer: str | None = None) -> int:
        """Dormant neurons of one layer, or of all layers when ``layer`` is None."""
        counts = self._counts(tau)
        if layer is None:
            return sum(counts.values())
        if layer not in counts:
            raise KeyError(f"no layer {layer!r}; layers are {list(self.neurons)}")
        return counts[layer]

    def fraction(self, tau: float, layer: str | None = None) -> float:
        """Dormant share of one layer, or total dormant / total neurons when ``layer`` is None."""
        dormant = self.count(tau, layer)
        total = sum(self.neurons.values()) if layer is None else self.neurons[layer]
        return dormant / total

    def mean_layer_fraction(self, tau: float) -> float:
        """Mean over layers of each layer's dormant share."""
        return sum(self.fraction(tau, name) for name in self.neurons) / len(self.neurons)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (tau, layer) with dormant count, width and fraction.

        pandas is imported here, not with the module: the core needs only torch and numpy."""
        import pandas as pd

        rows = [
            {
                "tau": tau,
                "layer": name,
                "dormant": counts[name],
                "neurons": width,
                "fraction": counts[name] / width,
            }
            for tau, counts in self.dormant.items()
            for name, width in self.neurons.items()
        ]
        return pd.DataFrame(rows, columns=["tau", "layer", "dormant", "neurons", "fraction"])

    def _counts(self, tau: float) -> dict[str, int]:
        if tau not in self.dormant:
            raise KeyError(f"tau={tau} was not summarised; taus are {list(self.dormant)}")
        return self.dormant[tau]


def dormant_summary(
    scores: Mapping[str, Tensor], taus: Iterable[float] = PAPER_TAUS
) -> DormantSummary:
    """Count dormant neurons per layer at each threshold in ``taus``."""
    taus = tuple(float(tau) for tau in taus)
    if not taus:
        raise ValueError("taus is empty: give at least one threshold, e.g. (0.0, 0.025, 0.1)")
    if not scores:
        raise ValueError("scores is empty: dormant_scores() found no hidden layer")
    dormant = {
        tau: {name: int(mask.sum()) for name, mask in dormant_masks(scores, tau).items()}
        for tau in taus
    }
    return DormantSummary(neurons={name: s.numel() for name, s in scores.items()}, dormant=dormant)


def _check_batch(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor batch of inputs, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(
            f"the batch is empty (shape {tuple(x.shape)}): scores are averages over inputs, "
            "so pass at least one input (the paper uses 64 states from the replay buffer)"
        )


__all__: Sequence[str] = [
    "PAPER_TAUS",
    "SCORE_EPS",
    "DormantSummary",
    "HiddenLayer",
    "capture_activations",
    "check_tau",
    "dormant_masks",
    "dormant_scores",
    "dormant_summary",
    "neuron_activity",
    "scores_from_activity",
]
