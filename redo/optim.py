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

**Cost.** Until the first reset every entry of a tensor has the same count, so ``step`` is
stored compactly, shaped ``(1, ..., 1)``, and broadcasts: the update then costs what torch's
own single-tensor Adam costs. The reset widens it to the parameter's shape
(:func:`widen_step`), and with it the two powers that the state also keeps,
``beta1_power`` and ``beta2_power`` (``beta ** t`` per entry): each update multiplies them by
beta instead of recomputing them from the counts, which would cost two ``exp`` per entry per
update (2 x 200 us for a 128 x 1600 tensor on one CPU thread, against ~20 us per multiply).
They are state, not a cache, so a checkpoint holds them and a resumed run computes exactly
what an uninterrupted one does; a reset restarts them with the count
(:func:`restart_clock_`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableMapping
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
    powers: tuple[Tensor, Tensor] | None = None,
) -> None:
    """One Adam update in place, with ``step`` a tensor broadcastable to ``param``.

    The arithmetic follows ``torch.optim.Adam`` (single-tensor path) term by term so that a
    per-element step equal everywhere gives the same result. Shapes are free: the same call
    updates one network or a stacked population (``lr`` may then broadcast per agent).
    ``powers``, if given, are ``(beta1 ** step, beta2 ** step)`` shaped like ``step``: they are
    advanced in place by one multiply each instead of being recomputed from ``step``.
    """
    step.add_(1)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if powers is not None and _one_count_on_cpu(step, lr):
        _scalar_corrections(param, exp_avg, exp_avg_sq, step, powers, lr, beta1, beta2, eps)
        return
    if powers is None:
        power1, power2 = _power(beta1, step), _power(beta2, step)
    else:
        power1, power2 = powers
        power1.mul_(beta1).clamp_min_(_TINY_POWER)
        power2.mul_(beta2).clamp_min_(_TINY_POWER)
    bias_correction1 = 1 - power1
    bias_correction2_sqrt = (1 - power2).sqrt()
    step_size = lr / bias_correction1
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg * step_size, denom, value=-1)


def _one_count_on_cpu(step: Tensor, lr: float | Tensor) -> bool:
    """Whether the bias corrections are single numbers that Python can compute for free."""
    return step.numel() == 1 and step.device.type == "cpu" and not isinstance(lr, Tensor)


def _scalar_corrections(
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    powers: tuple[Tensor, Tensor],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """The end of :func:`adam_update_` while every entry has the same count, on a CPU: the
    bias corrections as Python numbers, as ``torch.optim.Adam`` computes them there. Each
    tensor operation on a one-element tensor costs a few microseconds of overhead, and an
    update of a small network is mostly such overhead. The powers are set from the count,
    so the state is what the tensor path would hold, to float precision."""
    count = step.item()
    power1, power2 = beta1**count, beta2**count
    powers[0].fill_(max(power1, _TINY_POWER))
    powers[1].fill_(max(power2, _TINY_POWER))
    denom = exp_avg_sq.sqrt().div_(math.sqrt(1 - power2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / (1 - power1))


#: Below this, ``1 - beta ** t`` is 1 in float32: kept powers stop shrinking here, so that
#: they never become denormal numbers, whose arithmetic is ~100x slower on a CPU.
_TINY_POWER = 1e-30

#: Adam's per-entry clock: the step count and ``beta1 ** step``, ``beta2 ** step``, with the
#: value each takes when an entry restarts.
CLOCK_RESTART: dict[str, float] = {"step": 0.0, "beta1_power": 1.0, "beta2_power": 1.0}


def restart_clock_(state: MutableMapping[str, Tensor], entries: Tensor) -> None:
    """Restart the clock of ``entries``: widen each clock tensor of ``state`` to the entries'
    shape (:func:`widen_step`) and set step 0 and the powers 1 there."""
    for key, value in CLOCK_RESTART.items():
        if key in state:
            state[key] = widen_step(state[key], entries.shape)
            state[key].masked_fill_(entries, value)


def _power(base: float, exponent: Tensor) -> Tensor:
    """``base ** exponent`` for ``0 <= base < 1``, through one multiply and one ``exp``."""
    if base == 0:  # log(0) is -inf and 0 * -inf is nan: 0 ** t is 1 at t = 0, else 0
        return (exponent == 0).to(exponent.dtype)
    return torch.exp(exponent * math.log(base))


def compact_step(param: Tensor) -> Tensor:
    """A zero step count shaped ``(1, ..., 1)``: one count that broadcasts over ``param``."""
    return torch.zeros((1,) * param.dim(), dtype=param.dtype, device=param.device)


def widen_step(step: Tensor, shape: torch.Size) -> Tensor:
    """``step`` with one count per entry of ``shape``, copied out of a compact count if needed.

    Called before a reset zeroes some entries' counts, the moment they stop being equal."""
    if step.shape == shape:
        return step
    return step.expand(shape).clone()


class ElementwiseAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba) whose state ``step`` is a float tensor that broadcasts to the parameter.

    ``step`` is compact (``(1, ..., 1)``) until a reset widens it to the parameter's shape.
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
                    state["step"] = compact_step(param)
                    state["beta1_power"] = torch.ones_like(state["step"])
                    state["beta2_power"] = torch.ones_like(state["step"])
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
                    powers=_powers(state, beta1, beta2),
                )
        return loss


def _powers(state: dict[str, Tensor], beta1: float, beta2: float) -> tuple[Tensor, Tensor]:
    """The state's kept powers, computed from ``step`` once for a state saved without them."""
    if "beta1_power" not in state:
        state["beta1_power"] = _power(beta1, state["step"])
        state["beta2_power"] = _power(beta2, state["step"])
    return state["beta1_power"], state["beta2_power"]


def has_elementwise_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps one step count per element (and so can reset it per entry)."""
    return isinstance(optimizer, ElementwiseAdam)
