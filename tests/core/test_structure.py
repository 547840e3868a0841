import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from redo.core.structure import hidden_layers, weight_layers
from tests.nets import conv_conv, conv_flatten_linear, mlp


def test_mlp_hidden_layers_are_every_linear_but_the_last():
    model = mlp(5, 8, 7, 3)
    layers = hidden_layers(model)
    assert [layer.name for layer in layers] == ["0", "2"]
    assert [layer.width for layer in layers] == [8, 7]
    assert [layer.layer for layer in layers] == [model[0], model[2]]
    assert [layer.activation for layer in layers] == [model[1], model[3]]
    assert [layer.next_layer for layer in layers] == [model[2], model[4]]
    assert [layer.columns_per_neuron for layer in layers] == [1, 1]
    assert not any(layer.is_conv for layer in layers)
    assert weight_layers(model)[-1] is model[4]


def test_conv_flatten_linear_neuron_owns_height_times_width_columns():
    model = conv_flatten_linear()
    layers = hidden_layers(model)
    assert [layer.name for layer in layers] == ["0", "2", "5"]
    assert [layer.is_conv for layer in layers] == [True, True, False]
    assert [layer.width for layer in layers] == [4, 5, 6]
    assert [layer.columns_per_neuron for layer in layers] == [1, 9, 1]
    assert layers[1].next_layer is model[5]
    assert weight_layers(model)[-1] is model[7]


def test_conv_conv_neuron_is_one_input_channel():
    layers = hidden_layers(conv_conv())
    assert [(layer.name, layer.width, layer.columns_per_neuron) for layer in layers] == [
        ("0", 4, 1),
        ("2", 5, 1),
    ]


def test_nested_sequential_gives_dotted_names_of_named_modules():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()),
        nn.Sequential(nn.Linear(8, 4), nn.Tanh()),
        nn.Linear(4, 2),
    )
    layers = hidden_layers(model)
    assert [layer.name for layer in layers] == ["0.0", "1.0"]
    modules = dict(model.named_modules())
    assert all(modules[layer.name] is layer.layer for layer in layers)
    assert layers[0].activation is model[0][1]
    assert layers[0].columns_per_neuron == 4


def test_parameter_free_pass_through_modules_are_allowed():
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 6), nn.Dropout(0.1), nn.ReLU(), nn.Identity(), nn.Linear(6, 2)
    )
    (layer,) = hidden_layers(model)
    assert layer.activation is model[3]
    assert layer.next_layer is model[5]


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=3, max_size=6))
def test_mlp_widths_property(widths):
    model = mlp(*widths)
    layers = hidden_layers(model)
    assert [layer.width for layer in layers] == widths[1:-1]
    assert [layer.name for layer in layers] == [str(2 * i) for i in range(len(widths) - 2)]
    assert [m.out_features for m in weight_layers(model)] == widths[1:]


# --- weight_layers: every Linear/Conv2d, hidden layers then the output layer -------------------


@pytest.mark.parametrize(
    ("build", "positions"),
    [
        (lambda: mlp(5, 8, 7, 3), [0, 2, 4]),
        (conv_conv, [0, 2, 4]),
        (conv_flatten_linear, [0, 2, 5, 7]),
    ],
    ids=["mlp", "conv_conv", "conv_flatten_linear"],
)
def test_weight_layers_lists_every_weight_layer_in_forward_order(build, positions):
    model = build()
    layers = weight_layers(model)
    assert len(layers) == len(positions)
    assert all(a is model[i] for a, i in zip(layers, positions, strict=True))
    # the hidden layers first, in hidden_layers' order, then the layer the last one feeds
    hidden = hidden_layers(model)
    assert all(a is h.layer for a, h in zip(layers, hidden, strict=False))
    assert layers[-1] is hidden[-1].next_layer
    assert all(h.layer is not layers[-1] for h in hidden)  # the output layer is not hidden
    # each layer feeds the next one
    assert [h.next_layer for h in hidden] == layers[1:]
    # and they are all of the model's parameters
    params = [p for layer in layers for p in layer.parameters()]
    assert len(params) == len(list(model.parameters()))
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}


def test_weight_layers_of_a_nested_sequential_with_pass_through_modules():
    model = nn.Sequential(
        nn.Identity(),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()),
        nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.1), nn.Tanh()),
        nn.Linear(4, 2),
    )
    assert weight_layers(model) == [model[1][0], model[2][0], model[3]]


@pytest.mark.parametrize(
    "model",
    [
        nn.Linear(3, 2),
        nn.Sequential(nn.Linear(3, 2)),
        nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)),
    ],
    ids=["not-sequential", "single-linear", "no-activation"],
)
def test_weight_layers_rejects_what_hidden_layers_rejects(model):
    with pytest.raises(ValueError):
        hidden_layers(model)
    with pytest.raises(ValueError):
        weight_layers(model)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Linear(3, 2), "expected an nn.Sequential.*got Linear"),
        (nn.Sequential(nn.Linear(3, 2)), "1 Linear/Conv2d layer"),
        (nn.Sequential(nn.ReLU()), "0 Linear/Conv2d layer"),
        (
            nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)),
            r"layer '0' must be followed by exactly one activation.*'1'.*nothing",
        ),
        (
            nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)),
            r"exactly one activation.*\['ReLU', 'Tanh'\]",
        ),
        (
            nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)),
            r"module '1' \(BatchNorm1d\) has parameters",
        ),
        (
            nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)),
            r"module '0' \(BatchNorm1d\) has parameters",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2)),
            "convolution '0' feeds dense layer '2' without nn.Flatten",
        ),
        (
            nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Conv2d(2, 2, 1)),
            "dense layer '0' feeds convolution '2'",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2)),
            "groups=1.*groups=2",
        ),
        (
            nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(6, 2)),
            "6 inputs, not a multiple of the 4 neurons",
        ),
    ],
    ids=[
        "not-sequential",
        "single-linear",
        "no-weight-layer",
        "no-activation",
        "two-activations",
        "batchnorm-between",
        "batchnorm-first",
        "conv-linear-no-flatten",
        "linear-feeds-conv",
        "grouped-conv",
        "width-mismatch",
    ],
)
def test_unsupported_structures_are_rejected_with_a_clear_message(model, match):
    with pytest.raises(ValueError, match=match):
        hidden_layers(model)
