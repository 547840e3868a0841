"""The learning side of a population: K Q-networks as stacked tensors, updated with ``torch.func``.

A small DQN update costs far more in per-operation overhead than in arithmetic (about 2 ms
for the MinAtar CNN on two CPU cores, see DESIGN.md). Stacking the parameters of K networks
of the same shape (``torch.func.stack_module_state``) and mapping one agent's loss over the
agent dimension (``torch.func.vmap`` of ``torch.func.grad_and_value`` of a ``functional_call``)
pays that overhead once per population instead of once per agent.

Everything per agent stays per agent: its parameters, its target network, its Adam moments
and step counts (:func:`redo.core.optim.adam_update_` on the stacked tensors, with the agent's
learning rate broadcast over its slice), its threshold tau and whether it recycles at all.

Step counts are kept per element, as :class:`redo.core.optim.ElementwiseAdam` keeps them, but
stored per agent (shape ``(K, 1, ...)``, broadcast by ``adam_update_``) for as long as all
of an agent's entries share one count, that is until a reset restarts some of them: the
arithmetic is the same, and Adam's bias corrections, kept per entry after a reset, then cost
K numbers per tensor.

Agents may learn on different schedules (replay ratios): ``update`` takes the agents that
are due, and an agent that is not due keeps its parameters and optimizer state exactly, bit
for bit, as if the round had not happened, because its slices are not computed at all (the
due agents' slices are gathered, updated and scattered back).

ReDo runs for all agents at once: one functional forward pass returns every hidden layer's
post-activation output with the agent dimension first, :mod:`redo.core.dormant` scores them,
and the reset is a handful of ``torch.where``/``masked_fill_`` per layer with ``(K, width)``
masks, following :mod:`redo.core.recycle` (new incoming weights from :func:`redo.core.recycle.init_like`,
bias 0, outgoing weights zeroed through :func:`redo.core.recycle.outgoing_mask`, moments and step
counts of exactly those entries cleared). There is no Python loop over agents or neurons.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from redo.agent.config import DQNConfig, LossName
from redo.core.dormant import neuron_activity, scores_from_activity
from redo.agent.dqn import LOSSES
from redo.core.networks import q_network_for
from redo.core.optim import (
    CLOCK_RESTART,
    adam_update_,
    corrections_from_step,
    restart_clock_,
    widen_step,
)
from redo.population.replay import PopulationBatch
from redo.core.recycle import STEP_CHOICES, InitName, StepMode, init_like, outgoing_mask
from redo.core.structure import HiddenLayer, hidden_layers

Params = dict[str, Tensor]
T = TypeVar("T", Tensor, Params)


#: What a gradient step changes: attributes holding one stacked tensor per parameter.
_UPDATED_STATE: tuple[str, ...] = ("params", "exp_avg", "exp_avg_sq", *CLOCK_RESTART)
#: The per-agent state of a checkpoint: the same, and the target network.
_AGENT_STATE: tuple[str, ...] = ("target_params", *_UPDATED_STATE)

#: Inits that :func:`redo.core.recycle.init_like` can draw under ``vmap`` (one draw per agent).
#: ``lecun_normal`` cannot: torch's truncated normal rejects samples in a data-dependent loop.
POPULATION_INITS: tuple[str, ...] = ("default", "xavier_uniform", "kaiming_uniform")


@dataclass(frozen=True)
class UpdateStats:
    """Per-agent results of one update, on the device: ``(K,)``, 0 for agents not updated."""

    loss: Tensor
    q_mean: Tensor


class PopulationLearner:
    """K Q-networks of one shape trained as stacked tensors; see the module docstring.

    Args:
        networks: the agents' initial networks (same architecture, on the training device);
            they are copied, not kept.
        lr, tau, redo: per agent: Adam's learning rate, ReDo's threshold, and whether ReDo
            recycles this agent's neurons.
        gamma, adam_eps, loss: shared; ``loss`` is ``"huber"`` or ``"mse"``.
        redo_init: distribution of recycled incoming weights, one of :data:`POPULATION_INITS`.
        redo_step_mode: Adam's step counts at a reset, as in :mod:`redo.core.recycle`: ``"auto"``
            and ``"elementwise"`` zero those of the reset entries (the population's Adam keeps
            one step per element, like :class:`redo.core.optim.ElementwiseAdam`), ``"keep"`` keeps
            them, ``"zero_all"`` zeroes every step of an agent that recycled any neuron.
        betas: Adam's betas (those of :class:`redo.core.optim.ElementwiseAdam` by default).
        generator: random source of recycled weights, on the training device.
    """

    def __init__(
        self,
        networks: Sequence[nn.Module],
        *,
        lr: Sequence[float],
        tau: Sequence[float],
        redo: Sequence[bool],
        gamma: float,
        adam_eps: float,
        loss: LossName = "huber",
        redo_init: InitName = "default",
        redo_step_mode: StepMode = "auto",
        betas: tuple[float, float] = (0.9, 0.999),
        generator: torch.Generator | None = None,
    ) -> None:
        self.agents = len(networks)
        for name, values in (("lr", lr), ("tau", tau), ("redo", redo)):
            if len(values) != self.agents:
                raise ValueError(f"{name} needs one value per agent ({self.agents}), got {values}")
        if redo_init not in POPULATION_INITS:
            raise ValueError(
                f"redo_init must be one of {list(POPULATION_INITS)} in a population, got "
                f"{redo_init!r}"
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        if redo_step_mode not in STEP_CHOICES:
            raise ValueError(
                f"redo_step_mode must be one of {list(STEP_CHOICES)}, got {redo_step_mode!r}"
            )
        params, buffers = stack_module_state(list(networks))
        self.params: Params = {name: p.detach() for name, p in params.items()}
        self.buffers: Params = dict(buffers)
        self.target_params: Params = {name: p.clone() for name, p in self.params.items()}
        self.exp_avg: Params = {name: torch.zeros_like(p) for name, p in self.params.items()}
        self.exp_avg_sq: Params = {name: torch.zeros_like(p) for name, p in self.params.items()}
        #: Adam's denominators when every agent updates (see :func:`redo.core.optim.adam_update_`)
        self._scratch: Params = {name: torch.empty_like(p) for name, p in self.params.items()}
        #: Adam's clock: step counts and the bias corrections 1 - beta ** step (see
        #: :mod:`redo.core.optim`), shaped (K, 1, ...) until a reset makes them differ within an agent
        self.step, self.bias_correction1, self.bias_correction2 = (
            {
                name: p.new_full((self.agents,) + (1,) * (p.dim() - 1), value)
                for name, p in self.params.items()
            }
            for value in CLOCK_RESTART.values()
        )
        self.device = next(iter(self.params.values())).device
        self.lr = torch.tensor(lr, dtype=torch.float32, device=self.device)
        #: the learning rate as a Python number when all agents share it: Adam then scales
        #: by it inside its last operation instead of in one more pass over every tensor
        self._shared_lr = float(lr[0]) if len(set(lr)) == 1 else None
        self.tau = torch.tensor(tau, dtype=torch.float32, device=self.device)
        self.redo = torch.tensor(redo, dtype=torch.bool, device=self.device)
        self.gamma, self.adam_eps, self.betas = gamma, adam_eps, betas
        self.redo_init: InitName = redo_init
        self.redo_step_mode: StepMode = redo_step_mode
        self.generator = generator
        self._loss_fn = LOSSES[loss]
        # The template only describes the architecture: its own weights live on "meta".
        self._template = copy.deepcopy(networks[0]).to("meta")
        self.layers: list[HiddenLayer] = hidden_layers(self._template)
        #: each hidden layer's next layer's weight, whose columns it feeds
        self._next_weight = {
            layer.name: _weight_name(self._template, layer.next_layer) for layer in self.layers
        }
        self._grad = vmap(grad_and_value(self._agent_loss, has_aux=True))

    @classmethod
    def from_configs(
        cls,
        configs: Sequence[DQNConfig],
        observation_shape: Sequence[int],
        n_actions: int,
        device: str | torch.device,
        generator: torch.Generator | None = None,
    ) -> PopulationLearner:
        """Build each agent's network as :func:`redo.agent.dqn.train` does (``torch.manual_seed``
        with the agent's seed, then :func:`redo.core.networks.q_network_for`), so that agent i
        starts from the very parameters of a single run with the same seed."""
        networks = []
        for config in configs:
            torch.manual_seed(config.seed)
            networks.append(q_network_for(observation_shape, n_actions).to(device))
        first = configs[0]
        return cls(
            networks,
            lr=[c.lr for c in configs],
            tau=[c.tau for c in configs],
            redo=[c.redo for c in configs],
            gamma=first.gamma,
            adam_eps=first.adam_eps,
            loss=first.loss,
            redo_init=first.redo_init,
            redo_step_mode=first.redo_step_mode,
            generator=generator,
        )

    # --- acting and learning ----------------------------------------------------------------

    @torch.no_grad()
    def q_values(self, obs: Tensor, target: bool = False) -> Tensor:
        """``(K, n, actions)`` Q-values of the online (or target) networks for ``(K, n, ...)``."""
        params = self.target_params if target else self.params
        return vmap(self._q)(params, self.buffers, obs)

    def greedy_actions(self, obs: Tensor) -> Tensor:
        """``(K,)`` greedy actions for one observation per agent, ``(K, ...)``."""
        return self.q_values(obs.unsqueeze(1)).squeeze(1).argmax(dim=-1)

    def update(
        self, batch: PopulationBatch, due: Sequence[bool] | np.ndarray | None = None
    ) -> UpdateStats:
        """One gradient step on the one-step TD error for every agent in ``due`` (all if None).

        The agents' minibatches are the rows of ``batch``; the rows of agents not due are
        ignored. Their parameters, moments and step counts are left exactly as they were.
        """
        index = self._due_index(due)
        if index is not None and index.numel() == 0:
            zeros = torch.zeros(self.agents, device=self.device)
            return UpdateStats(loss=zeros, q_mean=zeros.clone())
        select = functools.partial(_select, index=index)
        with torch.no_grad():
            next_q = vmap(self._q)(
                select(self.target_params), select(self.buffers), select(batch.next_observations)
            )
            not_done = 1.0 - select(batch.terminated).to(torch.float32)
            td_target = select(batch.rewards) + self.gamma * not_done * next_q.max(dim=-1).values
        stored = tuple(getattr(self, key) for key in _UPDATED_STATE)
        selected = tuple(select(tensors) for tensors in stored)
        params, exp_avg, exp_avg_sq, step, correction1, correction2 = selected
        grads, (loss, q_mean) = self._grad(
            params,
            select(self.buffers),
            select(batch.observations),
            select(batch.actions),
            td_target,
        )
        lr = self._shared_lr if self._shared_lr is not None else select(self.lr)
        with torch.no_grad():
            for name, param in params.items():
                adam_update_(
                    param,
                    grads[name],
                    exp_avg[name],
                    exp_avg_sq[name],
                    step[name],
                    lr=lr if isinstance(lr, float) else lr.view(-1, *[1] * (param.dim() - 1)),
                    beta1=self.betas[0],
                    beta2=self.betas[1],
                    eps=self.adam_eps,
                    corrections=(correction1[name], correction2[name]),
                    scratch=self._scratch[name] if index is None else None,
                )
            if index is None:  # the stored tensors were updated in place
                return UpdateStats(loss=loss, q_mean=q_mean)
            for full, part in zip(stored, selected, strict=True):
                for name, tensor in part.items():
                    full[name].index_copy_(0, index, tensor)
            return UpdateStats(
                loss=torch.zeros(self.agents, device=self.device).index_copy_(0, index, loss),
                q_mean=torch.zeros(self.agents, device=self.device).index_copy_(0, index, q_mean),
            )

    @torch.no_grad()
    def sync_target(self) -> None:
        """Copy every agent's online parameters into its target network."""
        for name, param in self.params.items():
            self.target_params[name].copy_(param)

    # --- dormant neurons and ReDo -----------------------------------------------------------

    @torch.no_grad()
    def scores(self, obs: Tensor) -> dict[str, Tensor]:
        """``{hidden layer name: (K, width) scores}`` on ``(K, n, ...)`` states, agent k's
        network scored on ``obs[k]`` as :func:`redo.core.dormant.dormant_scores` scores one."""
        activations = vmap(self._hidden_outputs)(self.params, self.buffers, obs)
        return {
            layer.name: scores_from_activity(neuron_activity(h, layer.is_conv))
            for layer, h in zip(self.layers, activations, strict=True)
        }

    def dormant_masks(
        self, scores: Mapping[str, Tensor], agents: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``(K, width)`` masks of the neurons ReDo recycles: ``score <= tau`` of the agent,
        for agents that recycle (``redo``) and are in ``agents`` (a ``(K,)`` bool tensor)."""
        active = self.redo if agents is None else self.redo & agents.to(self.device)
        return {
            name: (score <= self.tau.unsqueeze(1)) & active.unsqueeze(1)
            for name, score in scores.items()
        }

    def recycle(self, obs: Tensor, agents: Tensor | None = None) -> Tensor:
        """ReDo for the agents in ``agents`` (all if None) that recycle: score on ``obs``
        ``(K, n, ...)`` and reset the dormant neurons. Returns ``(K,)`` recycled counts."""
        masks = self.dormant_masks(self.scores(obs), agents)
        self.reset(masks)
        return torch.stack([mask.sum(dim=1) for mask in masks.values()]).sum(dim=0)

    @torch.no_grad()
    def reset(self, masks: Mapping[str, Tensor]) -> None:
        """Recycle the neurons in ``masks`` (``{layer name: (K, width) bool}``), in place.

        Incoming weights are redrawn for every agent at once (so an agent's new weights do
        not depend on which other agents recycle) and kept only where the mask says so.
        """
        recycled_any = torch.zeros(self.agents, dtype=torch.bool, device=self.device)
        draw = vmap(
            functools.partial(init_like, init=self.redo_init, generator=self.generator),
            randomness="different",
        )
        for layer in self.layers:
            mask = masks[layer.name]
            weight = self.params[f"{layer.name}.weight"]
            rows = _broadcast_rows(mask, weight)
            weight.copy_(torch.where(rows, draw(weight), weight))
            entries = {f"{layer.name}.weight": rows}
            bias_name = f"{layer.name}.bias"
            if bias_name in self.params:
                self.params[bias_name].masked_fill_(mask, 0.0)
                entries[bias_name] = mask
            next_name = self._next_weight[layer.name]
            columns = vmap(functools.partial(outgoing_mask, layer))(mask)
            self.params[next_name].masked_fill_(columns, 0.0)
            entries[next_name] = columns
            for name, entry_mask in entries.items():
                self._clear_adam(name, entry_mask)
            recycled_any |= mask.any(dim=1)
        if self.redo_step_mode == "zero_all":
            for key, value in CLOCK_RESTART.items():
                for clock in getattr(self, key).values():
                    clock.masked_fill_(_broadcast_rows(recycled_any, clock), value)

    # --- checkpoints ------------------------------------------------------------------------

    def agent_state_dict(self, agent: int) -> dict[str, Params]:
        """Agent ``agent``'s parameters, target parameters and Adam state, as CPU copies (a
        saved view would carry the whole population's storage). Step counts keep the shape
        of the agent's slice: compact ``(1, ...)`` until a reset widened them."""
        return {
            key: {name: t[agent].to("cpu", copy=True) for name, t in getattr(self, key).items()}
            for key in _AGENT_STATE
        }

    @torch.no_grad()
    def load_agent_state_dict(self, agent: int, state: Mapping[str, Params]) -> None:
        """Write an :meth:`agent_state_dict` into agent ``agent``'s slices. Widened step
        counts widen the population's, as the reset that widened them did, so a population
        restored from its agents' checkpoints has the shapes (and so the arithmetic) it had.
        A state saved before Adam's bias corrections were kept gets them from its counts."""
        if "bias_correction1" not in state:
            derived = {n: corrections_from_step(t, *self.betas) for n, t in state["step"].items()}
            keys = ("bias_correction1", "bias_correction2")
            state = {**state, **{key: {n: d[key] for n, d in derived.items()} for key in keys}}
        for key in _AGENT_STATE:
            stored = getattr(self, key)
            for name, tensor in state[key].items():
                if tensor.shape != stored[name].shape[1:]:
                    stored[name] = widen_step(stored[name], self.params[name].shape)
                stored[name][agent].copy_(tensor)

    # --- inspection -------------------------------------------------------------------------

    def network(self, agent: int, target: bool = False) -> nn.Module:
        """Agent ``agent``'s online (or target) network as an ordinary module (a copy), e.g.
        to compare it with a single-agent run or to use :mod:`redo.core.dormant` on it."""
        params = self.target_params if target else self.params
        module = copy.deepcopy(self._template).to_empty(device=self.device)
        module.load_state_dict({name: t[agent] for name, t in (params | self.buffers).items()})
        return module

    # --- functional pieces ------------------------------------------------------------------

    def _q(self, params: Params, buffers: Params, obs: Tensor) -> Tensor:
        return functional_call(self._template, (params, buffers), (obs,))

    def _agent_loss(
        self, params: Params, buffers: Params, obs: Tensor, actions: Tensor, td_target: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One agent's TD loss (as :func:`redo.agent.dqn.td_update`) and, as aux, its mean Q."""
        q_taken = self._q(params, buffers, obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        return self._loss_fn(q_taken, td_target), q_taken.detach().mean()

    def _hidden_outputs(self, params: Params, buffers: Params, obs: Tensor) -> tuple[Tensor, ...]:
        """One agent's hidden post-activation outputs, in forward order.

        Forward hooks on the template's activation modules catch them during a
        ``functional_call``; they are returned, not stored, so they leave ``vmap`` batched.
        """
        captured: dict[str, Tensor] = {}

        def recorder(name: str):
            def hook(_module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
                captured[name] = output.clone()  # an in-place module may overwrite it later

            return hook

        handles = [
            layer.activation.register_forward_hook(recorder(layer.name)) for layer in self.layers
        ]
        try:
            self._q(params, buffers, obs)
        finally:
            for handle in handles:
                handle.remove()
        return tuple(captured[layer.name] for layer in self.layers)

    def _due_index(self, due: Sequence[bool] | np.ndarray | None) -> Tensor | None:
        """Indices of the due agents, or None when all are due (no gathering needed)."""
        if due is None:
            return None
        due = np.asarray(due, dtype=bool)
        if due.shape != (self.agents,):
            raise ValueError(f"due must hold one bool per agent ({self.agents}), got {due}")
        if due.all():
            return None
        return torch.as_tensor(np.flatnonzero(due), device=self.device)

    def _clear_adam(self, name: str, entries: Tensor) -> None:
        self.exp_avg[name].masked_fill_(entries, 0.0)
        self.exp_avg_sq[name].masked_fill_(entries, 0.0)
        if self.redo_step_mode in ("auto", "elementwise"):
            clock = {key: getattr(self, key)[name] for key in CLOCK_RESTART}
            restart_clock_(clock, entries)
            for key, tensor in clock.items():
                getattr(self, key)[name] = tensor


def _select(tensors: T, index: Tensor | None) -> T:
    """The rows (agents) ``index`` of a tensor or of each tensor in a dict; all if None."""
    if index is None:
        return tensors
    if isinstance(tensors, Tensor):
        return tensors.index_select(0, index)
    return {name: t.index_select(0, index) for name, t in tensors.items()}


def _broadcast_rows(mask: Tensor, like: Tensor) -> Tensor:
    """A ``(K, width)`` or ``(K,)`` mask expanded over the trailing dimensions of ``like``."""
    return mask.view(*mask.shape, *[1] * (like.dim() - mask.dim())).expand_as(like)


def _weight_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer``'s weight in ``model``."""
    return next(f"{name}.weight" for name, module in model.named_modules() if module is layer)


__all__ = ["POPULATION_INITS", "PopulationLearner", "UpdateStats"]
