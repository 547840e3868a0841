"""Adam with one step count per element, so that recycled weights restart their bias correction.

Adam divides its moment estimates by ``1 - beta**t`` to undo their zero initialisation. When
ReDo zeroes the moments of a recycled neuron's weights, those entries start again from zero,
but ``torch.optim.Adam`` keeps a single ``t`` per tensor: the fresh entries get the bias
correction of an old tensor (about 1). Their second moment starts far smaller than their
first (``1 - beta2`` against ``1 - beta1``), so for a steady gradient their updates are
``(1 - beta1**k) / sqrt(1 - beta2**k)`` times Adam's normal step after k steps: 3.2x at the
first, about 6.5x around the tenth, still 1.3x after a thousand. Zeroing that shared ``t``
instead (as the PyTorch seed repository does) restarts the correction of every *other* entry
too, whose moments are not fresh: their updates shrink to ``sqrt(1 - beta2**k) / (1 - beta1**k)``
of normal, as low as 0.15x, and recover only after thousands of steps.

Keeping ``t`` per element solves both: :class:`ElementwiseAdam` stores ``step`` with the shape
of the parameter, and the reset in :mod:`redo.recycle` zeroes exactly the recycled entries.
Without resets it computes what ``torch.optim.Adam`` computes (tested to float tolerance).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


def adam_update_(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One Adam update in place, with ``step`` a tensor broadcastable to ``param``.

    The arithmetic follows ``torch.optim.Adam`` (single-tensor path) term by term so that a
    per-element step equal everywhere gives the same result. Shapes are free: the same call
    updates one network or a stacked population (``lr`` may then broadcast per agent).
    """
    step.add_(1)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - torch.pow(beta1, step)
    bias_correction2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
    step_size = lr / bias_correction1
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg * step_size, denom, value=-1)


class ElementwiseAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) whose state ``step`` is a float tensor shaped like the parameter.

    Supports L2 ``weight_decay`` added to the gradient, as ``torch.optim.Adam`` does; no AMSGrad.
    The state keys are torch's (``step``, ``exp_avg``, ``exp_avg_sq``), so code that resets
    moments works on either optimizer; only the shape of ``step`` differs.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                adam_update_(
                    param,
                    grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    state["step"],
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                )
        return loss


def has_elementwise_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps one step count per element (and so can reset it per entry)."""
    return isinstance(optimizer, ElementwiseAdam)
