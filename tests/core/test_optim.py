import copy
import functools
import random

import pytest
import torch
from conftest import conv_flatten_linear, inputs, mlp, reset_regions
from torch import nn

from redo.core.optim import (
    ElementwiseAdam,
    _power,
    adam_update_,
    corrections_from_step,
    has_elementwise_step,
    restart_clock_,
    widen_step,
)
from redo.core.recycle import reset_neurons, reset_optimizer_entries

#: Recycled neurons for conv_flatten_linear; layer "5" has none, so its own rows stay.
MASKS = {
    "0": torch.tensor([False, True, False, False]),
    "2": torch.tensor([True, False, True, False, False]),
    "5": torch.zeros(6, dtype=torch.bool),
}
OPTIMIZERS = {
    "Adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "Adam-amsgrad": lambda params: torch.optim.Adam(params, lr=1e-2, amsgrad=True),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "ElementwiseAdam": lambda params: ElementwiseAdam(params, lr=1e-2),
}
MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def train(model, optimizer, steps=5, seed=0):
    x = inputs((3, 7, 7), n=16, seed=seed)
    target = torch.randn(16, 3, generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()


def state_by_name(model, optimizer):
    return {
        name: {k: v.clone() for k, v in optimizer.state[p].items()}
        for name, p in model.named_parameters()
    }


def trained(optimizer_name, build_optimizer=None):
    model = conv_flatten_linear()
    optimizer = (build_optimizer or OPTIMIZERS[optimizer_name])(model.parameters())
    train(model, optimizer)
    return model, optimizer


def assert_moments_reset_only_in_regions(model, before, after, masks=MASKS):
    for name, region in reset_regions(model, masks).items():
        for key in MOMENTS:
            if key not in before[name]:
                continue
            if region.any():  # there was a moment to reset
                assert (before[name][key][region] != 0).any(), (name, key)
            assert (after[name][key][region] == 0).all(), (name, key)
            assert torch.equal(after[name][key][~region], before[name][key][~region]), (name, key)


# --- moments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_moments_of_reset_entries_are_zeroed_and_others_bit_identical(optimizer_name):
    model, optimizer = trained(optimizer_name)
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS)
    assert_moments_reset_only_in_regions(model, before, state_by_name(model, optimizer))


def test_parameters_in_shuffled_order_and_several_groups_get_their_own_entries_reset():
    model = conv_flatten_linear()
    params = list(model.parameters())
    random.Random(0).shuffle(params)
    optimizer = torch.optim.Adam(
        [{"params": params[:3], "lr": 1e-3}, {"params": params[3:]}], lr=1e-2
    )
    train(model, optimizer)
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS)
    assert_moments_reset_only_in_regions(model, before, state_by_name(model, optimizer))


def test_optimizer_none_resets_the_same_weights():
    with_optimizer, optimizer = trained("Adam")
    without = copy.deepcopy(with_optimizer)
    reset_neurons(with_optimizer, optimizer, MASKS, generator=torch.Generator().manual_seed(1))
    reset_neurons(without, None, MASKS, generator=torch.Generator().manual_seed(1))
    for (name, a), b in zip(with_optimizer.named_parameters(), without.parameters(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("optimizer_name", ["Adam", "ElementwiseAdam"])
def test_optimizer_that_has_not_stepped_is_fine(optimizer_name):
    model = conv_flatten_linear()
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    reset_neurons(model, optimizer, MASKS)
    assert len(optimizer.state) == 0
    train(model, optimizer, steps=1)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --- step counts ------------------------------------------------------------------------------


def test_auto_step_mode_is_elementwise_for_elementwise_adam():
    model, optimizer = trained("ElementwiseAdam")
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS)  # step_mode="auto"
    after = state_by_name(model, optimizer)
    for name, region in reset_regions(model, MASKS).items():
        assert before[name]["step"].shape == (1,) * region.dim()  # compact until a reset
        assert (before[name]["step"] == 5).all()
        if region.any():
            assert after[name]["step"].shape == region.shape, name  # the reset widened it
        step = after[name]["step"].expand_as(region)
        assert (step[region] == 0).all(), name
        assert (step[~region] == 5).all(), name
    assert has_elementwise_step(optimizer)


@pytest.mark.parametrize(
    ("optimizer_name", "step_mode"),
    [("Adam", "auto"), ("AdamW", "auto"), ("Adam", "keep"), ("ElementwiseAdam", "keep")],
)
def test_keep_leaves_every_step_count(optimizer_name, step_mode):
    model, optimizer = trained(optimizer_name)
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS, step_mode=step_mode)
    after = state_by_name(model, optimizer)
    for name in before:
        assert torch.equal(after[name]["step"], before[name]["step"]), name
        assert (after[name]["step"] == 5).all()
    assert_moments_reset_only_in_regions(model, before, after)


@pytest.mark.parametrize("optimizer_name", ["Adam", "AdamW", "ElementwiseAdam"])
def test_zero_all_zeroes_every_step_count(optimizer_name):
    model, optimizer = trained(optimizer_name)
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS, step_mode="zero_all")
    after = state_by_name(model, optimizer)
    for name in before:  # also "5.*" (no dormant neuron) and the output layer "7.*"
        assert (before[name]["step"] == 5).all()
        assert (after[name]["step"] == 0).all(), name
    assert_moments_reset_only_in_regions(model, before, after)


def test_zero_all_without_any_recycled_neuron_keeps_steps():
    model, optimizer = trained("Adam")
    none = {name: torch.zeros_like(mask) for name, mask in MASKS.items()}
    reset_neurons(model, optimizer, none, step_mode="zero_all")
    assert all(optimizer.state[p]["step"] == 5 for p in model.parameters())


@pytest.mark.parametrize("optimizer_name", ["Adam", "AdamW"])
def test_elementwise_step_mode_with_torch_adam_is_rejected(optimizer_name):
    model, optimizer = trained(optimizer_name)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"step_mode='elementwise'.*ElementwiseAdam"):
        reset_neurons(model, optimizer, MASKS, step_mode="elementwise")
    with pytest.raises(ValueError, match="ElementwiseAdam"):
        reset_optimizer_entries(optimizer, model[0].weight, MASKS["0"], step_mode="elementwise")
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_reset_optimizer_entries_on_one_parameter():
    model, optimizer = trained("ElementwiseAdam")
    bias = model[2].bias
    before = {k: v.expand_as(bias).clone() for k, v in optimizer.state[bias].items()}
    reset_optimizer_entries(optimizer, bias, MASKS["2"])
    state = optimizer.state[bias]
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert (state[key][MASKS["2"]] == 0).all()
        assert torch.equal(state[key][~MASKS["2"]], before[key][~MASKS["2"]])


# --- ElementwiseAdam --------------------------------------------------------------------------


def test_widen_step_copies_a_compact_count_and_keeps_a_wide_one():
    compact = torch.full((1, 1), 7.0)
    wide = widen_step(compact, torch.Size([3, 4]))
    assert wide.shape == (3, 4) and (wide == 7).all()
    wide[0, 0] = 0  # a real copy, not an expanded view of one element
    assert compact.item() == 7 and wide[1, 1] == 7
    assert widen_step(wide, torch.Size([3, 4])) is wide


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_power_through_exp_equals_pow(beta):
    steps = torch.tensor([0.0, 1.0, 2.0, 10.0, 1000.0, 1e6])
    expected = torch.tensor([beta**t for t in steps.tolist()], dtype=torch.float64)
    torch.testing.assert_close(_power(beta, steps).double(), expected, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("foreach", [False, None], ids=["foreach=False", "default"])
def test_elementwise_adam_equals_torch_adam_without_resets(foreach, weight_decay):
    ours, theirs = mlp(6, 16, 12, 3), mlp(6, 16, 12, 3)
    kwargs = {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": weight_decay}
    opt_ours = ElementwiseAdam(ours.parameters(), **kwargs)
    opt_theirs = torch.optim.Adam(theirs.parameters(), foreach=foreach, **kwargs)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, target = torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)
        for model, optimizer in ((ours, opt_ours), (theirs, opt_theirs)):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), target).backward()
            optimizer.step()
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt_ours.state[a][key], opt_theirs.state[b][key])
        assert (opt_ours.state[a]["step"] == opt_theirs.state[b]["step"]).all()


def test_first_update_after_a_reset_is_a_fresh_adam_step():
    """The point of per-element steps: recycled entries restart Adam (first step ~ lr), while
    the other entries continue with their own moments and step counts."""
    lr, (beta1, beta2), eps = 1e-2, (0.9, 0.999), 1e-8
    model, optimizer = trained("ElementwiseAdam")
    reset_neurons(model, optimizer, MASKS)
    regions = reset_regions(model, MASKS)
    state = state_by_name(model, optimizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    g = torch.Generator().manual_seed(3)
    grads = {name: torch.randn(p.shape, generator=g) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = grads[name].clone()
    optimizer.step()

    for name, p in model.named_parameters():
        region, grad = regions[name], grads[name]
        fresh = before[name].clone().requires_grad_()
        fresh_adam = torch.optim.Adam([fresh], lr=lr, betas=(beta1, beta2), eps=eps)
        fresh.grad = grad.clone()
        fresh_adam.step()
        torch.testing.assert_close(p.detach()[region], fresh.detach()[region])
        delta = (p.detach() - before[name])[region]
        torch.testing.assert_close(delta.abs(), torch.full_like(delta, lr), rtol=1e-3, atol=0)

        # the others: Adam's update from their own state, written out in float64
        m = beta1 * state[name]["exp_avg"].double() + (1 - beta1) * grad.double()
        v = beta2 * state[name]["exp_avg_sq"].double() + (1 - beta2) * grad.double() ** 2
        t = state[name]["step"].double() + 1
        update = lr * m / (1 - beta1**t) / ((v / (1 - beta2**t)).sqrt() + eps)
        expected = before[name].double() - update
        torch.testing.assert_close(p.detach().double()[~region], expected[~region])


def test_torch_adam_shrinks_the_first_update_of_reset_entries():
    """Contrast: one step count per tensor gives fresh moments an old bias correction."""
    model, optimizer = trained("Adam")
    reset_neurons(model, optimizer, MASKS)
    region = reset_regions(model, MASKS)["0.weight"]
    before = model[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    delta = (model[0].weight.detach() - before)[region]
    assert (delta.abs() < 0.6 * 1e-2).all()  # lr 1e-2; ElementwiseAdam: 1e-2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"betas": (1.0, 0.999)}, r"betas must lie in \[0, 1\)"),
        ({"betas": (0.9, 1.0)}, r"betas must lie in \[0, 1\)"),
        ({"betas": (-0.1, 0.999)}, r"betas must lie in \[0, 1\)"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"eps": -1e-8}, "eps must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ],
)
def test_elementwise_adam_rejects_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ElementwiseAdam(mlp(3, 4, 2).parameters(), **kwargs)


def test_elementwise_adam_skips_parameters_without_gradient_and_returns_closure_loss():
    model = mlp(3, 4, 2)
    optimizer = ElementwiseAdam(model.parameters())
    model[2].weight.requires_grad_(False)
    frozen = model[2].weight.clone()

    def closure():
        optimizer.zero_grad()
        loss = model(torch.ones(5, 3)).square().mean()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert torch.equal(model[2].weight, frozen)
    assert model[2].weight not in optimizer.state
    assert (optimizer.state[model[0].weight]["step"] == 1).all()


def test_kept_corrections_equal_corrections_from_the_counts_across_resets():
    """The bias corrections kept in the state, advanced by lerp and restarted with the counts
    at a reset, give the updates that corrections recomputed from the counts give, over long
    enough for beta2's to approach 1 (their float32 rounding errors must not pile up)."""
    torch.manual_seed(0)
    param = torch.randn(4, 5)
    kept, recomputed = param.clone(), param.clone()
    states = [
        {"exp_avg": torch.zeros(4, 5), "exp_avg_sq": torch.zeros(4, 5), "step": torch.zeros(1, 1)}
        for _ in range(2)
    ]
    states[0] |= {"bias_correction1": torch.zeros(1, 1), "bias_correction2": torch.zeros(1, 1)}
    rows = torch.zeros(4, 5, dtype=torch.bool)
    rows[1::2] = True
    for t in range(3000):
        if t in (50, 120):  # a reset of rows 1 and 3, as redo.core.recycle does it
            for state in states:
                restart_clock_(state, rows)
                state["exp_avg"][rows] = 0
                state["exp_avg_sq"][rows] = 0
        grad = torch.randn(4, 5)
        for p, state in ((kept, states[0]), (recomputed, states[1])):
            corrections = (
                (state["bias_correction1"], state["bias_correction2"])
                if "bias_correction1" in state
                else None
            )
            adam_update_(
                p, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, corrections=corrections,
            )  # fmt: skip
        torch.testing.assert_close(kept, recomputed, rtol=1e-5, atol=1e-6)
    assert states[0]["step"].shape == (4, 5) and (states[0]["step"][rows] == 2880).all()
    exact = corrections_from_step(states[0]["step"].double(), 0.9, 0.999)
    for key, expected in exact.items():
        torch.testing.assert_close(states[0][key].double(), expected, rtol=0, atol=1e-6)


def test_elementwise_adam_keeps_corrections_in_its_state_dict():
    _, optimizer = trained("ElementwiseAdam")  # 5 steps
    state = optimizer.state_dict()["state"][0]
    full = functools.partial(torch.full_like, state["step"])
    torch.testing.assert_close(state["bias_correction1"], full(1 - 0.9**5))
    torch.testing.assert_close(state["bias_correction2"], full(1 - 0.999**5))


def test_a_state_saved_with_powers_gets_corrections_from_its_counts():
    """States saved before the corrections were kept held ``beta ** step`` instead."""
    model, optimizer = trained("ElementwiseAdam")  # 5 steps
    saved = optimizer.state_dict()
    for state in saved["state"].values():
        state["beta1_power"] = 1 - state.pop("bias_correction1")
        state["beta2_power"] = 1 - state.pop("bias_correction2")
    restored = ElementwiseAdam(model.parameters(), lr=1e-2)
    restored.load_state_dict(saved)
    train(model, restored, steps=1)
    state = restored.state_dict()["state"][0]
    assert "beta1_power" not in state
    full = functools.partial(torch.full_like, state["step"])
    torch.testing.assert_close(state["bias_correction2"], full(1 - 0.999**6))
