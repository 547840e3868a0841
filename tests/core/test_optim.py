import copy
import functools
import random

import pytest
import torch
from torch import nn

from redo.core.dormant import dormant_masks, dormant_scores
from redo.core.optim import ElementwiseAdam, adam_update_, restart_clock_, widen_step
from redo.core.recycle import (
    check_step_mode,
    clear_moments,
    clear_optimizer_entries,
    recycle_dormant,
    reset_neurons,
)
from tests.nets import conv_flatten_linear, inputs, kill, mlp, reset_regions

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


def assert_clock_unchanged(before, after):
    """Every entry of the state that is not a moment (the step count, and ElementwiseAdam's
    bias corrections) is bit-identical, shape included."""
    for name in before:
        for key in before[name].keys() - set(MOMENTS):
            assert after[name][key].shape == before[name][key].shape, (name, key)
            assert torch.equal(after[name][key], before[name][key]), (name, key)


@pytest.mark.parametrize(
    ("optimizer_name", "step_mode"),
    [
        ("Adam", None),
        ("Adam-amsgrad", None),
        ("AdamW", None),
        ("ElementwiseAdam", None),
        ("Adam", "keep"),
        ("ElementwiseAdam", "keep"),
    ],
    ids=lambda v: "default" if v is None else v,
)
def test_keep_is_the_default_and_leaves_every_step_count(optimizer_name, step_mode):
    """The paper's reset: the moments of exactly the changed entries are zeroed, Adam's step
    count (one per tensor for torch's Adam, compact for ElementwiseAdam) is not touched."""
    model, optimizer = trained(optimizer_name)
    before = state_by_name(model, optimizer)
    kwargs = {} if step_mode is None else {"step_mode": step_mode}
    reset_neurons(model, optimizer, MASKS, **kwargs)
    after = state_by_name(model, optimizer)
    for name in before:
        assert (after[name]["step"] == 5).all(), name
    assert_clock_unchanged(before, after)
    assert_moments_reset_only_in_regions(model, before, after)
    if optimizer_name == "ElementwiseAdam":  # nothing widened: the counts are still one each
        assert all(s["step"].numel() == 1 for s in after.values())


@pytest.mark.parametrize("optimizer_name", ["Adam", "ElementwiseAdam"])
def test_recycle_dormant_keeps_step_counts_by_default(optimizer_name):
    model, optimizer = trained(optimizer_name)
    kill(model, "2", [1, 3])
    x = inputs((3, 7, 7))
    masks = dormant_masks(dormant_scores(model, x), 0.0)
    assert masks["2"][[1, 3]].all()
    before = state_by_name(model, optimizer)
    report = recycle_dormant(model, optimizer, x, tau=0.0, generator=torch.Generator())
    after = state_by_name(model, optimizer)
    assert report.recycled == {name: int(mask.sum()) for name, mask in masks.items()}
    assert_clock_unchanged(before, after)
    assert_moments_reset_only_in_regions(model, before, after, masks)


def test_elementwise_step_mode_restarts_exactly_the_reset_entries_counts():
    model, optimizer = trained("ElementwiseAdam")
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS, step_mode="elementwise")
    after = state_by_name(model, optimizer)
    old = {"step": 5.0, "bias_correction1": 1 - 0.9**5, "bias_correction2": 1 - 0.999**5}
    for name, region in reset_regions(model, MASKS).items():
        assert before[name]["step"].shape == (1,) * region.dim()  # compact until a reset
        assert (before[name]["step"] == 5).all()
        if not region.any():  # "5.bias", "7.*": untouched, still compact
            assert all(torch.equal(after[name][k], before[name][k]) for k in old), name
            continue
        for key, value in old.items():
            clock = after[name][key]
            assert clock.shape == region.shape, (name, key)  # the reset widened it
            assert (clock[region] == 0).all(), (name, key)
            torch.testing.assert_close(clock[~region], torch.full_like(clock[~region], value))
    assert_moments_reset_only_in_regions(model, before, after)


@pytest.mark.parametrize("optimizer_name", ["Adam", "Adam-amsgrad", "AdamW", "ElementwiseAdam"])
def test_zero_all_zeroes_every_step_count(optimizer_name):
    model, optimizer = trained(optimizer_name)
    before = state_by_name(model, optimizer)
    reset_neurons(model, optimizer, MASKS, step_mode="zero_all")
    after = state_by_name(model, optimizer)
    for name in before:  # also "5.*" (no dormant neuron) and the output layer "7.*"
        assert (before[name]["step"] == 5).all()
        assert (after[name]["step"] == 0).all(), name
        for key in ("bias_correction1", "bias_correction2"):  # ElementwiseAdam's clock
            if key in before[name]:
                assert (before[name][key] > 0).all()
                assert (after[name][key] == 0).all(), (name, key)
    assert_moments_reset_only_in_regions(model, before, after)
    train(model, optimizer, steps=1)  # and training goes on from a count of 1
    assert all((optimizer.state[p]["step"] == 1).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_zero_all_without_any_recycled_neuron_keeps_steps():
    model, optimizer = trained("Adam")
    none = {name: torch.zeros_like(mask) for name, mask in MASKS.items()}
    reset_neurons(model, optimizer, none, step_mode="zero_all")
    assert all(optimizer.state[p]["step"] == 5 for p in model.parameters())


@pytest.mark.parametrize("optimizer_name", ["Adam", "AdamW"])
def test_elementwise_step_mode_with_torch_adam_is_rejected(optimizer_name):
    model, optimizer = trained(optimizer_name)
    before = copy.deepcopy(model.state_dict())
    state_before = state_by_name(model, optimizer)
    with pytest.raises(ValueError, match=r"step_mode='elementwise'.*ElementwiseAdam"):
        reset_neurons(model, optimizer, MASKS, step_mode="elementwise")
    rows = MASKS["0"].view(-1, 1, 1, 1).expand_as(model[0].weight)
    with pytest.raises(ValueError, match="ElementwiseAdam"):
        clear_optimizer_entries(optimizer, {model[0].weight: rows}, "elementwise")
    with pytest.raises(ValueError, match="ElementwiseAdam"):
        check_step_mode(optimizer, "elementwise")
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    after = state_by_name(model, optimizer)  # nothing cleared before the error either
    for name in state_before:
        for key, value in state_before[name].items():
            assert torch.equal(after[name][key], value), (name, key)


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_check_step_mode_accepts_keep_and_zero_all_for_any_adam(optimizer_name):
    _, optimizer = trained(optimizer_name)
    for step_mode in ("keep", "zero_all"):
        check_step_mode(optimizer, step_mode)
    if optimizer_name == "ElementwiseAdam":
        check_step_mode(optimizer, "elementwise")
    with pytest.raises(ValueError, match=r"step_mode must be one of \['keep', 'elementwise'"):
        check_step_mode(optimizer, "auto")  # the old default, gone


@pytest.mark.parametrize(
    ("step_mode", "restarted"),
    [("keep", False), ("elementwise", True)],
    ids=["keep", "elementwise"],
)
def test_clear_optimizer_entries_on_one_parameter(step_mode, restarted):
    model, optimizer = trained("ElementwiseAdam")
    bias, mask = model[2].bias, MASKS["2"]
    others = {p: {k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()}
    before = {k: v.expand_as(bias).clone() for k, v in optimizer.state[bias].items()}
    clear_optimizer_entries(optimizer, {bias: mask}, step_mode)
    state = optimizer.state[bias]
    clock = ("step", "bias_correction1", "bias_correction2")
    for key in ("exp_avg", "exp_avg_sq", *(clock if restarted else ())):
        assert (state[key][mask] == 0).all(), key
        assert torch.equal(state[key][~mask], before[key][~mask]), key
    if not restarted:
        for key in clock:
            assert torch.equal(state[key].expand_as(bias), before[key]), key
    for p in model.parameters():  # the other parameters are untouched
        if p is not bias:
            assert all(torch.equal(optimizer.state[p][k], v) for k, v in others[p].items())


def test_clear_moments_on_a_mapping_of_states():
    """clear_moments works on any {param: state} mapping (as built over one agent's slice of
    a population): it zeroes the three Adam moments where the mask is True, and nothing else."""
    a, b, c = torch.zeros(3, 2), torch.zeros(4), torch.zeros(2)
    states = {
        a: {key: torch.ones(3, 2) for key in MOMENTS} | {"step": torch.tensor(7.0)},
        b: {"exp_avg": torch.ones(4), "exp_avg_sq": torch.ones(4), "other": torch.ones(4)},
        c: {},  # not stepped yet
    }
    rows = torch.tensor([True, False, True]).view(3, 1).expand(3, 2)
    clear_moments(states, {a: rows, b: torch.tensor([False, True, False, False]), c: c.bool()})
    for key in MOMENTS:
        assert torch.equal(states[a][key], (~rows).float()), key
    assert states[a]["step"] == 7
    assert states[b]["exp_avg"].tolist() == [1, 0, 1, 1]
    assert states[b]["exp_avg_sq"].tolist() == [1, 0, 1, 1]
    assert (states[b]["other"] == 1).all()
    assert states[c] == {}


# --- ElementwiseAdam --------------------------------------------------------------------------


def test_widen_step_copies_a_compact_count_and_keeps_a_wide_one():
    compact = torch.full((1, 1), 7.0)
    wide = widen_step(compact, torch.Size([3, 4]))
    assert wide.shape == (3, 4) and (wide == 7).all()
    wide[0, 0] = 0  # a real copy, not an expanded view of one element
    assert compact.item() == 7 and wide[1, 1] == 7
    assert widen_step(wide, torch.Size([3, 4])) is wide


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
    reset_neurons(model, optimizer, MASKS, step_mode="elementwise")
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
    at a reset, give the updates of Adam with corrections computed from the counts (here in
    float64), over long enough for beta2's to approach 1 (their float32 rounding errors must
    not pile up)."""
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.999, 1e-8
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(4, 5, generator=generator)
    state = {
        "exp_avg": torch.zeros(4, 5),
        "exp_avg_sq": torch.zeros(4, 5),
        "step": torch.zeros(1, 1),
        "bias_correction1": torch.zeros(1, 1),
        "bias_correction2": torch.zeros(1, 1),
    }
    expected, m, v = param.double(), torch.zeros(4, 5).double(), torch.zeros(4, 5).double()
    t = torch.zeros(4, 5).double()
    rows = torch.zeros(4, 5, dtype=torch.bool)
    rows[1::2] = True
    for step in range(3000):
        if step in (50, 120):  # a reset of rows 1 and 3, as redo.core.recycle does it
            restart_clock_(state, rows)
            state["exp_avg"][rows] = 0
            state["exp_avg_sq"][rows] = 0
            m[rows], v[rows], t[rows] = 0, 0, 0
        grad = torch.randn(4, 5, generator=generator)
        adam_update_(
            param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
            (state["bias_correction1"], state["bias_correction2"]),
            lr=lr, beta1=beta1, beta2=beta2, eps=eps,
        )  # fmt: skip
        g = grad.double()
        t, m, v = t + 1, beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        expected = expected - lr * m / (1 - beta1**t) / ((v / (1 - beta2**t)).sqrt() + eps)
        torch.testing.assert_close(param.double(), expected, rtol=1e-5, atol=1e-5)
    assert state["step"].shape == (4, 5)
    assert (state["step"][rows] == 2880).all() and (state["step"][~rows] == 3000).all()
    for key, beta in (("bias_correction1", beta1), ("bias_correction2", beta2)):
        exact = 1 - beta ** state["step"].double()
        torch.testing.assert_close(state[key].double(), exact, rtol=0, atol=1e-6)


def test_elementwise_adam_keeps_corrections_in_its_state_dict():
    _, optimizer = trained("ElementwiseAdam")  # 5 steps
    state = optimizer.state_dict()["state"][0]
    full = functools.partial(torch.full_like, state["step"])
    torch.testing.assert_close(state["bias_correction1"], full(1 - 0.9**5))
    torch.testing.assert_close(state["bias_correction2"], full(1 - 0.999**5))
