"""ReDo for stable-baselines3's DQN, as a callback: ``model.learn(n, callback=ReDoCallback())``.

The callback recycles the tau-dormant neurons of the online Q-network every ``period``
gradient steps (the paper's F), with the reset of :mod:`redo.core.recycle` applied to SB3's
own modules and optimizer. It needs nothing of SB3 beyond its public structure: the
Q-network ``model.policy.q_net`` is a features extractor followed by an ``nn.Sequential``
head, and :func:`sequential_view` lines their modules up into the one ``nn.Sequential`` that
:mod:`redo.core` reads, sharing the module objects, so that a reset changes SB3's parameters.

Example::

    from stable_baselines3 import DQN
    from redo.integrations.sb3 import ReDoCallback

    model = DQN("MlpPolicy", "CartPole-v1")
    model.learn(50_000, callback=ReDoCallback(tau=0.1, period=1000))
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
from stable_baselines3.dqn.policies import QNetwork
from torch import nn

from redo.core.dormant import PAPER_TAUS, check_tau, dormant_scores, dormant_summary
from redo.core.recycle import (
    BIAS_CHOICES,
    INIT_CHOICES,
    SELECTION_CHOICES,
    STEP_CHOICES,
    BiasMode,
    InitName,
    RecycleReport,
    Selection,
    StepMode,
    check_step_mode,
    reset_neurons,
    select_neurons,
)
from redo.core.structure import hidden_layers

#: What :func:`sequential_view` can line up, for error messages.
SUPPORTED = (
    "stable_baselines3.DQN with MlpPolicy (FlattenExtractor features, net_arch with at least "
    "one hidden layer) or CnnPolicy (NatureCNN features), the head built by SB3's create_mlp"
)


def sequential_view(q_net: QNetwork) -> nn.Sequential:
    """The modules of SB3's ``q_net`` in forward order, as one ``nn.Sequential``.

    The view holds the same module objects as ``q_net`` (no copy), so resetting a layer of the
    view resets SB3's parameter, and ``view(preprocess_obs(obs, ...))`` computes ``q_net(obs)``.
    Its module names are their paths in ``q_net`` (``features_extractor.cnn.0``,
    ``q_net.2``...), so the layer names that :mod:`redo.core` reports and the callback logs
    are those of ``q_net.named_modules()`` and of SB3's saved parameters.

    Only the features extractors whose forward pass is known are accepted: SB3's
    ``FlattenExtractor`` (``MlpPolicy``) and ``NatureCNN`` (``CnnPolicy``), by exact type, since
    a subclass may override ``forward``. The result is checked by
    :func:`redo.core.structure.hidden_layers` (each hidden Linear/Conv2d followed by one
    activation); anything else raises a ``ValueError`` that says what is supported.
    """
    if not isinstance(q_net, QNetwork):
        raise ValueError(f"expected SB3's DQN QNetwork, got {type(q_net).__name__}; {SUPPORTED}")
    extractor = q_net.features_extractor
    if type(extractor) is FlattenExtractor:
        features = nn.Sequential(OrderedDict(flatten=extractor.flatten))
    elif type(extractor) is NatureCNN:
        features = nn.Sequential(OrderedDict(cnn=extractor.cnn, linear=extractor.linear))
    else:
        raise ValueError(
            f"the Q-network's features extractor is {type(extractor).__name__}, whose forward "
            f"pass ReDoCallback cannot line up; supported: {SUPPORTED}"
        )
    if not isinstance(q_net.q_net, nn.Sequential):
        raise ValueError(
            f"the Q-network's head is {type(q_net.q_net).__name__}, not nn.Sequential; {SUPPORTED}"
        )
    view = nn.Sequential(OrderedDict(features_extractor=features, q_net=q_net.q_net))
    try:
        hidden_layers(view)
    except ValueError as error:
        raise ValueError(
            f"the Q-network cannot be recycled: {error}. Supported: {SUPPORTED}"
        ) from error
    return view


class ReDoCallback(BaseCallback):
    """Recycle the dormant neurons of an SB3 ``DQN``'s online Q-network (Sokar et al., 2023).

    **When.** ``period`` counts gradient steps, SB3's ``model._n_updates``, like F in the
    paper. SB3 trains after each rollout, so the callback checks at the start of every
    rollout (and once more when ``learn`` ends): if ``_n_updates`` has crossed a multiple of
    ``period`` since the last check, it recycles once, right after the gradient steps that
    crossed it. With ``gradient_steps`` larger than ``period`` several multiples can be
    crossed by one ``train`` call; that is still one recycling step.

    **What.** At a check the callback samples ``score_batch_size`` states from SB3's replay
    buffer (normalised by a ``VecNormalize`` env if there is one, as SB3's training batches
    are), preprocesses them as SB3 does (``preprocess_obs`` with the policy's
    ``normalize_images``), scores every hidden Linear/Conv2d neuron of the online network
    (:func:`sequential_view`) and resets the selected ones with
    :func:`redo.core.recycle.reset_neurons`: fresh incoming weights, bias, zero outgoing
    weights. The output layer's neurons (the Q-values) are never redrawn, only its input
    columns from recycled last-hidden neurons are zeroed. ``q_net_target`` is not touched: it
    picks the change up at SB3's next target update (``target_update_interval``), as in
    Dopamine. ``selection="all"`` is the "reset everything" ablation instead: the whole
    online network, output layer included, is drawn afresh (as
    ``recycle_dormant(selection="all")`` does), nothing is zeroed.

    **Optimizer.** The moments of exactly the reset entries are cleared in SB3's own
    optimizer, ``model.policy.optimizer``: ``exp_avg``, ``exp_avg_sq`` (and AMSGrad's
    ``max_exp_avg_sq``) of torch's Adam/AdamW (SB3's default is Adam) and of
    :class:`redo.core.optim.ElementwiseAdam`. Any other optimizer keeps its state as it is
    (SGD's momentum buffer, RMSprop's square average), only the weights are reset.
    ``step_mode`` is that of :func:`redo.core.recycle.clear_optimizer_entries`: ``"keep"`` (the
    paper's) leaves step counts alone, ``"zero_all"`` sets every parameter's step to 0, and
    ``"elementwise"`` restarts the reset entries' steps, which needs ``ElementwiseAdam``
    (``policy_kwargs=dict(optimizer_class=ElementwiseAdam)``); with any other optimizer it
    raises when training starts.

    **Logs.** At every check it records into SB3's logger, on the batch that decided the reset
    and before the reset: ``redo/dormant/tau=<tau>`` (dormant neurons / all hidden neurons,
    pooled over layers, as the paper plots) for each of ``log_taus`` and for ``tau``, the same
    per layer as ``redo/dormant/tau=<tau>/<layer>`` (layer names from :func:`sequential_view`),
    and ``redo/recycled`` (neurons recycled at this check). SB3 writes them with its next row
    (CSV, TensorBoard...); when two checks fall between rows the row shows the later one. The
    per-layer keys are left out of the stdout/log table, whose 36-character keys would
    truncate them into clashing names; CSV and TensorBoard get them.

    **Randomness.** SB3's replay buffer samples with numpy's *global* RNG. The callback draws
    its score batch with SB3's own ``sample`` but from a numpy stream of its own (swapped in
    for that one call), so the training batches and the exploration of a run with the
    callback are those of the same run without it: with ``reset=False`` both runs train
    exactly alike, and a DQN baseline logged this way is the DQN that ReDo is compared with.
    ``seed`` seeds that stream and a ``torch.Generator`` for the new weights and a random
    selection. With ``seed=None`` the score stream is derived from the model's ``seed``
    (fresh entropy if that is None too), and the new weights come from torch's global RNG
    (which SB3's ``seed`` sets).

    Args:
        tau: dormancy threshold, a neuron is recycled when its score is ``<= tau`` (paper:
            0.025 at DQN's default replay ratio, 0.1 at higher ones); any finite number >= 0.
        period: gradient steps between recycling steps (F), an int >= 1.
        score_batch_size: replay states that score the neurons (the paper uses 64), >= 1.
        log_taus: further thresholds whose dormant fractions are logged (recycling uses ``tau``).
        init: distribution of the new incoming weights, see
            :func:`redo.core.recycle.init_like`. ``"default"`` is PyTorch's own Linear/Conv2d
            init, the one SB3's DQN networks start from: the paper's rule.
        bias: ``"zero"`` (paper) or ``"redraw"`` (PyTorch's default bias init).
        step_mode: ``"keep"`` (paper), ``"elementwise"`` or ``"zero_all"``, see above.
        selection: ``"dormant"`` (paper), ``"random"`` (as many per layer as are dormant, at
            random positions) or ``"all"`` (re-initialise the whole online network).
        reset: False only measures and logs, recycling nothing: the same logs for a DQN
            baseline without ReDo.
        seed: seed of the score batches' numpy stream and of the generator of the new
            weights; None derives the first from the model's seed and takes the second from
            torch's global RNG.
        verbose: 1 prints one line per check.

    Attributes:
        network: the view of the online Q-network that is scored and reset
            (:func:`sequential_view`), built when training starts.
        last_report: what the latest check did, with the scores that decided it (measured
            before the reset); None before the first check.
    """

    network: nn.Sequential
    last_report: RecycleReport | None
    _score_stream: np.random.RandomState

    def __init__(
        self,
        *,
        tau: float = 0.1,
        period: int = 1000,
        score_batch_size: int = 64,
        log_taus: Iterable[float] = PAPER_TAUS,
        init: InitName = "default",
        bias: BiasMode = "zero",
        step_mode: StepMode = "keep",
        selection: Selection = "dormant",
        reset: bool = True,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        check_tau(tau)
        _check_count("period", period, "gradient steps between recycling steps, the paper's F")
        _check_count("score_batch_size", score_batch_size, "replay states scored per check")
        _check_choice("init", init, INIT_CHOICES)
        _check_choice("bias", bias, BIAS_CHOICES)
        _check_choice("step_mode", step_mode, STEP_CHOICES)
        _check_choice("selection", selection, SELECTION_CHOICES)
        if not isinstance(reset, bool):
            raise ValueError(f"reset must be True or False, got {reset!r}")
        if seed is not None and not _is_int(seed):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        if not _is_int(verbose) or verbose < 0:
            raise ValueError(
                f"verbose must be an int >= 0 (0 silent, 1 one line per check), got {verbose!r}"
            )
        super().__init__(verbose=int(verbose))
        self.tau = float(tau)
        self.period = int(period)
        self.score_batch_size = int(score_batch_size)
        self.taus = _logged_taus(log_taus, self.tau)
        self.init: InitName = init
        self.bias: BiasMode = bias
        self.step_mode: StepMode = step_mode
        self.selection: Selection = selection
        self.reset = reset
        self.seed = None if seed is None else int(seed)
        self.last_report = None
        self._generator: torch.Generator | None = None
        self._checked_multiple = 0

    def _init_callback(self) -> None:
        """Check the model, build the view of its online network and start counting periods
        from the model's current gradient step (a model trained before keeps its count)."""
        if not isinstance(self.model, DQN):
            raise ValueError(
                f"ReDoCallback recycles a stable_baselines3.DQN, got {type(self.model).__name__}; "
                f"supported: {SUPPORTED}"
            )
        self.network = sequential_view(self.model.policy.q_net)
        try:
            check_step_mode(self.model.policy.optimizer, self.step_mode)
        except ValueError as error:
            raise ValueError(
                f"{error} (with SB3: DQN(..., policy_kwargs=dict(optimizer_class=ElementwiseAdam)))"
            ) from error
        if self.seed is not None:
            device = next(self.network.parameters()).device
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        self._score_stream = _new_score_stream(
            self.seed if self.seed is not None else self.model.seed
        )
        self._checked_multiple = self.model._n_updates // self.period

    def _on_rollout_start(self) -> None:
        self._recycle_if_due()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._recycle_if_due()

    def _recycle_if_due(self) -> None:
        """Recycle once if ``_n_updates`` crossed a multiple of ``period`` since the last check."""
        multiple = self.model._n_updates // self.period
        if multiple > self._checked_multiple:
            self._checked_multiple = multiple
            self.last_report = self._recycle()
            self._log(self.last_report)

    def _recycle(self) -> RecycleReport:
        """Score the online network on a replay batch and reset the selected neurons."""
        model = self.model
        q_net = model.policy.q_net
        with _numpy_global_stream(self._score_stream):
            batch = model.replay_buffer.sample(self.score_batch_size, env=model._vec_normalize_env)
        x = preprocess_obs(batch.observations, q_net.observation_space, q_net.normalize_images)
        scores = dormant_scores(self.network, x)
        masks = select_neurons(scores, self.tau, self.selection, self._generator)
        if not self.reset:  # measure only: nothing recycled
            masks = {name: torch.zeros_like(mask) for name, mask in masks.items()}
        return reset_neurons(
            self.network, model.policy.optimizer, masks, init=self.init, bias=self.bias,
            step_mode=self.step_mode, whole_network=self.reset and self.selection == "all",
            generator=self._generator, scores=scores,
        )  # fmt: skip

    def _log(self, report: RecycleReport) -> None:
        """Record the dormant fractions that decided ``report`` and what it recycled."""
        summary = dormant_summary(report.scores, self.taus)
        for tau in self.taus:
            key = f"redo/dormant/tau={tau:g}"
            self.logger.record(key, summary.fraction(tau))
            for layer in summary.layers:
                self.logger.record(
                    f"{key}/{layer}", summary.fraction(tau, layer), exclude=("stdout", "log")
                )
        self.logger.record("redo/recycled", report.total)
        if self.verbose >= 1:
            print(
                f"ReDo at gradient step {self.model._n_updates}: recycled {report.total} of "
                f"{sum(report.neurons.values())} hidden neurons (tau={self.tau:g})"
            )


#: Mixed into the seed of the score stream, so that it never equals SB3's global stream.
_SCORE_STREAM_TAG = 0x5EDD0


def _new_score_stream(seed: int | None) -> np.random.RandomState:
    """The callback's numpy stream for score batches: seeded by ``seed`` and a tag of its own
    (an unseeded model gets fresh entropy), a legacy ``RandomState`` because that is what
    numpy's global state is and what :func:`_numpy_global_stream` swaps in."""
    entropy = None if seed is None else [int(seed), _SCORE_STREAM_TAG]
    return np.random.RandomState(np.random.MT19937(np.random.SeedSequence(entropy)))


@contextmanager
def _numpy_global_stream(stream: np.random.RandomState) -> Iterator[None]:
    """Make ``stream`` numpy's global RNG for the body, then give the global RNG back its
    own state untouched and keep in ``stream`` what the body drew.

    SB3's buffers sample with ``np.random`` directly; swapping states lets the callback use
    SB3's ``sample`` (every buffer type, ``VecNormalize`` included) without its draws
    shifting SB3's training batches."""
    saved = np.random.get_state()
    np.random.set_state(stream.get_state())
    try:
        yield
    finally:
        stream.set_state(np.random.get_state())
        np.random.set_state(saved)


def _logged_taus(log_taus: Iterable[float], tau: float) -> tuple[float, ...]:
    """``log_taus`` then ``tau``, without repeats, each checked; their log keys must differ."""
    if isinstance(log_taus, str | bytes) or not isinstance(log_taus, Iterable):
        raise ValueError(f"log_taus must be a sequence of thresholds >= 0, got {log_taus!r}")
    taus: list[float] = []
    for value in (*log_taus, tau):
        try:
            check_tau(value)
        except ValueError as error:
            raise ValueError(
                f"log_taus must hold thresholds >= 0, got {value!r}: {error}"
            ) from error
        if float(value) not in taus:
            taus.append(float(value))
    keys = [f"{value:g}" for value in taus]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"thresholds {taus} give the same log key at 6 significant digits ({keys}); "
            "give thresholds that differ within 6 digits"
        )
    return tuple(taus)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(what: str, value: object, meaning: str) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{what} must be an int >= 1 ({meaning}), got {value!r}")


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {list(choices)}, got {value!r}")


__all__ = ["SUPPORTED", "ReDoCallback", "sequential_view"]
