import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import (
    INIT_CHOICES,
    LayerTensors,
    fresh_bias,
    init_like,
    outgoing_mask,
    random_mask_like,
    recycle_dormant,
    reset_neurons,
    reset_tensors,
    select_neurons,
)
from redo.core.structure import hidden_layers, weight_layers
from tests.nets import (
    NETS,
    conv_conv,
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


def chosen_masks(net):
    """CHOSEN[net] as bool masks: in every net, neurons of adjacent layers are both chosen."""
    return {
        name: torch.isin(torch.arange(width), torch.tensor(neurons))
        for (name, neurons), width in zip(CHOSEN[net].items(), WIDTHS[net], strict=True)
    }


def previous_layer(model, layer_name):
    """The hidden layer that feeds ``layer_name``, or None for the first one."""
    names = [layer.name for layer in hidden_layers(model)]
    index = names.index(layer_name) if layer_name in names else len(names)
    return names[index - 1] if index > 0 else None


def incoming_zeros(model, masks, layer_name):
    """Bool per input column (channel) of ``layer_name``'s weight: True where the column reads
    a recycled neuron of the previous hidden layer, so that a reset leaves it at 0."""
    width_in = model.get_submodule(layer_name).weight.shape[1]
    zero = torch.zeros(width_in, dtype=torch.bool)
    previous = previous_layer(model, layer_name)
    if previous is not None and previous in masks:
        neurons = masks[previous].nonzero().flatten().tolist()
        zero[outgoing_columns(model, previous, neurons)] = True
    return zero


def fan_in_bound(weight):
    """PyTorch's default init (the reset's default) draws from U(-b, b), b = 1/sqrt(fan_in)."""
    return 1 / math.sqrt(weight[0].numel())


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
@given(
    net=st.sampled_from(list(NETS)),
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-2, 1e2),
    data=st.data(),
)
def test_any_masks_reset_equals_silencing_them(net, seed, scale, data):
    """Under the reset rule, for any recycled neurons (adjacent layers' included) and any
    input, the network right after the reset is the old one with those neurons silenced."""
    build, shape = NETS[net]
    model = build(act=nn.LeakyReLU, seed=seed)
    masks = draw_masks(data, net)
    reference = silenced(model, masks)
    reset_neurons(model, None, masks, generator=gen(seed))
    x = scale * inputs(shape, n=16, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6 * scale)


@settings(max_examples=30, deadline=None)
@given(
    net=st.sampled_from(list(NETS)),
    seed=st.integers(0, 10_000),
    n=st.integers(1, 24),
    scale=st.floats(1e-2, 1e2),
)
def test_tau_zero_reset_is_exact_on_any_batch_it_scored(net, seed, n, scale):
    """At tau = 0 the recycled neurons output exactly 0 on every input of the batch, so on
    that batch (any batch: one input silences many ReLUs) the function is bit-identical."""
    build, shape = NETS[net]
    model = build(seed=seed)
    x = scale * inputs(shape, n=n, seed=seed)
    old = copy.deepcopy(model)
    silent = {name: s == 0 for name, s in reference_scores(model, x).items()}
    report = recycle_dormant(model, None, x, tau=0.0, generator=gen(seed))
    assert report.recycled == {name: int(mask.sum()) for name, mask in silent.items()}
    with torch.no_grad():
        assert torch.equal(model(x), old(x))


def test_outgoing_mask_after_flatten_covers_each_channels_contiguous_block():
    model = conv_flatten_linear()
    layer = hidden_layers(model)[1]
    neurons = torch.tensor([True, False, True, False, False])
    mask = outgoing_mask(neurons, layer.columns_per_neuron, layer.next_layer.weight)
    assert mask.shape == model[5].weight.shape
    expected_columns = [j in range(0, 9) or j in range(18, 27) for j in range(45)]
    assert mask[0].tolist() == expected_columns
    assert (mask == mask[0]).all()


def test_outgoing_mask_of_a_convolution_covers_whole_input_channels():
    model = conv_conv()
    layer = hidden_layers(model)[0]  # 4 channels read by conv "2" (5, 4, 3, 3)
    mask = outgoing_mask(torch.tensor([False, True, False, True]), 1, layer.next_layer.weight)
    assert mask.shape == (5, 4, 3, 3)
    assert mask[:, [1, 3]].all() and not mask[:, [0, 2]].any()


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
        zero = incoming_zeros(model, masks, layer_name)  # reads a recycled neuron: 0
        for neuron in mask.nonzero().flatten().tolist():
            row, old_row = weight[neuron], before[f"{layer_name}.weight"][neuron]
            assert (row[~zero] != old_row[~zero]).all()  # fresh
            assert (row[~zero].abs() <= fan_in_bound(weight)).all()
            assert (row[zero] == 0).all()
            assert bias[neuron] == 0
        next_name = next_weight_layer(model, layer_name)
        columns = outgoing_columns(model, layer_name, mask.nonzero().flatten().tolist())
        assert (after[f"{next_name}.weight"][:, columns] == 0).all()  # every row, redrawn too
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
    # channel 2 owns columns 50..74: zero in every row, also rows 0 and 5, which were redrawn
    # as recycled neurons themselves
    assert (model[1][0].weight[:, 50:75] == 0).all()
    assert (model[1][0].weight[[0, 5], :50] != old[1][0].weight[[0, 5], :50]).all()
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
    assert report.masks["2"].tolist() == [True, False, True, True, False]
    assert not report.masks["0"].any() and report.masks["5"].shape == (6,)
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


# --- the rule on tensors: incoming weights first, then outgoing ones, in any layer order -------


def reset_listed(model, masks, order, **kwargs):
    """reset_tensors on ``model``'s parameters (in place, so without autograd)."""
    with torch.no_grad():
        return reset_tensors(*listed(model, masks, order), **kwargs)


def listed(model, masks, order):
    """(LayerTensors, mask) of every hidden layer, listed in ``order``."""
    pairs = [
        (LayerTensors.of(layer), masks.get(layer.name, torch.zeros(layer.width, dtype=torch.bool)))
        for layer in hidden_layers(model)
    ]
    if order == "reversed":
        pairs.reverse()
    elif order == "rotated":  # 1, 2, ..., 0: for three layers neither forward nor reversed
        pairs = pairs[1:] + pairs[:1]
    return [tensors for tensors, _ in pairs], [mask for _, mask in pairs]


def deterministic_init(weight, init, generator=None):
    """Stands in for init_like: 'fresh' values that depend on the tensor's shape only, so that
    runs whose random draws differ (layers listed in another order) can be compared exactly."""
    del init, generator
    values = torch.arange(1, weight.numel() + 1, dtype=weight.dtype).view_as(weight)
    return 0.5 + values / weight.numel()  # in (0.5, 1.5]: never 0, never an old weight


ORDERS = ["forward", "reversed", "rotated"]


@pytest.mark.parametrize("net", list(NETS))
def test_weight_between_two_recycled_neurons_ends_at_zero_in_any_layer_order(net):
    """Neuron i of layer l and neuron j of layer l+1 recycled: W[l+1][j, i] is an incoming
    weight of j and an outgoing weight of i, and ends at 0; the rest of j's row is fresh."""
    build, _ = NETS[net]
    masks = chosen_masks(net)
    for order in ORDERS:
        model = build()
        before = snapshot(model)
        reset_listed(model, masks, order, generator=gen())
        after = snapshot(model)
        for layer_name, mask in masks.items():
            weight, old = after[f"{layer_name}.weight"], before[f"{layer_name}.weight"]
            zero = incoming_zeros(model, masks, layer_name)
            assert zero.any() == (previous_layer(model, layer_name) is not None)
            for j in mask.nonzero().flatten().tolist():
                assert (weight[j][zero] == 0).all(), (order, layer_name, j)  # W[l+1][j, i]
                fresh = weight[j][~zero]
                assert (fresh != old[j][~zero]).all(), (order, layer_name, j)
                assert (fresh != 0).all() and (fresh.abs() <= fan_in_bound(weight)).all()
            assert (after[f"{layer_name}.bias"][mask] == 0).all()
        regions = reset_regions(model, masks)
        for name, region in regions.items():  # nothing outside the reset's regions moved
            assert torch.equal(after[name][~region], before[name][~region]), (order, name)


@pytest.mark.parametrize("net", list(NETS))
def test_reset_tensors_gives_the_same_result_whichever_order_the_layers_are_listed(
    net, monkeypatch
):
    """With fresh values that do not depend on the order of the random draws, the reset of
    the layers listed forward, backward or rotated is bit-identical, and it is the rule:
    recycled rows fresh, then every outgoing column of a recycled neuron 0."""
    monkeypatch.setattr("redo.core.recycle.init_like", deterministic_init)
    build, _ = NETS[net]
    masks = chosen_masks(net)
    results = {}
    for order in ORDERS:
        model = build()
        entries = reset_listed(model, masks, order)
        results[order] = snapshot(model)
        changed = {id(tensor): mask for tensor, mask in entries.items()}
        for name, region in reset_regions(model, masks).items():  # the changed entries, exactly
            tensor = model.get_parameter(name)
            assert torch.equal(changed.get(id(tensor), torch.zeros_like(region)), region), name
    model, expected = build(), snapshot(build())
    for layer_name, mask in masks.items():  # the rule written out: rows first ...
        weight = expected[f"{layer_name}.weight"]
        weight[mask] = deterministic_init(weight, "default")[mask]
        expected[f"{layer_name}.bias"][mask] = 0
    for layer_name, mask in masks.items():  # ... then columns
        next_name = next_weight_layer(model, layer_name)
        columns = outgoing_columns(model, layer_name, mask.nonzero().flatten().tolist())
        expected[f"{next_name}.weight"][:, columns] = 0
    for order, result in results.items():
        for name in expected:
            assert torch.equal(result[name], expected[name]), (order, name)


def test_a_layer_with_nothing_to_recycle_draws_no_random_numbers():
    masks = {"0": torch.zeros(4, dtype=torch.bool), "2": torch.tensor([1, 0, 1, 0, 0]).bool()}
    alone, listed_too = conv_flatten_linear(), conv_flatten_linear()
    with torch.no_grad():
        reset_tensors([LayerTensors.of(hidden_layers(alone)[1])], [masks["2"]], generator=gen())
    reset_listed(listed_too, masks, "forward", generator=gen())
    assert all(
        torch.equal(a, b)
        for a, b in zip(snapshot(alone).values(), snapshot(listed_too).values(), strict=True)
    )

    generator = gen()
    state = generator.get_state()
    model = conv_flatten_linear()
    before = snapshot(model)
    assert reset_listed(model, {}, "forward", generator=generator) == {}
    assert torch.equal(generator.get_state(), state)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_fresh_bias_is_zero_or_drawn_from_the_default_bias_init():
    weight, bias = torch.empty(300, 400), torch.ones(300)
    assert torch.equal(fresh_bias(weight, bias, "zero", gen()), torch.zeros(300))
    drawn = fresh_bias(weight, bias, "redraw", gen())
    assert drawn.shape == bias.shape and (drawn != 0).all()
    assert (drawn.abs() <= 1 / math.sqrt(400)).all()
    assert drawn.abs().max() > 0.95 / math.sqrt(400)
    assert torch.equal(drawn, fresh_bias(weight, bias, "redraw", gen()))
    assert (bias == 1).all()  # a new tensor, the layer's own is not touched


# --- which neurons: dormant, random, all --------------------------------------------------------


#: Scores of three layers: 2 of 8 dormant at tau 0.1, none of 5, all 3.
SCORES = {
    "a": torch.tensor([1.0, 0.05, 2.0, 1.5, 0.0, 1.2, 1.1, 1.0]),
    "b": torch.tensor([1.0, 0.5, 2.0, 0.2, 1.3]),
    "c": torch.tensor([0.0, 0.1, 0.05]),
}


def test_select_neurons_dormant_is_the_default_and_equals_dormant_masks():
    for tau in (0.0, 0.1, 0.6):
        masks = select_neurons(SCORES, tau)
        assert all(torch.equal(masks[n], m) for n, m in dormant_masks(SCORES, tau).items())
        assert all(
            torch.equal(masks[n], m) for n, m in select_neurons(SCORES, tau, "dormant").items()
        )
    assert select_neurons(SCORES, 0.1)["a"].tolist() == [0, 1, 0, 0, 1, 0, 0, 0]


def test_random_selection_recycles_as_many_neurons_per_layer_at_seeded_positions():
    dormant = select_neurons(SCORES, 0.1, "dormant")
    first = select_neurons(SCORES, 0.1, "random", gen(0))
    assert list(first) == list(dormant)
    for name, mask in first.items():
        assert mask.dtype == torch.bool and mask.shape == dormant[name].shape
        assert int(mask.sum()) == int(dormant[name].sum()), name
    assert not first["b"].any() and first["c"].all()  # none of b, all of c: no choice there
    # the generator alone decides the positions
    torch.manual_seed(99)
    again = select_neurons(SCORES, 0.1, "random", gen(0))
    assert all(torch.equal(first[n], again[n]) for n in first)
    # where they can, they differ from the dormant ones, and from one seed to another
    draws = [select_neurons(SCORES, 0.1, "random", gen(seed))["a"] for seed in range(200)]
    assert not torch.equal(draws[0], dormant["a"])
    assert sum(torch.equal(d, dormant["a"]) for d in draws) < 20  # 1 in C(8, 2) = 28 expected
    assert len({tuple(d.tolist()) for d in draws}) > 10
    # uniformly at random: each of the 8 positions is chosen about 2/8 of the time
    frequency = torch.stack(draws).float().mean(dim=0)
    assert ((frequency > 0.25 - 0.1) & (frequency < 0.25 + 0.1)).all(), frequency


def test_random_mask_like_keeps_the_count_and_leaves_the_mask():
    mask = torch.tensor([True, False, True, True, False, False])
    random_mask = random_mask_like(mask, gen(3))
    assert random_mask.dtype == torch.bool and int(random_mask.sum()) == 3
    assert torch.equal(random_mask, random_mask_like(mask, gen(3)))
    assert torch.equal(mask, torch.tensor([True, False, True, True, False, False]))
    assert not random_mask_like(torch.zeros(4, dtype=torch.bool), gen()).any()
    assert random_mask_like(torch.ones(4, dtype=torch.bool), gen()).all()


def test_all_selection_selects_every_neuron_whatever_tau():
    for tau in (0.0, 10.0):
        masks = select_neurons(SCORES, tau, "all")
        assert all(mask.all() and mask.shape == SCORES[n].shape for n, mask in masks.items())


def test_unknown_selection_is_rejected_before_anything_changes():
    with pytest.raises(
        ValueError, match=r"selection must be one of \['dormant', 'random', 'all'\]"
    ):
        select_neurons(SCORES, 0.1, "weakest")
    model = mlp(5, 8, 3)
    before = snapshot(model)
    with pytest.raises(ValueError, match="selection must be one of"):
        recycle_dormant(model, None, inputs((5,)), tau=0.1, selection="weakest")
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_recycle_dormant_random_recycles_the_seeded_random_neurons():
    model, x = conv_flatten_linear(), inputs((3, 7, 7))
    kill(model, "0", [1])
    kill(model, "5", [2, 4])
    old = copy.deepcopy(model)
    scores = dormant_scores(model, x)
    dormant = dormant_masks(scores, 0.0)
    chosen = select_neurons(scores, 0.0, "random", gen())  # the generator's first draws
    assert any(not torch.equal(chosen[n], dormant[n]) for n in chosen)
    report = recycle_dormant(model, None, x, tau=0.0, selection="random", generator=gen())
    assert report.recycled == {name: int(mask.sum()) for name, mask in dormant.items()}
    # exactly the chosen neurons were recycled: their rows are new, the others' are not
    for name, mask in chosen.items():  # (leaving out columns that read a recycled neuron)
        keep = ~incoming_zeros(model, chosen, name)
        new = model.get_submodule(name).weight[:, keep] != old.get_submodule(name).weight[:, keep]
        assert torch.equal(new.flatten(1).any(dim=1), mask), name
        assert torch.equal(new.flatten(1).all(dim=1), mask), name
    regions = reset_regions(model, chosen)
    for name, p in model.named_parameters():
        unchanged = ~regions[name]
        assert torch.equal(p[unchanged], old.get_parameter(name)[unchanged]), name
    with torch.no_grad():  # and the network is the old one without them
        x_new = inputs((3, 7, 7), seed=5)
        torch.testing.assert_close(model(x_new), silenced(old, chosen)(x_new))
    twin = copy.deepcopy(old)  # reproducible
    recycle_dormant(twin, None, x, tau=0.0, selection="random", generator=gen())
    assert all(
        torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True)
    )


def trained_with(optimizer_class, model, steps=3, **kwargs):
    optimizer = optimizer_class(model.parameters(), lr=1e-2, **kwargs)
    x = inputs((3, 7, 7), n=16)
    target = torch.randn(16, 3, generator=gen(0))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("bias", ["zero", "redraw"])
@pytest.mark.parametrize(
    ("optimizer_class", "kwargs"),
    [(torch.optim.Adam, {}), (torch.optim.Adam, {"amsgrad": True}), (ElementwiseAdam, {})],
    ids=["Adam", "Adam-amsgrad", "ElementwiseAdam"],
)
def test_all_selection_redraws_every_layer_and_clears_every_moment(optimizer_class, kwargs, bias):
    model, x = conv_flatten_linear(act=nn.Tanh), inputs((3, 7, 7))  # tanh: nothing dormant
    optimizer = trained_with(optimizer_class, model, **kwargs)
    before = snapshot(model)
    steps = {p: optimizer.state[p]["step"].clone() for p in model.parameters()}
    report = recycle_dormant(
        model, optimizer, x, tau=0.0, selection="all", bias=bias, generator=gen()
    )
    assert report.recycled == report.neurons == {"0": 4, "2": 5, "5": 6}
    assert report.fraction == 1.0
    layers = weight_layers(model)
    assert layers[-1] is model[7]  # the output layer too
    for layer in layers:
        weight, name = layer.weight, next(n for n, m in model.named_modules() if m is layer)
        assert (weight != before[f"{name}.weight"]).all(), name  # every weight redrawn,
        assert (weight != 0).all(), name  # none zeroed as an outgoing weight
        assert (weight.abs() <= fan_in_bound(weight)).all(), name
        if bias == "zero":
            assert (layer.bias == 0).all(), name
        else:
            assert (layer.bias != before[f"{name}.bias"]).all() and (layer.bias != 0).all()
            assert (layer.bias.abs() <= fan_in_bound(weight)).all(), name
    for p in model.parameters():
        state = optimizer.state[p]
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in state:
                assert (state[key] == 0).all(), key
        assert torch.equal(state["step"], steps[p])  # the default step mode: counts kept


def test_whole_network_reset_is_reproducible_and_differs_between_seeds():
    results = []
    for seed in (3, 3, 4):
        model = mlp(5, 8, 7, 3)
        masks = {"0": torch.ones(8, dtype=torch.bool), "2": torch.ones(7, dtype=torch.bool)}
        reset_neurons(model, None, masks, whole_network=True, bias="redraw", generator=gen(seed))
        results.append(snapshot(model))
    first, same, other = results
    assert all(torch.equal(first[n], same[n]) for n in first)
    assert all(not torch.equal(first[n], other[n]) for n in first)


def all_but(width, neuron):
    mask = torch.ones(width, dtype=torch.bool)
    mask[neuron] = False
    return mask


@pytest.mark.parametrize(
    "masks",
    [
        {},
        {"0": torch.ones(8, dtype=torch.bool)},  # layer "2" missing: none of its neurons
        {"0": all_but(8, 3), "2": torch.ones(7, dtype=torch.bool)},
    ],
    ids=["empty", "a-layer-missing", "a-neuron-missing"],
)
def test_whole_network_reset_needs_masks_that_select_every_neuron(masks):
    """Else the report would count fewer neurons than the reset re-initialised."""
    model = mlp(5, 8, 7, 3)
    before = snapshot(model)
    with pytest.raises(ValueError, match="masks must select all of them"):
        reset_neurons(model, None, masks, whole_network=True)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


# --- the report ---------------------------------------------------------------------------------


@pytest.mark.parametrize("selection", ["dormant", "random", "all"])
@pytest.mark.parametrize("net", list(NETS))
def test_report_scores_are_the_scores_of_the_model_before_the_reset(net, selection):
    build, shape = NETS[net]
    model, x = build(), inputs(shape)
    for name, neurons in CHOSEN[net].items():
        kill(model, name, neurons)
    expected = dormant_scores(copy.deepcopy(model), x)
    report = recycle_dormant(model, None, x, tau=0.0, selection=selection, generator=gen())
    assert list(report.scores) == list(expected)
    for name, scores in expected.items():
        assert torch.equal(report.scores[name], scores), name
        assert (scores[CHOSEN[net][name]] == 0).all()  # what chose the neurons ...
    after = dormant_scores(model, x)
    assert any(not torch.equal(after[n], expected[n]) for n in expected)  # ... not what follows
    assert report.recycled == {
        name: int((s <= 0.0).sum()) if selection != "all" else s.numel()
        for name, s in expected.items()
    }


def test_reset_neurons_reports_no_scores_unless_given():
    model = mlp(5, 8, 7, 3)
    masks = {"0": torch.tensor([True] + [False] * 7)}
    assert reset_neurons(model, None, masks).scores == {}
    scores = {"0": torch.ones(8), "2": torch.ones(7)}
    reported = reset_neurons(model, None, masks, scores=scores).scores
    assert list(reported) == ["0", "2"]
    assert all(torch.equal(reported[n], scores[n]) for n in scores)


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


@pytest.mark.parametrize("build", [wide_linear, wide_conv])
def test_scaled_init_gives_recycled_neurons_the_mean_norm_of_the_others(build):
    model = build()
    with torch.no_grad():
        model[0].weight.mul_(
            torch.linspace(1, 10, model[0].weight.shape[0]).view(
                -1, *[1] * (model[0].weight.dim() - 1)
            )
        )
    width = model[0].weight.shape[0]
    mask = torch.zeros(width, dtype=torch.bool)
    mask[::3] = True
    norms = model[0].weight.detach().flatten(1).norm(dim=1)
    target = norms[~mask].mean()
    reset_neurons(model, None, {"0": mask}, init="scaled", generator=gen(5))
    after = model[0].weight.detach().flatten(1)
    torch.testing.assert_close(after[mask].norm(dim=1), target.expand(int(mask.sum())))
    torch.testing.assert_close(after[~mask].norm(dim=1), norms[~mask])
    # the direction is the default draw's: scaling changes the norm, not the weights' pattern
    plain = build()
    reset_neurons(plain, None, {"0": mask}, generator=gen(5))
    drawn = plain[0].weight.detach().flatten(1)[mask]
    cosine = (drawn * after[mask]).sum(1) / (drawn.norm(dim=1) * after[mask].norm(dim=1))
    torch.testing.assert_close(cosine, torch.ones_like(cosine))


def test_scaled_init_of_a_fully_recycled_layer_is_the_default_draw():
    model, plain = wide_linear(), wide_linear()
    assert torch.equal(
        reset_all(model, init="scaled", generator=gen(2)), reset_all(plain, generator=gen(2))
    )


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
@pytest.mark.parametrize("init", INIT_CHOICES)
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
    for init in INIT_CHOICES:
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
        ({"step_mode": "auto"}, r"step_mode must be one of \['keep', 'elementwise', 'zero_all'\]"),
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
