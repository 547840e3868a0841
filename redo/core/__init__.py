"""The science of the book, on any ``nn.Sequential`` of Linear/Conv2d layers: torch only.

* :mod:`redo.core.structure`: each hidden layer, its activation and the layer it feeds;
* :mod:`redo.core.dormant`: the tau-dormant score, masks and summaries, in one forward pass;
* :mod:`redo.core.recycle`: the ReDo reset (the paper's by default) and its variants;
* :mod:`redo.core.optim`: Adam with one step count per weight, the book's variant;
* :mod:`redo.core.networks`: the Nature CNN, the MinAtar CNN and an MLP.
"""

from redo.core.dormant import PAPER_TAUS, dormant_masks, dormant_scores, dormant_summary
from redo.core.networks import minatar_cnn, mlp, nature_cnn, q_network_for
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import recycle_dormant, reset_neurons, select_neurons
from redo.core.structure import hidden_layers

__all__ = [
    "PAPER_TAUS",
    "ElementwiseAdam",
    "dormant_masks",
    "dormant_scores",
    "dormant_summary",
    "hidden_layers",
    "minatar_cnn",
    "mlp",
    "nature_cnn",
    "q_network_for",
    "recycle_dormant",
    "reset_neurons",
    "select_neurons",
]
