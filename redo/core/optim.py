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

The paper's ReDo keeps the single count (``step_mode="keep"`` in :mod:`redo.core.recycle`,
the package's default); the book's variant keeps ``t`` per element, which solves both: :class:`ElementwiseAdam` stores ``step`` with the shape
of the parameter, and the reset in :mod:`redo.core.recycle` zeroes exactly the recycled entries.
Without resets it computes what ``torch.optim.Adam`` computes (tested to float tolerance).

**Cost.** Until the first reset every entry of a tensor has the same count, so ``step`` is
stored compactly, shaped ``(1, ..., 1)``, and broadcasts: the update then costs what torch's
own single-tensor Adam costs. The reset widens it to the parameter's shape
(:func:`widen_step`), and with it the two bias corrections that the state also keeps,
``bias_correction1`` and ``bias_correction2`` (``1 - beta ** t`` per entry). Each update
advances them with one ``lerp`` each, since ``1 - beta ** (t + 1)`` is ``c + (1 - beta)(1 - c)``
for ``c = 1 - beta ** t``, instead of recomputing ``beta ** t`` from the counts (two ``exp``
per entry per update). They converge to 1, so they never become denormal numbers (whose
arithmetic is slow on a CPU), as kept powers ``beta ** t`` would. The update then folds both corrections, ``eps`` and the
learning rate into one denominator: after a reset an update makes 11 element-wise passes over
a tensor, against 7 before it. The corrections are state, not a cache, so a checkpoint holds
them and a resumed run computes exactly what an uninterrupted one does; a reset restarts them
with the count (:func:`restart_clock_`).
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
    corrections: tuple[Tensor, Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    scratch: Tensor | None = None,
) -> None:
    """One Adam update in place, with ``step`` a tensor broadcastable to ``param``.

    The arithmetic is ``torch.optim.Adam``'s (single-tensor path): equal to float tolerance,
    term by term while every entry has one count on the CPU. Shapes are free: the same call
    updates one network or a stacked population (``lr`` may then broadcast per agent).
    ``corrections`` are the bias corrections ``(1 - beta1 ** step, 1 - beta2 ** step)``
    shaped like ``step``, advanced in place. ``scratch``, a tensor shaped like ``param``,
    receives the denominator, so that an update allocates nothing.
    """
    step.add_(1)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if _one_count_on_cpu(step, lr):
        _scalar_corrections(
            param, exp_avg, exp_avg_sq, step, corrections, lr, beta1, beta2, eps, scratch
        )
        return
    correction1, correction2 = corrections
    one = correction1.new_ones(())
    correction1.lerp_(one, 1 - beta1)
    correction2.lerp_(one, 1 - beta2)
    # lr * (m / c1) / (sqrt(v / c2) + eps), with one denominator: (sqrt(v / c2) + eps) * c1 / lr
    denom = torch.div(exp_avg_sq, correction2, out=scratch).sqrt_().add_(eps).mul_(correction1)
    if isinstance(lr, Tensor):
        param.addcdiv_(exp_avg, denom.div_(lr), value=-1)
    else:
        param.addcdiv_(exp_avg, denom, value=-lr)


def _one_count_on_cpu(step: Tensor, lr: float | Tensor) -> bool:
    """Whether the bias corrections are single numbers that Python can compute for free."""
    return step.numel() == 1 and step.device.type == "cpu" and not isinstance(lr, Tensor)


def _scalar_corrections(
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    corrections: tuple[Tensor, Tensor],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    scratch: Tensor | None,
) -> None:
    """The end of :func:`adam_update_` while every entry has the same count, on a CPU: the
    bias corrections as Python numbers, as ``torch.optim.Adam`` computes them there. Each
    tensor operation on a one-element tensor costs a few microseconds of overhead, and an
    update of a small network is mostly such overhead. The kept corrections are set from the
    count, so the state is what the tensor path would hold, to float precision."""
    count = step.item()
    correction1, correction2 = 1 - beta1**count, 1 - beta2**count
    corrections[0].fill_(correction1)
    corrections[1].fill_(correction2)
    denom = torch.sqrt(exp_avg_sq, out=scratch).div_(math.sqrt(correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / correction1)


#: Adam's per-entry clock: the step count and the bias corrections ``1 - beta1 ** step``,
#: ``1 - beta2 ** step``, with the value each takes when an entry restarts.
CLOCK_RESTART: dict[str, float] = {"step": 0.0, "bias_correction1": 0.0, "bias_correction2": 0.0}


def restart_clock_(state: MutableMapping[str, Tensor], entries: Tensor) -> None:
    """Restart the clock of ``entries``: widen each clock tensor of ``state`` to the entries'
    shape (:func:`widen_step`) and set step and bias corrections to 0 there."""
    for key, value in CLOCK_RESTART.items():
        if key in state:
            state[key] = widen_step(state[key], entries.shape)
            state[key].masked_fill_(entries, value)


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
        #: one buffer per parameter for Adam's denominator (see :func:`adam_update_`): not
        #: state, since it holds nothing between steps
        self._scratch: dict[Tensor, Tensor] = {}

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
                    state["bias_correction1"] = torch.zeros_like(state["step"])
                    state["bias_correction2"] = torch.zeros_like(state["step"])
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
                    (state["bias_correction1"], state["bias_correction2"]),
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    scratch=self._scratch_for(param),
                )
        return loss

    def _scratch_for(self, param: Tensor) -> Tensor:
        if param not in self._scratch:
            self._scratch[param] = torch.empty_like(param, memory_format=torch.preserve_format)
        return self._scratch[param]
