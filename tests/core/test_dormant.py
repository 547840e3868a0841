import importlib.util
import math
import pathlib
import sys

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import redo.core
from redo.core.dormant import (
    capture_activations,
    dormant_masks,
    dormant_scores,
    dormant_summary,
    neuron_activity,
)
from tests.nets import (
    ACTIVATIONS,
    NETS,
    activations_by_hand,
    conv_flatten_linear,
    inputs,
    kill,
    mlp,
    reference_scores,
)

FAST = settings(max_examples=30, deadline=None)


def assert_scores_close(actual, expected):
    assert list(actual) == list(expected)
    for name in expected:
        torch.testing.assert_close(actual[name].double(), expected[name], rtol=1e-5, atol=1e-6)


# --- the score --------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.__name__)
@pytest.mark.parametrize("net", list(NETS))
def test_scores_equal_formula_on_activations_run_by_hand(net, act):
    build, shape = NETS[net]
    model, x = build(act=act), inputs(shape)
    assert_scores_close(dormant_scores(model, x), reference_scores(model, x))


def test_conv_neuron_activity_averages_over_batch_and_positions():
    h = torch.randn(6, 4, 3, 5)
    per_channel = torch.stack([h[:, c].abs().mean() for c in range(4)])
    torch.testing.assert_close(neuron_activity(h, conv=True), per_channel)
    torch.testing.assert_close(
        neuron_activity(h[:, :, 0, 0], conv=False), h[:, :, 0, 0].abs().mean(0)
    )


def test_score_of_hand_made_activations():
    # One-hot inputs read the rows of h back: E|h| per neuron = (1, 3, 0, 4), layer mean 2.
    h = torch.tensor([[1.0, 2.0, 0.0, 4.0], [1.0, 4.0, 0.0, 4.0]])
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.copy_(h.T)
        model[0].bias.zero_()
    scores = dormant_scores(model, torch.eye(2))["0"]
    torch.testing.assert_close(scores, torch.tensor([0.5, 1.5, 0.0, 2.0]))


def test_all_silent_layer_scores_zero_not_nan():
    model = mlp(3, 4, 2)
    kill(model, "0", range(4))
    scores = dormant_scores(model, inputs((3,)))["0"]
    assert torch.equal(scores, torch.zeros(4))


def test_nested_sequential_scores_have_dotted_names():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
        nn.Flatten(),
        nn.Sequential(nn.Sequential(nn.Linear(4 * 5 * 5, 6), nn.GELU())),
        nn.Linear(6, 2),
    )
    x = inputs((3, 7, 7))
    scores = dormant_scores(model, x)
    assert list(scores) == ["0.0", "2.0.0"]
    assert_scores_close(scores, reference_scores(model, x))


def test_capture_returns_post_activation_outputs():
    model, x = conv_flatten_linear(act=nn.Tanh), inputs((3, 7, 7))
    captured = capture_activations(model, x)
    expected = activations_by_hand(model, x)
    assert list(captured) == list(expected)
    for name in expected:
        assert torch.equal(captured[name], expected[name])


def test_in_place_dropout_after_activation_does_not_change_scores():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 64), nn.ReLU(), nn.Dropout(0.5, inplace=True), nn.Linear(64, 2)
    )
    model.train()
    x = inputs((5,))
    assert_scores_close(dormant_scores(model, x), reference_scores(model, x))


@FAST
@given(c=st.floats(1e-3, 1e3), layer=st.sampled_from(["0", "2"]))
def test_scores_are_invariant_to_scaling_a_relu_layer(c, layer):
    model, x = mlp(5, 8, 7, 3), inputs((5,))
    before = dormant_scores(model, x)[layer]
    with torch.no_grad():  # ReLU(c z) = c ReLU(z): the layer's activations are scaled by c
        model.get_submodule(layer).weight.mul_(c)
        model.get_submodule(layer).bias.mul_(c)
    after = dormant_scores(model, x)[layer]
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)


@FAST
@given(c=st.floats(1e-3, 1e3))
def test_conv_scores_are_invariant_to_scaling_the_channels(c):
    model, x = conv_flatten_linear(), inputs((3, 7, 7))
    before = dormant_scores(model, x)["2"]
    with torch.no_grad():
        model[2].weight.mul_(c)
        model[2].bias.mul_(c)
    torch.testing.assert_close(dormant_scores(model, x)["2"], before, rtol=1e-4, atol=1e-6)


@FAST
@given(seed=st.integers(0, 10_000), width=st.integers(1, 12))
def test_scores_average_to_one_over_an_active_layer(seed, width):
    model, x = mlp(4, width, 2, act=nn.Tanh, seed=seed), inputs((4,), seed=seed)
    scores = dormant_scores(model, x)["0"]
    assert scores.min() >= 0
    assert scores.mean().item() == pytest.approx(1.0, rel=1e-5)


# --- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", list(NETS))
def test_tau_zero_marks_exactly_the_neurons_silent_on_the_whole_batch(net):
    build, shape = NETS[net]
    model, x = build(), inputs(shape)
    kill(model, "0", [1, 3])
    kill(model, "2", [0])
    masks = dormant_masks(dormant_scores(model, x), 0.0)
    for name, h in activations_by_hand(model, x).items():
        silent = (h == 0).all(dim=0)
        if h.dim() == 4:  # a channel is silent when it is 0 at every position
            silent = silent.flatten(1).all(dim=1)
        assert torch.equal(masks[name], silent), name
    assert masks["0"][[1, 3]].all()
    assert masks["2"][0]


def test_tau_zero_does_not_mark_a_neuron_active_on_one_input():
    model = mlp(3, 4, 2)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[2, 0] = 1.0  # neuron 2 fires only for the one input with x0 > 0
        model[0].bias.zero_()
    x = torch.zeros(16, 3)
    x[5, 0] = 1e-6
    mask = dormant_masks(dormant_scores(model, x), 0.0)["0"]
    assert mask.tolist() == [True, True, False, True]


def test_mask_threshold_is_inclusive():
    scores = {"a": torch.tensor([0.0, 0.1, 0.1000001, 2.0])}
    assert dormant_masks(scores, 0.1)["a"].tolist() == [True, True, False, False]
    assert dormant_masks(scores, 0)["a"].tolist() == [True, False, False, False]


@FAST
@given(
    seed=st.integers(0, 10_000),
    tau_low=st.floats(0, 2),
    gap=st.floats(0, 2),
)
def test_higher_tau_never_unmarks_a_neuron(seed, tau_low, gap):
    model, x = mlp(4, 10, 9, 2, seed=seed), inputs((4,), n=8, seed=seed)
    scores = dormant_scores(model, x)
    low, high = dormant_masks(scores, tau_low), dormant_masks(scores, tau_low + gap)
    for name in scores:
        assert not (low[name] & ~high[name]).any()
        assert torch.equal(low[name], scores[name] <= tau_low)


@pytest.mark.parametrize("tau", [-0.01, -1, math.nan, math.inf, -math.inf])
def test_invalid_tau_is_rejected(tau):
    scores = {"a": torch.ones(3)}
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        dormant_masks(scores, tau)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        dormant_summary(scores, taus=(0.0, tau))


@pytest.mark.parametrize("tau", ["0.1", None, True])
def test_non_numeric_tau_is_rejected(tau):
    with pytest.raises(ValueError, match="tau must be a number"):
        dormant_masks({"a": torch.ones(3)}, tau)


# --- summary ----------------------------------------------------------------------------------


@pytest.fixture
def summary():
    scores = {
        "narrow": torch.tensor([0.0, 0.05, 1.95, 2.0]),  # 4 neurons
        "wide": torch.cat([torch.zeros(2), torch.full((4,), 0.02), torch.full((10,), 1.5)]),
    }
    return dormant_summary(scores, taus=(0.0, 0.025, 0.1))


def test_summary_counts_and_fractions(summary):
    assert summary.taus == (0.0, 0.025, 0.1)
    assert summary.layers == ("narrow", "wide")
    assert summary.neurons == {"narrow": 4, "wide": 16}
    expected = {0.0: (1, 2), 0.025: (1, 6), 0.1: (2, 6)}
    for tau, (narrow, wide) in expected.items():
        assert summary.count(tau, "narrow") == narrow
        assert summary.count(tau, "wide") == wide
        assert summary.count(tau) == narrow + wide
        assert summary.fraction(tau, "narrow") == narrow / 4
        assert summary.fraction(tau, "wide") == wide / 16
        assert summary.fraction(tau) == pytest.approx((narrow + wide) / 20)
        assert summary.mean_layer_fraction(tau) == pytest.approx((narrow / 4 + wide / 16) / 2)


def test_total_fraction_differs_from_mean_layer_fraction(summary):
    # 0.1: 8/20 = 0.4 overall, but (2/4 + 6/16)/2 = 0.4375 per layer
    assert summary.fraction(0.1) == pytest.approx(0.4)
    assert summary.mean_layer_fraction(0.1) == pytest.approx(0.4375)


def test_summary_frame_has_one_row_per_tau_and_layer(summary):
    frame = summary.to_frame()
    assert list(frame.columns) == ["tau", "layer", "dormant", "neurons", "fraction"]
    assert len(frame) == 6
    row = frame[(frame.tau == 0.025) & (frame.layer == "wide")].iloc[0]
    assert (row.dormant, row.neurons, row.fraction) == (6, 16, 6 / 16)
    pd.testing.assert_series_equal(frame.fraction, frame.dormant / frame.neurons, check_names=False)


CORE = pathlib.Path(redo.core.__file__).parent


@pytest.mark.parametrize("module", sorted(path.stem for path in CORE.glob("*.py")))
def test_core_modules_import_without_pandas(module, monkeypatch):
    """The core needs torch and numpy only: each of its modules, run afresh while
    ``import pandas`` fails, imports."""
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(ImportError):
        import pandas  # noqa: F401
    name = f"_without_pandas_{module}"
    spec = importlib.util.spec_from_file_location(name, CORE / f"{module}.py")
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, fresh)  # dataclasses look their module up
    spec.loader.exec_module(fresh)


def test_pandas_is_imported_only_inside_to_frame(summary, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert summary.fraction(0.1) == pytest.approx(0.4)  # the counts need no pandas
    with pytest.raises(ImportError):
        summary.to_frame()
    monkeypatch.undo()
    assert len(summary.to_frame()) == 6


def test_summary_accepts_an_int_tau_key(summary):
    assert summary.count(0) == summary.count(0.0) == 3


def test_summary_of_a_real_network_matches_masks():
    model, x = mlp(5, 8, 7, 3), inputs((5,))
    kill(model, "0", [0, 1, 2])
    scores = dormant_scores(model, x)
    result = dormant_summary(scores)
    assert result.taus == (0.0, 0.025, 0.1)
    for tau in result.taus:
        for name in ("0", "2"):
            assert result.count(tau, name) == int((scores[name] <= tau).sum())
    assert result.count(0.0, "0") >= 3


def test_summary_unknown_tau_or_layer_raises_key_error(summary):
    with pytest.raises(KeyError, match=r"tau=0\.5 was not summarised"):
        summary.count(0.5)
    with pytest.raises(KeyError, match=r"tau=0\.5"):
        summary.fraction(0.5)
    with pytest.raises(KeyError, match="no layer 'conv'"):
        summary.count(0.0, "conv")
    with pytest.raises(KeyError):
        summary.fraction(0.0, "conv")


def test_summary_rejects_empty_inputs():
    with pytest.raises(ValueError, match="taus is empty"):
        dormant_summary({"a": torch.ones(2)}, taus=())
    with pytest.raises(ValueError, match="scores is empty"):
        dormant_summary({})


# --- errors and hooks -------------------------------------------------------------------------


def test_single_linear_or_non_sequential_model_is_rejected():
    with pytest.raises(ValueError, match="1 Linear/Conv2d layer"):
        dormant_scores(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(3, 4, 2)

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match=r"expected an nn\.Sequential.*got Net"):
        dormant_scores(Net(), torch.randn(4, 3))


@pytest.mark.parametrize("x", [torch.randn(0, 5), torch.tensor(1.0)], ids=["no-rows", "scalar"])
def test_empty_batch_is_rejected(x):
    with pytest.raises(ValueError, match="the batch is empty"):
        dormant_scores(mlp(5, 4, 2), x)


def test_non_tensor_batch_is_rejected():
    with pytest.raises(ValueError, match=r"x must be a torch\.Tensor"):
        dormant_scores(mlp(5, 4, 2), [[0.0] * 5])


@pytest.mark.parametrize(
    ("net", "x"),
    [("mlp", torch.randn(3, 7)), ("conv_flatten_linear", torch.randn(2, 1, 7, 7))],
)
def test_wrong_input_shape_names_the_shape(net, x):
    model = NETS[net][0]()
    shape = ", ".join(str(d) for d in x.shape)
    with pytest.raises(ValueError, match=rf"could not run on an input of shape \({shape}\)"):
        dormant_scores(model, x)


def all_forward_hooks(model):
    return [hook for module in model.modules() for hook in module._forward_hooks.values()]


@pytest.mark.parametrize("net", list(NETS))
def test_no_hooks_remain_after_scoring(net):
    build, shape = NETS[net]
    model = build()
    dormant_scores(model, inputs(shape))
    assert all_forward_hooks(model) == []


def test_no_hooks_remain_after_a_failing_forward_pass():
    model = conv_flatten_linear()
    with pytest.raises(ValueError):
        dormant_scores(model, torch.randn(2, 3, 9, 9))  # 9x9 inputs: Flatten gives 125 != 45
    assert all_forward_hooks(model) == []
    assert torch.isfinite(dormant_scores(model, inputs((3, 7, 7)))["5"]).all()


def test_user_hooks_are_kept_and_scoring_does_not_change_parameters():
    model, x = mlp(5, 8, 7, 3), inputs((5,))
    calls = []
    model[1].register_forward_hook(lambda *_: calls.append(1))
    before = [p.clone() for p in model.parameters()]
    dormant_scores(model, x)
    assert calls == [1]
    assert len(all_forward_hooks(model)) == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
