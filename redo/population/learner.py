"""The learning side of a population: K Q-networks as stacked tensors, one update for all.

A small DQN update costs far more in per-operation overhead than in arithmetic. Stacking the
parameters of K networks of the same shape and computing every agent's update in one pass
(:mod:`redo.population.networks`) pays that overhead once per population instead of once per
agent.

**Storage.** Every kind of per-parameter state (the parameters, the target network's, Adam's
two moments, the gradients) lives in one flat buffer (:class:`FlatState`), with a
``(K, *shape)`` view per named parameter. Adam's clock (the step count) is one number for
the whole population, since every agent makes every update. While it is, and the agents share
a learning rate (the paper's ReDo keeps the step count), the update is the kernel of torch's
fused Adam (``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` calls), given one
tensor per agent and parameter: one pass over the buffers, and an agent's arithmetic that does
not depend on the population's size (over whole flat buffers, the kernel's vectorised tail
would make the last bits of an agent's update depend on K). A reset with
``step_mode="elementwise"`` or ``"zero_all"`` needs the clock per entry: it is then widened to
flat buffers of its own (the counts and their bias corrections) and the update becomes
:func:`redo.core.optim.adam_update_` over each flat buffer, the arithmetic of
:class:`redo.core.optim.ElementwiseAdam`.

Everything per agent stays per agent: its parameters, its target network, its Adam moments,
its learning rate. ReDo is per agent too: :meth:`PopulationLearner.scores` scores any agents
at once, and :meth:`PopulationLearner.reset` recycles one agent's neurons with the very code
that recycles a single network (:func:`redo.core.recycle.reset_tensors` on the agent's views),
drawing from that agent's own generator.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from redo.agent.config import DQNConfig
from redo.agent.streams import seeded_q_network
from redo.agent.td import td_target
from redo.core.dormant import neuron_activity, scores_from_activity
from redo.core.optim import CLOCK_RESTART, adam_update_
from redo.core.recycle import (
    BiasMode,
    InitName,
    LayerTensors,
    StepMode,
    clear_moments,
    reinitialise_tensors,
    reset_tensors,
)
from redo.core.structure import hidden_layers, weight_layers
from redo.population.networks import StackedNetwork, stacked_network
from redo.population.replay import PopulationBatch

#: The kinds of per-parameter state, each one :class:`FlatState`.
STATE_KINDS: tuple[str, ...] = ("params", "target_params", "exp_avg", "exp_avg_sq")


class FlatState:
    """Stacked tensors ``(K, *shape)`` for every named parameter, views into one flat buffer."""

    def __init__(self, shapes: Mapping[str, torch.Size], agents: int, device: torch.device) -> None:
        sizes = {name: agents * math.prod(shape) for name, shape in shapes.items()}
        self.data = torch.zeros(sum(sizes.values()), device=device)
        self.views: dict[str, Tensor] = {}
        start = 0
        for name, shape in shapes.items():
            self.views[name] = self.data[start : start + sizes[name]].view(agents, *shape)
            start += sizes[name]

    def agent(self, agent: int) -> dict[str, Tensor]:
        """Agent ``agent``'s tensors (views: writing them writes the population)."""
        return {name: view[agent] for name, view in self.views.items()}


@dataclass(frozen=True)
class UpdateStats:
    """Per-agent results of one update, on the device: ``(K,)``."""

    loss: Tensor
    q_mean: Tensor


class PopulationLearner:
    """K Q-networks of one shape trained as stacked tensors; see the module docstring.

    Args:
        networks: the agents' initial networks (same architecture, on the training device);
            their parameters are copied, not kept.
        lr: Adam's learning rate, per agent.
        gamma, adam_eps, loss: shared; ``loss`` is ``"huber"`` or ``"mse"``.
        betas: Adam's betas (those of :class:`redo.core.optim.ElementwiseAdam` by default).
        batched: use the fast batched networks where they apply (False: always ``vmap``).
        observation_shape: one observation's shape, so that convolutions too large for the
            batched path go through ``vmap`` (:func:`redo.population.networks.stacked_network`).
    """

    def __init__(
        self,
        networks: Sequence[nn.Module],
        *,
        lr: Sequence[float],
        gamma: float,
        adam_eps: float,
        loss: str = "huber",
        betas: tuple[float, float] = (0.9, 0.999),
        batched: bool = True,
        observation_shape: Sequence[int] | None = None,
    ) -> None:
        self.agents = len(networks)
        if len(lr) != self.agents:
            raise ValueError(f"lr needs one value per agent ({self.agents}), got {lr}")
        first = networks[0]
        self.device = next(first.parameters()).device
        shapes = {name: p.shape for name, p in first.named_parameters()}
        self.state = {kind: FlatState(shapes, self.agents, self.device) for kind in STATE_KINDS}
        self.grads = FlatState(shapes, self.agents, self.device)
        self._scratch = torch.empty_like(self.grads.data)
        with torch.no_grad():
            for name, view in self.params.items():
                view.copy_(torch.stack([dict(n.named_parameters())[name] for n in networks]))
        self.state["target_params"].data.copy_(self.state["params"].data)
        #: Adam's clock as :func:`adam_update_` reads it: one number while every entry
        #: shares it, else the data of the flat buffers in :attr:`_entry_clock`
        self.clock: dict[str, Tensor] = {
            key: torch.tensor(value, device=self.device) for key, value in CLOCK_RESTART.items()
        }
        self._entry_clock: dict[str, FlatState] | None = None
        self.gamma, self.adam_eps, self.betas = gamma, adam_eps, betas
        self._lr: float | Tensor = float(lr[0])
        self._fused: dict[str, list[Tensor]] | None = None
        if len(set(lr)) > 1:  # one learning rate per entry
            lrs = FlatState(shapes, self.agents, self.device)
            for agent, value in enumerate(lr):
                for view in lrs.agent(agent).values():
                    view.fill_(value)
            self._lr = lrs.data
        else:
            self._fused = self._fused_adam()
        self._template = copy.deepcopy(first).to("meta")
        self.layers = hidden_layers(self._template)
        self._weight_names = [
            _param_prefix(self._template, m) for m in weight_layers(self._template)
        ]
        self.network: StackedNetwork = stacked_network(
            self._template, loss, batched, observation_shape
        )

    @classmethod
    def for_configs(
        cls,
        configs: Sequence[DQNConfig],
        observation_shape: Sequence[int],
        n_actions: int,
        device: str | torch.device,
    ) -> PopulationLearner:
        """The learner of a population with these configs: agent i starts from the very
        network a single run with its seed starts from (:func:`seeded_q_network`)."""
        first = configs[0]
        return cls(
            [seeded_q_network(observation_shape, n_actions, c.seed, device) for c in configs],
            lr=[c.lr for c in configs],
            gamma=first.gamma,
            adam_eps=first.adam_eps,
            loss=first.loss,
            observation_shape=observation_shape,
        )

    @property
    def params(self) -> dict[str, Tensor]:
        """The online networks' parameters, ``(K, *shape)`` each."""
        return self.state["params"].views

    @property
    def target_params(self) -> dict[str, Tensor]:
        return self.state["target_params"].views

    # --- acting and learning ----------------------------------------------------------------

    @torch.no_grad()
    def q_values(self, obs: Tensor, target: bool = False) -> Tensor:
        """``(K, n, actions)`` Q-values of the online (or target) networks for ``(K, n, ...)``."""
        return self.network.q_values(self.target_params if target else self.params, obs)

    def greedy_actions(self, obs: Tensor) -> Tensor:
        """``(K,)`` greedy actions for one observation per agent, ``(K, ...)``."""
        return self.q_values(obs.unsqueeze(1)).squeeze(1).argmax(dim=-1)

    @torch.no_grad()
    def update(self, batch: PopulationBatch) -> UpdateStats:
        """One gradient step on the one-step TD error for every agent, agent k on row k of
        ``batch`` (as :func:`redo.agent.td.td_update` makes one for one agent)."""
        next_q = self.network.q_values(self.target_params, batch.next_observations)
        target = td_target(batch.rewards, batch.terminated, next_q, self.gamma)
        loss, q_mean = self.network.loss_gradients(
            self.params, batch.observations, batch.actions, target, self.grads.views
        )
        state = self.state
        if self._fused is not None:
            self._fused_step()
            return UpdateStats(loss=loss, q_mean=q_mean)
        adam_update_(
            state["params"].data,
            self.grads.data,
            state["exp_avg"].data,
            state["exp_avg_sq"].data,
            self.clock["step"],
            (self.clock["bias_correction1"], self.clock["bias_correction2"]),
            lr=self._lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            eps=self.adam_eps,
            scratch=self._scratch,
        )
        return UpdateStats(loss=loss, q_mean=q_mean)

    @torch.no_grad()
    def sync_target(self) -> None:
        """Copy every agent's online parameters into its target network."""
        self.state["target_params"].data.copy_(self.state["params"].data)

    # --- dormant neurons and ReDo -----------------------------------------------------------

    @torch.no_grad()
    def scores(self, obs: Tensor, agents: Sequence[int]) -> dict[str, Tensor]:
        """``{hidden layer name: (len(agents), width) scores}`` of the listed agents, agent
        ``agents[j]``'s network scored on ``obs[j]`` as
        :func:`redo.core.dormant.dormant_scores` scores one network."""
        index = torch.as_tensor(list(agents), device=self.device)
        params = {name: view.index_select(0, index) for name, view in self.params.items()}
        hidden = self.network.hidden(params, obs)
        return {
            layer.name: scores_from_activity(neuron_activity(h, layer.is_conv))
            for layer, h in zip(self.layers, hidden, strict=True)
        }

    def gradient_scores(self, batch: PopulationBatch, agents: Sequence[int]) -> dict[str, Tensor]:
        """``{hidden layer name: (len(agents), width)}`` gradient-magnitude (GraMa) scores of
        the listed agents on the transitions of ``batch`` (row j for ``agents[j]``), as
        :func:`redo.core.gradient.gradient_scores` scores one network on its TD loss."""
        index = torch.as_tensor(list(agents), device=self.device)
        params = {name: view.index_select(0, index) for name, view in self.params.items()}
        targets = {name: view.index_select(0, index) for name, view in self.target_params.items()}
        with torch.no_grad():
            next_q = self.network.q_values(targets, batch.next_observations)
            target = td_target(batch.rewards, batch.terminated, next_q, self.gamma)
        grads = {name: torch.empty_like(p) for name, p in params.items()}
        self.network.loss_gradients(params, batch.observations, batch.actions, target, grads)
        return {
            layer.name: scores_from_activity(grads[f"{layer.name}.weight"].abs().flatten(2).mean(2))
            for layer in self.layers
        }

    @torch.no_grad()
    def reset(
        self,
        agent: int,
        masks: Mapping[str, Tensor],
        *,
        init: InitName,
        bias: BiasMode,
        step_mode: StepMode,
        whole_network: bool,
        generator: torch.Generator | None,
    ) -> None:
        """Recycle agent ``agent``'s neurons in ``masks`` (``{hidden layer: (width,) bool}``)
        as :func:`redo.core.recycle.reset_neurons` recycles a network's: same rule, same
        draws from ``generator``; its Adam moments of the changed entries are zeroed, and its
        step counts handled by ``step_mode``."""
        params = self.state["params"].agent(agent)
        if whole_network:
            pairs = [(params[f"{p}.weight"], params.get(f"{p}.bias")) for p in self._weight_names]
            changed = reinitialise_tensors(pairs, init, bias, generator)
        else:
            layers = [
                LayerTensors(
                    params[f"{layer.name}.weight"],
                    params.get(f"{layer.name}.bias"),
                    params[f"{next_prefix}.weight"],
                    layer.columns_per_neuron,
                )
                for layer, next_prefix in zip(self.layers, self._weight_names[1:], strict=True)
            ]
            changed = reset_tensors(
                layers, [masks[layer.name] for layer in self.layers], init, bias, generator
            )
        if not changed:
            return
        names = {id(view): name for name, view in params.items()}
        moments = {kind: self.state[kind].agent(agent) for kind in ("exp_avg", "exp_avg_sq")}
        states = {view: {k: moments[k][names[id(view)]] for k in moments} for view in changed}
        clear_moments(states, changed)
        if step_mode == "keep":
            return
        clock = self._per_entry_clock()
        for key, value in CLOCK_RESTART.items():
            if step_mode == "zero_all":  # every step count of this agent restarts
                for count in clock[key].agent(agent).values():
                    count.fill_(value)
                continue
            for view, entries in changed.items():  # elementwise: those of the changed entries
                clock[key].views[names[id(view)]][agent].masked_fill_(entries, value)

    def _per_entry_clock(self) -> dict[str, FlatState]:
        """Adam's clock with one count per entry (and its bias corrections), widened from the
        shared count once; the update leaves the fused path for good."""
        if self._entry_clock is None:
            count = float(self.clock["step"].item())
            shared = {
                "step": count,
                "bias_correction1": 1 - self.betas[0] ** count,
                "bias_correction2": 1 - self.betas[1] ** count,
            }
            shapes = {name: view.shape[1:] for name, view in self.params.items()}
            self._entry_clock = {}
            for key, value in shared.items():
                flat = FlatState(shapes, self.agents, self.device)
                flat.data.fill_(value)
                self._entry_clock[key] = flat
                self.clock[key] = flat.data
            self._fused = None
        return self._entry_clock

    def _fused_adam(self) -> dict[str, list[Tensor]]:
        """The tensor lists of torch's fused Adam kernel: one tensor per agent and parameter,
        so that an agent's arithmetic never depends on the population's size."""
        lists = {
            kind: [view[k] for view in flat.views.values() for k in range(self.agents)]
            for kind, flat in (
                ("params", self.state["params"]),
                ("grads", self.grads),
                ("exp_avg", self.state["exp_avg"]),
                ("exp_avg_sq", self.state["exp_avg_sq"]),
            )
        }
        return lists

    def _fused_step(self) -> None:
        assert self._fused is not None
        self.clock["step"].add_(1)
        torch._fused_adam_(
            self._fused["params"],
            self._fused["grads"],
            self._fused["exp_avg"],
            self._fused["exp_avg_sq"],
            [],
            [self.clock["step"]] * len(self._fused["params"]),
            lr=float(self._lr),
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.adam_eps,
            amsgrad=False,
            maximize=False,
        )

    # --- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Every agent's parameters, target parameters, Adam moments and clock (CPU copies)."""
        return {
            "state": {kind: flat.data.cpu().clone() for kind, flat in self.state.items()},
            "clock": {key: t.cpu().clone() for key, t in self.clock.items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a learner of the same population."""
        for kind, data in state["state"].items():
            self.state[kind].data.copy_(data)
        if state["clock"]["step"].numel() > 1:
            self._per_entry_clock()
        for key, data in state["clock"].items():
            self.clock[key].copy_(data)  # in place: the fused Adam holds the shared count

    # --- inspection -------------------------------------------------------------------------

    def network_of(self, agent: int, target: bool = False) -> nn.Module:
        """Agent ``agent``'s online (or target) network as an ordinary module (a copy), e.g.
        to compare it with a single-agent run or to use :mod:`redo.core.dormant` on it."""
        params = self.target_params if target else self.params
        module = copy.deepcopy(self._template).to_empty(device=self.device)
        module.load_state_dict({name: t[agent] for name, t in params.items()})
        return module


def _param_prefix(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` in ``model`` (the prefix of its parameters' names)."""
    return next(name for name, module in model.named_modules() if module is layer)


__all__ = ["STATE_KINDS", "FlatState", "PopulationLearner", "UpdateStats"]
