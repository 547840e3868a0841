import copy
import math

import pytest
import torch
from conftest import (
    NETS,
    conv_flatten_linear,
    inputs,
    kill,
    mlp,
    next_weight_layer,
    outgoing_columns,
    reference_scores,
    reset_regions,
    silenced,
    snapshot,
    weaken,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.recycle import init_like, outgoing_mask, recycle_dormant, reset_neurons
from redo.core.structure import hidden_layers

#: Neurons made dormant on purpose in each hidden layer, never all of a layer.
CHOSEN = {
    "mlp": {"0": [1, 3], "2": [0, 4]},
    "conv_conv": {"0": [1, 3], "2": [0, 2]},
    "conv_flatten_linear": {"0": [1, 3], "2": [0, 2], "5": [4]},
}
WIDTHS = {"mlp": [8, 7], "conv_conv": [4, 5], "conv_flatten_linear": [4, 5, 6]}


def draw_masks(data, net):
    """Hypothesis: any bool mask for every hidden layer of the net."""
    return {
        name: torch.tensor(data.draw(st.lists(st.booleans(), min_size=w, max_size=w)))
        for name, w in zip(CHOSEN[net], WIDTHS[net], strict=True)
    }


def gen(seed=12345):
    """A generator for the new weights; seeded unlike the models, whose init it would repeat."""
    return torch.Generator().manual_seed(seed)


# --- the network right after a reset ----------------------------------------------------------


@pytest.mark.parametrize("net", list(NETS))
def test_tau_zero_reset_leaves_the_function_exactly_unchanged(net):
    build, shape = NETS[net]
    model = build()
    for name, neurons in CHOSEN[net].items():
        kill(model, name, neurons)
    old = copy.deepcopy(model)
    report = recycle_dormant(model, None, inputs(shape), tau=0.0, generator=gen())
    assert report.total >= sum(len(n) for n in CHOSEN[net].values())
    x = inputs(shape, n=64, seed=7)  # inputs the scores never saw
    with torch.no_grad():
        assert torch.equal(model(x), old(x))


@pytest.mark.parametrize("net", list(NETS))
def test_reset_equals_old_network_with_recycled_neurons_silenced(net):
    build, shape = NETS[net]
    model, x, tau = build(), inputs(shape), 0.01
    for name, neurons in CHOSEN[net].items():
        weaken(model, name, neurons)
    expected = {name: s <= tau for name, s in reference_scores(model, x).items()}
    for name, neurons in CHOSEN[net].items():
        assert expected[name][neurons].all()
        assert not expected[name].all()
    old, reference = copy.deepcopy(model), silenced(model, expected)
    report = recycle_dormant(model, None, x, tau=tau, generator=gen())
    assert report.recycled == {name: int(m.sum()) for name, m in expected.items()}
    x_new = inputs(shape, n=64, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(model(x_new), reference(x_new), rtol=1e-5, atol=1e-6)
        # the weak neurons mattered: silencing them is visible at this tolerance
        assert not torch.allclose(old(x_new), reference(x_new), rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(net=st.sampled_from(list(NETS)), seed=st.integers(0, 10_000), data=st.data())
def test_any_masks_reset_equals_silencing_them(net, seed, data):
    build, shape = NETS[net]
    model = build(act=nn.LeakyReLU, seed=seed)
    masks = draw_masks(data, net)
    reference = silenced(model, masks)
    reset_neurons(model, None, masks, generator=gen(seed))
    x = inputs(shape, n=16, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6)


def test_outgoing_mask_after_flatten_covers_each_channels_contiguous_block():
    model = conv_flatten_linear()
    layer = hidden_layers(model)[1]
    mask = outgoing_mask(layer, torch.tensor([True, False, True, False, False]))
    assert mask.shape == model[5].weight.shape
    expected_columns = [j in range(0, 9) or j in range(18, 27) for j in range(45)]
    assert mask[0].tolist() == expected_columns
    assert (mask == mask[0]).all()


# --- which entries change ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(net=st.sampled_from(list(NETS)), data=st.data())
def test_only_recycled_rows_and_their_outgoing_columns_change(net, data):
    build, _ = NETS[net]
    model = build()
    target = copy.deepcopy(model)
    target_before = snapshot(target)
    masks = draw_masks(data, net)
    before = snapshot(model)
    reset_neurons(model, None, masks, generator=gen())
    after = snapshot(model)

    for name, region in reset_regions(model, masks).items():
        assert torch.equal(after[name][~region], before[name][~region]), name
    for layer_name, mask in masks.items():
        weight, bias = after[f"{layer_name}.weight"], after[f"{layer_name}.bias"]
        for neuron in mask.nonzero().flatten().tolist():
            assert (weight[neuron] != before[f"{layer_name}.weight"][neuron]).all()
            assert bias[neuron] == 0
        next_name = next_weight_layer(model, layer_name)
        columns = outgoing_columns(model, layer_name, mask.nonzero().flatten().tolist())
        redrawn = masks.get(next_name, torch.zeros(len(after[f"{next_name}.bias"]), dtype=bool))
        assert (after[f"{next_name}.weight"][~redrawn][:, columns] == 0).all()
    assert all(torch.equal(target_before[n], p) for n, p in target.named_parameters())


def test_output_layer_neurons_are_never_recycled():
    model = mlp(5, 8, 3)
    out_bias, out_weight = model[2].bias.clone(), model[2].weight.clone()
    reset_neurons(model, None, {"0": torch.ones(8, dtype=torch.bool)}, generator=gen())
    assert torch.equal(model[2].bias, out_bias)
    assert (model[2].weight == 0).all()  # every column read a recycled neuron
    assert (out_weight != 0).all()
    with pytest.raises(ValueError, match=r"unknown layers \['2'\]"):
        reset_neurons(model, None, {"2": torch.ones(3, dtype=torch.bool)})


def test_nested_sequential_is_reset_by_dotted_name():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()),
        nn.Sequential(nn.Linear(4 * 5 * 5, 6), nn.ReLU()),
        nn.Linear(6, 2),
    )
    kill(model, "0.0", [2])
    kill(model, "1.0", [0, 5])
    old = copy.deepcopy(model)
    report = recycle_dormant(model, None, inputs((3, 7, 7)), tau=0.0, generator=gen())
    assert report.recycled == {"0.0": 1, "1.0": 2}
    # channel 2 owns columns 50..74; rows 0 and 5 were redrawn as recycled neurons themselves
    assert (model[1][0].weight[1:5, 50:75] == 0).all()
    x = inputs((3, 7, 7), seed=9)
    with torch.no_grad():
        assert torch.equal(model(x), old(x))


def test_layers_missing_from_masks_are_untouched_and_report_counts():
    model = conv_flatten_linear()
    before = snapshot(model)
    report = reset_neurons(model, None, {"2": torch.tensor([True, False, True, True, False])})
    assert report.recycled == {"0": 0, "2": 3, "5": 0}
    assert report.neurons == {"0": 4, "2": 5, "5": 6}
    assert report.total == 3
    assert report.fraction == pytest.approx(3 / 15)
    for name in ("0.weight", "0.bias", "5.bias", "7.weight", "7.bias"):
        assert torch.equal(before[name], snapshot(model)[name])


def test_no_dormant_neuron_changes_nothing():
    model, x = mlp(5, 8, 7, 3, act=nn.Tanh), inputs((5,))
    before = snapshot(model)
    report = recycle_dormant(model, None, x, tau=0.0)
    assert report.total == 0
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("net", list(NETS))
def test_recycled_neurons_are_active_again(net):
    build, shape = NETS[net]
    model, x = build(), inputs(shape, n=64)
    for name, neurons in CHOSEN[net].items():
        kill(model, name, neurons)
    before = dormant_scores(model, x)
    recycle_dormant(model, None, x, tau=0.0, generator=gen())
    after = dormant_scores(model, x)
    for name, neurons in CHOSEN[net].items():
        assert (before[name][neurons] == 0).all()
        assert (after[name][neurons] > 0).all(), name


# --- initial distributions --------------------------------------------------------------------


def wide_linear(seed=0):
    return mlp(400, 300, 2, seed=seed)  # fan_in 400, fan_out 300


def wide_conv(seed=0):
    torch.manual_seed(seed)  # fan_in 16*3*3 = 144, fan_out 64*3*3 = 576
    return nn.Sequential(nn.Conv2d(16, 64, 3), nn.ReLU(), nn.Conv2d(64, 2, 1))


UNIFORM_BOUNDS = {
    "default": lambda fan_in, fan_out: 1 / math.sqrt(fan_in),
    "xavier_uniform": lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out)),
    "kaiming_uniform": lambda fan_in, fan_out: math.sqrt(6 / fan_in),
}


def reset_all(model, **kwargs):
    width = model[0].weight.shape[0]
    reset_neurons(model, None, {"0": torch.ones(width, dtype=torch.bool)}, **kwargs)
    return model[0].weight.detach()


@pytest.mark.parametrize("init", list(UNIFORM_BOUNDS))
@pytest.mark.parametrize(
    ("build", "fans"), [(wide_linear, (400, 300)), (wide_conv, (144, 576))], ids=["linear", "conv"]
)
def test_uniform_inits_fill_their_documented_bound(init, build, fans):
    bound = UNIFORM_BOUNDS[init](*fans)
    weight = reset_all(build(), init=init, generator=gen())
    assert weight.abs().max() <= bound
    assert weight.abs().max() > 0.99 * bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert abs(weight.mean().item()) < 0.02 * bound


@pytest.mark.parametrize("build", [wide_linear, wide_conv])
def test_default_init_draws_what_pytorch_draws_for_a_new_layer(build):
    fresh = build(seed=7)[0].weight.detach()  # PyTorch's init of the layer, global seed 7
    redrawn = reset_all(build(), generator=gen(7))
    torch.testing.assert_close(redrawn, fresh)


@pytest.mark.parametrize(("build", "fan_in"), [(wide_linear, 400), (wide_conv, 144)])
def test_lecun_normal_has_std_one_over_sqrt_fan_in_truncated_at_two_sigma(build, fan_in):
    weight = reset_all(build(), init="lecun_normal", generator=gen())
    std = 1 / math.sqrt(fan_in)
    assert weight.std().item() == pytest.approx(std, rel=0.03)
    assert abs(weight.mean().item()) < 0.02 * std
    cut = 2 * std / 0.87962566103423978  # truncation at 2 std of the untruncated normal
    assert weight.abs().max() <= cut * (1 + 1e-6)
    assert weight.abs().max() > 0.98 * cut


def test_bias_zero_and_redraw():
    model = wide_linear()
    mask = torch.zeros(300, dtype=torch.bool)
    mask[:200] = True
    old_bias = model[0].bias.detach().clone()
    reset_neurons(model, None, {"0": mask}, bias="zero")
    assert (model[0].bias[:200] == 0).all()
    assert torch.equal(model[0].bias[200:], old_bias[200:])

    reset_neurons(model, None, {"0": mask}, bias="redraw", generator=gen())
    redrawn = model[0].bias[:200]
    assert (redrawn.abs() <= 1 / math.sqrt(400)).all()
    assert (redrawn != 0).all()
    assert redrawn.std().item() == pytest.approx(1 / math.sqrt(400) / math.sqrt(3), rel=0.15)
    assert torch.equal(model[0].bias[200:], old_bias[200:])


@pytest.mark.parametrize("bias", ["zero", "redraw"])
@pytest.mark.parametrize("init", ["default", "xavier_uniform", "lecun_normal", "kaiming_uniform"])
def test_a_generator_makes_resets_reproducible(init, bias):
    masks = {"0": torch.tensor([True, False] * 4), "2": torch.tensor([False, True] * 3 + [True])}
    results = []
    for global_seed, seed in enumerate((3, 3, 4)):
        model = mlp(5, 8, 7, 3)
        torch.manual_seed(global_seed)  # the global RNG differs: only the generator may count
        reset_neurons(model, None, masks, init=init, bias=bias, generator=gen(seed))
        results.append(snapshot(model))
    first, same, other = results
    assert all(torch.equal(first[n], same[n]) for n in first)
    assert not torch.equal(first["0.weight"], other["0.weight"])
    if bias == "redraw":
        assert not torch.equal(first["0.bias"], other["0.bias"])


def test_init_like_keeps_shape_and_dtype():
    weight = torch.zeros(6, 3, 2, 2, dtype=torch.float64)
    for init in ("default", "xavier_uniform", "lecun_normal", "kaiming_uniform"):
        fresh = init_like(weight, init, generator=gen())
        assert fresh.shape == weight.shape and fresh.dtype == torch.float64
        assert (fresh != 0).all()


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "orthogonal"}, r"init must be one of \['default', .*got 'orthogonal'"),
        ({"bias": "one"}, r"bias must be one of \['zero', 'redraw'\], got 'one'"),
        ({"step_mode": "reset"}, r"step_mode must be one of .*got 'reset'"),
    ],
)
def test_unknown_options_are_rejected_before_anything_changes(kwargs, match):
    model = mlp(5, 8, 3)
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        reset_neurons(model, None, {"0": torch.ones(8, dtype=torch.bool)}, **kwargs)
    with pytest.raises(ValueError, match=match):
        recycle_dormant(model, None, inputs((5,)), tau=10.0, **kwargs)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_init_like_rejects_an_unknown_init():
    with pytest.raises(ValueError, match="init must be one of"):
        init_like(torch.zeros(3, 2), "normal")


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        (
            {"1": torch.ones(8, dtype=torch.bool)},
            r"unknown layers \['1'\]; hidden layers are \['0'",
        ),
        (
            {"0": torch.ones(7, dtype=torch.bool)},
            r"layer '0' must be a bool tensor of shape \(8,\)",
        ),
        ({"0": torch.ones(1, 8, dtype=torch.bool)}, r"got torch.bool of shape \(1, 8\)"),
        ({"0": torch.ones(8)}, r"bool tensor.*got torch.float32"),
        ({"0": torch.ones(8, dtype=torch.long)}, r"bool tensor.*got torch.int64"),
    ],
    ids=["unknown-layer", "short", "2-d", "float", "int"],
)
def test_bad_masks_are_rejected(masks, match):
    with pytest.raises(ValueError, match=match):
        reset_neurons(mlp(5, 8, 7, 3), None, masks)


def test_a_rejected_mask_leaves_the_model_unchanged():
    model = mlp(5, 8, 7, 3)
    before = snapshot(model)
    masks = {"0": torch.ones(8, dtype=torch.bool), "2": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="shape"):
        reset_neurons(model, None, masks)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("tau", [-0.5, math.nan, math.inf])
def test_recycle_rejects_invalid_tau(tau):
    model = mlp(5, 8, 3)
    before = snapshot(model)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        recycle_dormant(model, None, inputs((5,)), tau=tau)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_recycle_rejects_unscorable_models_and_batches():
    with pytest.raises(ValueError, match="1 Linear/Conv2d layer"):
        recycle_dormant(nn.Sequential(nn.Linear(5, 3)), None, inputs((5,)), tau=0.1)
    with pytest.raises(ValueError, match="the batch is empty"):
        recycle_dormant(mlp(5, 8, 3), None, torch.zeros(0, 5), tau=0.1)
    with pytest.raises(ValueError, match=r"shape \(4, 6\)"):
        recycle_dormant(mlp(5, 8, 3), None, torch.zeros(4, 6), tau=0.1)


def test_masks_from_dormant_masks_can_be_passed_to_reset_neurons():
    model, x = conv_flatten_linear(), inputs((3, 7, 7))
    kill(model, "2", [1])
    masks = dormant_masks(dormant_scores(model, x), 0.0)
    report = reset_neurons(model, None, masks, generator=gen())
    assert report.recycled["2"] >= 1
