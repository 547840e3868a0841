"""ReDoCallback on real stable-baselines3 DQN agents, a few hundred environment steps each.

Every check is made against SB3's own objects, not the callback's view of them: reference
scores come from forward hooks on SB3's activation modules while ``model.q_net`` runs on the
raw replay observations, and the entries a reset may change are listed by hand per policy
(which layer feeds which, how many flattened columns a channel owns)."""

import copy
import csv
import itertools
import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.logger import TensorBoardOutputFormat, configure
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecFrameStack
from torch import nn

from redo.core.dormant import dormant_scores
from redo.core.optim import ElementwiseAdam
from redo.integrations.sb3 import (
    ReDoCallback,
    _new_score_stream,
    _numpy_global_stream,
    sequential_view,
)

#: DQN's training batch; the score batch differs so that the spy can tell them apart.
BATCH = 32
SCORE_BATCH = 17

#: (hidden layer, the layer it feeds, input columns of that layer per neuron), in q_net paths.
MLP_LAYERS = [("q_net.0", "q_net.2", 1), ("q_net.2", "q_net.4", 1)]
CNN_LAYERS = [
    ("features_extractor.cnn.0", "features_extractor.cnn.2", 1),
    ("features_extractor.cnn.2", "features_extractor.cnn.4", 1),
    ("features_extractor.cnn.4", "features_extractor.linear.0", 7 * 7),
    ("features_extractor.linear.0", "q_net.0", 1),
]


def cartpole(**kwargs) -> DQN:
    """A CartPole DQN that learns from step 50 on, one gradient step per env step, and whose
    target network SB3 never updates within a test (so any change to it is the callback's)."""
    settings = dict(
        learning_starts=50, train_freq=1, batch_size=BATCH, buffer_size=1000,
        target_update_interval=10**6, seed=0, device="cpu",
    )  # fmt: skip
    settings.update(kwargs)
    return DQN("MlpPolicy", "CartPole-v1", **settings)


def breakout() -> DQN:
    """Breakout as SB3's make_atari_env + frame stacking builds it, with a small buffer."""
    import ale_py

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("ALE/Breakout-v5", n_envs=1, seed=0), n_stack=4)
    return DQN(
        "CnnPolicy", env, learning_starts=50, train_freq=1, batch_size=8, buffer_size=200,
        target_update_interval=10**6, seed=0, device="cpu",
    )  # fmt: skip


def reference_scores(model: DQN, obs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores from SB3's own forward pass: hooks on every activation of ``model.q_net``, named
    after the layer before it (``q_net.1`` follows ``q_net.0``), E|h| / mean_k E|h_k|."""
    captured = {}
    handles = []
    for path, module in model.q_net.named_modules():
        if isinstance(module, nn.ReLU):
            prefix, index = path.rsplit(".", 1)
            layer = f"{prefix}.{int(index) - 1}"
            hook = (lambda name: lambda _m, _i, out: captured.__setitem__(name, out.clone()))(layer)
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model.q_net(obs)
    for handle in handles:
        handle.remove()
    scores = {}
    for layer, h in captured.items():
        activity = h.abs().mean(dim=(0, 2, 3)) if h.dim() == 4 else h.abs().mean(dim=0)
        scores[layer] = activity / (activity.mean() + 1e-9)
    return scores


class Spy:
    """Wraps ``model.replay_buffer.sample``: each score-batch draw (the first thing a check
    does) optionally kills neurons, then snapshots the network, its target and optimizer, the
    batch, the callback's scores on it and SB3's reference scores, all before the reset.
    Also records every ``logger.record`` call, tagged with the check it belongs to."""

    def __init__(self, model: DQN, callback: ReDoCallback, kill=None):
        self.model, self.callback, self.kill = model, callback, kill
        self.checks: list[dict] = []
        sample = model.replay_buffer.sample

        def spied(n, env=None):
            batch = sample(n, env=env)
            if n == SCORE_BATCH:
                self._snapshot(batch.observations)
            return batch

        model.replay_buffer.sample = spied

    def _snapshot(self, obs):
        if self.kill:
            with torch.no_grad():
                for path, neurons in self.kill.items():
                    self.model.q_net.get_submodule(path).bias[neurons] = -1e4
        q_net = self.model.q_net
        x = preprocess_obs(obs, q_net.observation_space, q_net.normalize_images)
        self.checks.append(
            {
                "n_updates": self.model._n_updates,
                "params": copy.deepcopy(q_net.state_dict()),
                "target": copy.deepcopy(self.model.q_net_target.state_dict()),
                "optimizer": copy.deepcopy(self.model.policy.optimizer.state_dict()),
                "scores": dormant_scores(self.callback.network, x),
                "reference": reference_scores(self.model, obs),
                "records": {},
            }
        )

    def record_logs(self):
        logger = self.model.logger
        record = logger.record

        def spied(key, value, exclude=None):
            if key.startswith("redo/"):
                self.checks[-1]["records"][key] = (value, exclude)
            record(key, value, exclude)

        logger.record = spied


def moments(model: DQN, state: dict | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The optimizer state per parameter name of ``model.q_net``, from ``state`` (a saved
    ``state_dict()``) or the live optimizer."""
    optimizer = model.policy.optimizer
    state = state or optimizer.state_dict()
    names = [name for name, _ in model.q_net.named_parameters()]
    ids = optimizer.state_dict()["param_groups"][0]["params"]
    return {name: state["state"][i] for name, i in zip(names, ids, strict=True)}


def changed_entries(model: DQN, layers, masks) -> dict[str, torch.Tensor]:
    """Every parameter of ``model.q_net`` with the entries a reset of ``masks`` may change:
    recycled neurons' rows and biases, and the columns of the next layer that read them."""
    params = dict(model.q_net.named_parameters())
    changed = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in params.items()}
    for layer, next_layer, columns in layers:
        mask = masks[layer]
        changed[f"{layer}.weight"][mask] = True
        changed[f"{layer}.bias"][mask] = True
        changed[f"{next_layer}.weight"][:, mask.repeat_interleave(columns)] = True
    return changed


def assert_reset_exactly(model, layers, check, tau, step_mode="keep"):
    """Right after ``check``: the recycled neurons (score <= tau) have new incoming weights
    within PyTorch's init bound, zero bias and zero outgoing weights; every other entry,
    the output layer's bias and weights included, is what it was. The optimizer's moments are
    zero exactly at the changed entries and untouched elsewhere; the step counts follow
    ``step_mode``. Returns the masks."""
    masks = {layer: check["scores"][layer] <= tau for layer, _, _ in layers}
    changed = changed_entries(model, layers, masks)
    before, after = check["params"], model.q_net.state_dict()
    for layer, next_layer, columns in layers:
        mask = masks[layer]
        rows_before, rows_after = before[f"{layer}.weight"][mask], after[f"{layer}.weight"][mask]
        assert (rows_after != rows_before).flatten(1).any(dim=1).all(), layer
        if mask.any():  # PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            assert rows_after.abs().max() <= 1 / math.sqrt(rows_after[0].numel())
        assert (after[f"{layer}.bias"][mask] == 0).all()
        assert (after[f"{next_layer}.weight"][:, mask.repeat_interleave(columns)] == 0).all()
    for name, entries in changed.items():
        assert torch.equal(after[name][~entries], before[name][~entries]), name
    old, new = moments(model, check["optimizer"]), moments(model)
    assert any(old[name]["exp_avg"][e].abs().sum() > 0 for name, e in changed.items()), (
        "the changed entries had no momentum before the check: this test would prove nothing"
    )
    for name, entries in changed.items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert (new[name][key][entries] == 0).all(), (name, key)
            assert torch.equal(new[name][key][~entries], old[name][key][~entries]), (name, key)
        step_old, step_new = old[name]["step"], new[name]["step"]
        if step_mode == "keep":
            assert torch.equal(step_new, step_old)
        elif step_mode == "zero_all":
            assert (step_new == 0).all()
        else:  # elementwise: the changed entries restart, the others keep their count
            wide = step_old.expand_as(entries)
            assert (step_new.expand_as(entries)[entries] == 0).all()
            assert torch.equal(step_new.expand_as(entries)[~entries], wide[~entries])
    return masks


def assert_view_is_sb3s_network(model, callback, obs):
    """The callback's view shares SB3's modules and computes ``q_net`` on preprocessed input."""
    for name, module in callback.network.named_modules():
        if name and not isinstance(module, nn.Sequential):
            assert module is model.q_net.get_submodule(name), name
    x = preprocess_obs(obs, model.q_net.observation_space, model.q_net.normalize_images)
    with torch.no_grad():
        assert torch.equal(callback.network(x), model.q_net(obs))


class RecordingWriter:
    """Stands in for tensorboard's SummaryWriter inside SB3's TensorBoardOutputFormat."""

    def __init__(self):
        self.scalars, self.other = {}, []

    def add_scalar(self, key, value, step):
        self.scalars.setdefault(key, []).append(value)

    def add_text(self, key, *args):
        self.other.append(key)

    def add_histogram(self, key, *args):
        self.other.append(key)

    def flush(self):
        pass


def tensorboard_format() -> TensorBoardOutputFormat:
    """SB3's TensorBoard writer, whose ``write`` is SB3's code, on a recording SummaryWriter
    (tensorboard itself is not installed)."""
    output = TensorBoardOutputFormat.__new__(TensorBoardOutputFormat)
    output.writer, output._is_closed = RecordingWriter(), False
    return output


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_mlp_checks_every_period_scores_like_sb3_and_logs_to_csv_and_tensorboard(tmp_path):
    model = cartpole()
    target_before = copy.deepcopy(model.q_net_target.state_dict())
    logger = configure(str(tmp_path), ["csv"])
    tensorboard = tensorboard_format()
    logger.output_formats.append(tensorboard)
    model.set_logger(logger)
    callback = ReDoCallback(tau=0.3, period=20, score_batch_size=SCORE_BATCH, seed=1)
    spy = Spy(model, callback)
    spy.record_logs()
    model.learn(250, callback=callback, log_interval=1)

    # 200 gradient steps (env steps 51..250): one check at each multiple of 20, the last at
    # the end of learn()
    assert model._n_updates == 200
    assert [check["n_updates"] for check in spy.checks] == list(range(20, 201, 20))
    last = spy.checks[-1]
    assert list(callback.last_report.scores) == ["q_net.0", "q_net.2"]
    for layer, scores in callback.last_report.scores.items():
        assert torch.equal(scores, last["scores"][layer])
    taus = (0.0, 0.025, 0.1, 0.3)
    recycled_any = False
    for check in spy.checks:
        assert check["reference"].keys() == check["scores"].keys()
        for layer, scores in check["scores"].items():
            torch.testing.assert_close(scores, check["reference"][layer], rtol=1e-5, atol=1e-6)
        records = check["records"]
        masks = {tau: {k: s <= tau for k, s in check["reference"].items()} for tau in taus}
        for tau in taus:
            pooled = sum(int(m.sum()) for m in masks[tau].values()) / 128
            assert records[f"redo/dormant/tau={tau:g}"] == (pytest.approx(pooled), None)
            for layer, mask in masks[tau].items():
                value, exclude = records[f"redo/dormant/tau={tau:g}/{layer}"]
                assert value == pytest.approx(float(mask.float().mean()))
                assert exclude == ("stdout", "log")
        recycled = sum(int(m.sum()) for m in masks[0.3].values())
        assert records["redo/recycled"] == (recycled, None)
        recycled_any |= recycled > 0
    assert recycled_any, "nothing was recycled in this run: raise tau"
    # the callback never touches the target network (SB3 does not update it in this run)
    for name, tensor in model.q_net_target.state_dict().items():
        assert torch.equal(tensor, target_before[name]), name
    assert_view_is_sb3s_network(model, callback, model.replay_buffer.sample(5).observations)

    rows = read_csv(tmp_path / "progress.csv")
    keys = [f"redo/dormant/tau={tau:g}" for tau in taus]
    keys += [f"{key}/{layer}" for key in keys for layer in ("q_net.0", "q_net.2")]
    keys += ["redo/recycled"]
    logged = [row for row in rows if row["redo/recycled"]]
    assert len(logged) >= 5
    recorded = [{k: v for k, (v, _) in check["records"].items()} for check in spy.checks]
    for row in logged:
        values = {key: float(row[key]) for key in keys}
        assert all(0 <= v <= 1 for k, v in values.items() if k != "redo/recycled")
        overall = [values[f"redo/dormant/tau={tau:g}"] for tau in taus]
        assert overall == sorted(overall)
        assert any(values == pytest.approx(r) for r in recorded), row
    for key in keys:
        assert key in tensorboard.writer.scalars
        assert all(isinstance(v, float | int) for v in tensorboard.writer.scalars[key])
    assert not [key for key in tensorboard.writer.other if key.startswith("redo/")]


@pytest.mark.parametrize(
    ("step_mode", "optimizer_class"),
    [("keep", torch.optim.Adam), ("zero_all", torch.optim.Adam), ("elementwise", ElementwiseAdam)],
)
def test_mlp_reset_changes_exactly_the_recycled_entries(step_mode, optimizer_class):
    # one check, at the end of learn(): what learn() leaves is the state right after it
    model = cartpole(policy_kwargs=dict(optimizer_class=optimizer_class))
    killed = {"q_net.0": [1, 5, 9], "q_net.2": [0, 3]}
    callback = ReDoCallback(
        tau=0.0, period=100, score_batch_size=SCORE_BATCH, step_mode=step_mode, seed=3
    )
    spy = Spy(model, callback, kill=killed)
    model.learn(150, callback=callback)
    assert [check["n_updates"] for check in spy.checks] == [100]
    masks = assert_reset_exactly(model, MLP_LAYERS, spy.checks[0], tau=0.0, step_mode=step_mode)
    for layer, neurons in killed.items():
        assert masks[layer][neurons].all()
        assert 0 < int(masks[layer].sum()) < masks[layer].numel()
    assert callback.last_report.recycled == {k: int(m.sum()) for k, m in masks.items()}


def test_recycling_everything_keeps_the_output_layer_and_target():
    model = cartpole()
    target_before = copy.deepcopy(model.q_net_target.state_dict())
    callback = ReDoCallback(tau=1e9, period=50, score_batch_size=SCORE_BATCH)
    spy = Spy(model, callback)
    model.learn(100, callback=callback)
    assert [check["n_updates"] for check in spy.checks] == [50]
    before, after = spy.checks[0]["params"], model.q_net.state_dict()
    assert callback.last_report.total == 128
    assert (after["q_net.0.weight"] != before["q_net.0.weight"]).all()
    for name in ("q_net.0.bias", "q_net.2.weight", "q_net.2.bias", "q_net.4.weight"):
        assert (after[name] == 0).all(), name
    assert torch.equal(after["q_net.4.bias"], before["q_net.4.bias"])
    obs = model.replay_buffer.sample(4).observations
    with torch.no_grad():
        assert torch.equal(model.q_net(obs), before["q_net.4.bias"].expand(4, -1))
    for name, tensor in model.q_net_target.state_dict().items():
        assert torch.equal(tensor, target_before[name]), name


def test_selection_all_redraws_the_whole_online_network():
    model = cartpole()
    target_before = copy.deepcopy(model.q_net_target.state_dict())
    callback = ReDoCallback(tau=0.1, period=50, score_batch_size=SCORE_BATCH, selection="all")
    spy = Spy(model, callback)
    model.learn(100, callback=callback)
    before, after = spy.checks[0]["params"], model.q_net.state_dict()
    for name, tensor in after.items():
        if name.endswith("weight"):
            assert (tensor != before[name]).all(), name  # every weight drawn afresh
        else:
            assert (tensor == 0).all(), name  # the paper's bias rule: 0
    optimizer = model.policy.optimizer
    for param in model.q_net.parameters():
        assert (optimizer.state[param]["exp_avg"] == 0).all()
    for name, tensor in model.q_net_target.state_dict().items():
        assert torch.equal(tensor, target_before[name]), name


class UpdateCounts(BaseCallback):
    """Records SB3's gradient step count at every rollout start and at the end of learn()."""

    def __init__(self):
        super().__init__()
        self.seen = [0]

    def _on_rollout_start(self):
        self.seen.append(self.model._n_updates)

    def _on_step(self):
        return True

    def _on_training_end(self):
        self.seen.append(self.model._n_updates)


def test_one_recycling_per_check_however_many_multiples_were_crossed():
    # one train() call per episode of random play, as many gradient steps as the episode had
    # env steps: once training runs, some calls cross no multiple of 20, some cross several
    model = cartpole(
        train_freq=(1, "episode"), gradient_steps=-1, batch_size=16, exploration_final_eps=1.0
    )
    period = 20
    counts = UpdateCounts()
    callback = ReDoCallback(period=period, score_batch_size=SCORE_BATCH)
    spy = Spy(model, callback)
    model.learn(300, callback=CallbackList([counts, callback]))
    training = [(m, n) for m, n in itertools.pairwise(counts.seen) if m > 0]
    crossed = [n // period - m // period for m, n in training]
    assert 0 in crossed and max(crossed) >= 2, crossed
    expected = [n for m, n in itertools.pairwise(counts.seen) if n // period > m // period]
    assert [check["n_updates"] for check in spy.checks] == expected


def test_counting_starts_from_the_models_gradient_step():
    model = cartpole()
    model.learn(80)  # 30 gradient steps without ReDo
    callback = ReDoCallback(period=20, score_batch_size=SCORE_BATCH)
    spy = Spy(model, callback)
    model.learn(30, callback=callback, reset_num_timesteps=False)
    assert [check["n_updates"] for check in spy.checks] == [40, 60]


def test_breakout_cnn_policy(tmp_path):
    model = breakout()
    target_before = copy.deepcopy(model.q_net_target.state_dict())
    model.set_logger(configure(str(tmp_path), ["stdout", "log", "csv"]))
    killed = {"features_extractor.cnn.4": [2, 7], "features_extractor.linear.0": [0, 11, 300]}
    callback = ReDoCallback(tau=0.0, period=100, score_batch_size=SCORE_BATCH, seed=5)
    spy = Spy(model, callback, kill=killed)
    model.learn(150, callback=callback, log_interval=1000)
    assert [check["n_updates"] for check in spy.checks] == [100]
    check = spy.checks[0]
    assert list(callback.last_report.scores) == [layer for layer, _, _ in CNN_LAYERS]
    for layer, scores in callback.last_report.scores.items():
        assert torch.equal(scores, check["scores"][layer])
        torch.testing.assert_close(scores, check["reference"][layer], rtol=1e-5, atol=1e-6)
    masks = assert_reset_exactly(model, CNN_LAYERS, check, tau=0.0)
    for layer, neurons in killed.items():
        assert masks[layer][neurons].all()
    for name, tensor in model.q_net_target.state_dict().items():
        assert torch.equal(tensor, target_before[name]), name
    assert_view_is_sb3s_network(model, callback, model.replay_buffer.sample(3).observations)
    # the final check's values are recorded; writing them must not clash in the stdout table
    model.logger.dump(model.num_timesteps)
    row = read_csv(tmp_path / "progress.csv")[-1]
    assert int(row["redo/recycled"]) == callback.last_report.total >= 5
    assert float(row["redo/dormant/tau=0/features_extractor.cnn.4"]) == pytest.approx(
        float(masks["features_extractor.cnn.4"].float().mean())
    )
    assert "redo/dormant/tau=0.1/features_extractor.linear.0" in row
    table = (tmp_path / "log.txt").read_text()  # SB3's table: overall keys, no per-layer ones
    assert "dormant/tau=0.025 |" in table
    assert "features_extractor" not in table


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tau=-0.1), "tau must be a finite number >= 0"),
        (dict(tau=float("nan")), "tau must be a finite number >= 0"),
        (dict(tau="0.1"), "tau must be a number >= 0, got '0.1'"),
        (dict(period=0), r"period must be an int >= 1 \(gradient steps"),
        (dict(period=2.5), "period must be an int >= 1 .* got 2.5"),
        (dict(period=True), "period must be an int >= 1 .* got True"),
        (dict(score_batch_size=0), "score_batch_size must be an int >= 1"),
        (dict(log_taus=0.1), "log_taus must be a sequence of thresholds >= 0, got 0.1"),
        (dict(log_taus="0.1"), "log_taus must be a sequence"),
        (dict(log_taus=(0.0, -1.0)), "log_taus must hold thresholds >= 0, got -1.0"),
        (dict(log_taus=(0.1000000001,)), "same log key"),
        (dict(init="he"), r"init must be one of \['default', .*\], got 'he'"),
        (dict(bias="one"), r"bias must be one of \['zero', 'redraw'\], got 'one'"),
        (dict(step_mode="reset"), r"step_mode must be one of \['keep', .*got 'reset'"),
        (dict(selection="worst"), r"selection must be one of \['dormant', .*got 'worst'"),
        (dict(seed="1"), "seed must be an int or None, got '1'"),
        (dict(verbose=-1), "verbose must be an int >= 0"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReDoCallback(**kwargs)


class Doubling(BaseFeaturesExtractor):
    """A features extractor whose forward pass the callback cannot know."""

    def __init__(self, observation_space):
        super().__init__(observation_space, features_dim=4)

    def forward(self, obs):
        return 2 * obs


@pytest.mark.parametrize(
    ("make", "callback", "message"),
    [
        (
            lambda: PPO("MlpPolicy", "CartPole-v1", n_steps=64, device="cpu"),
            ReDoCallback(),
            "recycles a stable_baselines3.DQN, got PPO",
        ),
        (
            lambda: cartpole(policy_kwargs=dict(net_arch=[])),
            ReDoCallback(),
            "cannot be recycled: the model has 1 Linear/Conv2d layer.*Supported: .*MlpPolicy",
        ),
        (
            lambda: cartpole(policy_kwargs=dict(features_extractor_class=Doubling)),
            ReDoCallback(),
            "features extractor is Doubling.*supported: .*NatureCNN",
        ),
        (
            cartpole,
            ReDoCallback(step_mode="elementwise"),
            "needs one step count per weight, but Adam.*optimizer_class=ElementwiseAdam",
        ),
    ],
)
def test_unsupported_models_raise_when_learning_starts(make, callback, message):
    model = make()
    with pytest.raises(ValueError, match=message):
        model.learn(10, callback=callback)
    assert model.num_timesteps == 0


def test_sequential_view_rejects_what_is_not_a_dqn_q_network():
    with pytest.raises(ValueError, match="expected SB3's DQN QNetwork, got Sequential"):
        sequential_view(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("selection", ["dormant", "all"])
def test_reset_false_measures_and_logs_but_changes_nothing(tmp_path, selection):
    model = cartpole()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = ReDoCallback(
        tau=1e9, period=50, score_batch_size=SCORE_BATCH, reset=False, selection=selection
    )
    spy = Spy(model, callback)
    model.learn(100, callback=callback)
    model.logger.dump(model.num_timesteps)  # the check fell after SB3's last row
    assert callback.last_report.total == 0
    before, after = spy.checks[0]["params"], model.q_net.state_dict()
    for name, tensor in after.items():
        assert torch.equal(tensor, before[name]), name
    logged = pd.read_csv(tmp_path / "progress.csv")
    assert logged["redo/recycled"].dropna().eq(0).all()
    assert logged["redo/dormant/tau=1e+09"].dropna().eq(1.0).all()
    with pytest.raises(ValueError, match="reset must be True or False"):
        ReDoCallback(reset="no")


def test_score_batches_leave_sb3s_training_batches_alone():
    # reset=False recycles nothing: any difference from the run without the callback would
    # be its score batches shifting numpy's global stream, which SB3 samples and explores with
    plain = cartpole()
    plain.learn(200)
    measured = cartpole()
    callback = ReDoCallback(period=20, score_batch_size=SCORE_BATCH, reset=False)
    measured.learn(200, callback=callback)
    assert callback.last_report is not None  # it did score, seven times
    for name, tensor in plain.q_net.state_dict().items():
        assert torch.equal(tensor, measured.q_net.state_dict()[name]), name


def test_the_score_stream_is_swapped_in_and_out_of_numpys_global_state():
    np.random.seed(3)
    global_state = np.random.get_state()[1].copy()
    stream = _new_score_stream(5)
    with pytest.raises(RuntimeError), _numpy_global_stream(stream):
        first = np.random.randint(0, 10**9, size=4)
        raise RuntimeError("the global state comes back even when the body fails")
    assert np.array_equal(np.random.get_state()[1], global_state)
    with _numpy_global_stream(stream):
        second = np.random.randint(0, 10**9, size=4)
    assert np.array_equal(np.random.get_state()[1], global_state)
    assert not np.array_equal(first, second)  # the stream kept what the first body drew
    again = _new_score_stream(5)
    assert np.array_equal(again.randint(0, 10**9, size=4), first)
    np.random.seed(5)  # the tag keeps the stream off SB3's global stream of the same seed
    assert not np.array_equal(np.random.randint(0, 10**9, size=4), first)
