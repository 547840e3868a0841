import copy

import pytest
import torch
from torch import nn

from redo.core import gradient
from redo.core.dormant import dormant_scores, dormant_summary
from redo.core.gradient import gradient_scores
from redo.core.recycle import select_neurons
from redo.core.structure import hidden_layers
from tests.nets import NETS, inputs, mlp


def tiny_net():
    """Linear(2->3) -> ReLU -> Linear(3->1) in float64, with weights chosen for hand maths.

    On x = (1, -2): pre-activations W1 x = (1, 2, -1), so h = (1, 2, 0) (neuron 2 is a dead
    ReLU), and y = W2 h = 2*1 - 3*2 + 5*0 = -4.
    """
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[2.0, -3.0, 5.0]]))
        net[2].bias.zero_()
    return net


def tiny_loss(net):
    """L = (y - 0)^2 / 2 at x = (1, -2), so dL/dy = y = -4."""
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    return 0.5 * net(x).pow(2).sum()


def mse_loss(model, shape, seed=1):
    return model(inputs(shape, n=16, seed=seed)).pow(2).mean()


def reference_from_backward(model, shape, seed=1):
    """Scores from ``.grad`` after ``loss.backward()`` on a copy, in float64."""
    twin = copy.deepcopy(model)
    mse_loss(twin, shape, seed).backward()
    reference = {}
    for name in [layer.name for layer in hidden_layers(twin)]:
        g = twin.get_submodule(name).weight.grad.double().abs().flatten(start_dim=1).mean(dim=1)
        reference[name] = g / (g.mean() + 1e-9)
    return reference


def test_hand_computed_scores_on_a_tiny_relu_network():
    # dL/dh = dL/dy * W2 = -4 * (2, -3, 5) = (-8, 12, -20); the ReLU passes neurons 0 and 1
    # only, so dL/dpre = (-8, 12, 0) and dL/dW1 = dL/dpre (outer) x:
    #   row 0: -8 * (1, -2) = (-8, 16)   mean |.| = 12
    #   row 1: 12 * (1, -2) = (12, -24)  mean |.| = 18
    #   row 2:  0 * (1, -2) = (0, 0)     mean |.| = 0   (dead ReLU)
    # layer mean = (12 + 18 + 0) / 3 = 10, so s = (1.2, 1.8, 0) up to eps.
    net = tiny_net()
    scores = gradient_scores(net, tiny_loss(net))
    assert list(scores) == ["0"]
    expected = torch.tensor([12.0, 18.0, 0.0], dtype=torch.float64) / (10.0 + 1e-9)
    torch.testing.assert_close(scores["0"], expected, rtol=1e-12, atol=0.0)
    assert scores["0"][2].item() == 0.0


def test_hand_computed_scores_use_the_given_eps():
    net = tiny_net()
    scores = gradient_scores(net, tiny_loss(net), eps=10.0)
    expected = torch.tensor([12.0, 18.0, 0.0], dtype=torch.float64) / 20.0
    torch.testing.assert_close(scores["0"], expected, rtol=1e-12, atol=0.0)


def test_dead_neuron_is_gradient_dormant_at_tau_zero_and_feeds_the_summaries():
    net = tiny_net()
    scores = gradient_scores(net, tiny_loss(net))
    masks = select_neurons(scores, tau=0.0)
    assert masks["0"].tolist() == [False, False, True]
    summary = dormant_summary(scores, taus=(0.0, 1.5))
    assert summary.count(0.0, "0") == 1
    assert summary.count(1.5, "0") == 2  # 1.2 <= 1.5 < 1.8


@pytest.mark.parametrize("net_name", list(NETS))
def test_matches_grad_after_backward_on_a_copy(net_name):
    build, shape = NETS[net_name]
    model = build()
    scores = gradient_scores(model, mse_loss(model, shape))
    reference = reference_from_backward(model, shape)
    assert list(scores) == list(reference)
    for name in reference:
        assert scores[name].shape == (model.get_submodule(name).weight.shape[0],)
        torch.testing.assert_close(scores[name].double(), reference[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("net_name", list(NETS))
def test_layer_names_and_order_match_dormant_scores(net_name):
    build, shape = NETS[net_name]
    model = build()
    scores = gradient_scores(model, mse_loss(model, shape))
    activation = dormant_scores(model, inputs(shape))
    assert list(scores) == list(activation)
    assert all(scores[n].shape == activation[n].shape for n in scores)


def test_conv_network_scores_one_value_per_output_channel():
    build, shape = NETS["conv_flatten_linear"]
    model = build()
    scores = gradient_scores(model, mse_loss(model, shape))
    assert {name: s.numel() for name, s in scores.items()} == {"0": 4, "2": 5, "5": 6}
    assert all(not s.requires_grad for s in scores.values())


def test_grad_fields_are_left_untouched():
    build, shape = NETS["conv_flatten_linear"]
    model = build()
    mse_loss(model, shape, seed=7).backward()  # some earlier, accumulated gradients
    model[0].weight.grad = None  # ... and some parameters without any
    model[7].bias.grad = None
    before = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    gradient_scores(model, mse_loss(model, shape))
    for name, param in model.named_parameters():
        if before[name] is None:
            assert param.grad is None, name
        else:
            assert torch.equal(param.grad, before[name]), name


def test_grad_fields_stay_none_on_a_fresh_model():
    model = mlp(5, 8, 7, 3)
    gradient_scores(model, mse_loss(model, (5,)))
    assert all(p.grad is None for p in model.parameters())


def test_output_layer_is_never_scored():
    model = mlp(5, 8, 7, 3)
    scores = gradient_scores(model, mse_loss(model, (5,)))
    assert list(scores) == ["0", "2"]  # not "4", the output layer
    assert [s.numel() for s in scores.values()] == [8, 7]


# Exactly invariant only without eps; with the default eps = 1e-9 the scores move by about
# eps / (layer mean gradient), so the factors keep the gradients far above eps.
@pytest.mark.parametrize("factor", [1e3, 7.0, 0.25])
def test_scores_are_invariant_to_the_scale_of_the_loss(factor):
    build, shape = NETS["conv_flatten_linear"]
    model = build()
    scores = gradient_scores(model, mse_loss(model, shape))
    scaled = gradient_scores(model, factor * mse_loss(model, shape))
    for name in scores:
        torch.testing.assert_close(scaled[name], scores[name], rtol=1e-5, atol=1e-6)


def test_is_exported():
    assert gradient.__all__ == ["gradient_scores"]


@pytest.mark.parametrize("loss", [1.0, torch.ones(3, requires_grad=True)])
def test_rejects_a_loss_that_is_not_a_scalar_tensor(loss):
    with pytest.raises(ValueError, match="scalar"):
        gradient_scores(mlp(5, 8, 3), loss)


def test_rejects_a_per_sample_loss():
    model = mlp(5, 8, 3)
    with pytest.raises(ValueError, match=r"shape \(16,\).*loss\.mean\(\)"):
        gradient_scores(model, model(inputs((5,), n=16)).pow(2).mean(dim=1))


def test_rejects_a_loss_without_grad():
    model = mlp(5, 8, 3)
    with torch.no_grad():
        loss = mse_loss(model, (5,))
    with pytest.raises(ValueError, match="does not require grad"):
        gradient_scores(model, loss)


def test_names_the_hidden_layer_the_loss_does_not_reach():
    model = mlp(5, 8, 7, 3)
    h = model[1](model[0](inputs((5,)))).detach()  # cut the graph after layer "0"
    loss = model[2:](h).pow(2).mean()
    with pytest.raises(ValueError, match=r"hidden layer\(s\) \['0'\]"):
        gradient_scores(model, loss)


def test_rejects_a_loss_computed_with_a_copy_of_the_model():
    model = mlp(5, 8, 7, 3)
    loss = mse_loss(copy.deepcopy(model), (5,))
    with pytest.raises(ValueError, match=r"\['0', '2'\].*not a copy"):
        gradient_scores(model, loss)


def test_rejects_a_frozen_hidden_weight():
    model = mlp(5, 8, 7, 3)
    model[2].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['2'\] does not require grad"):
        gradient_scores(model, mse_loss(model, (5,)))


def test_rejects_a_model_hidden_layers_rejects():
    model = nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 3))  # no activation between
    with pytest.raises(ValueError, match="exactly one activation"):
        gradient_scores(model, mse_loss(model, (5,)))
