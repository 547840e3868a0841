"""PopulationLearner: one batched update = K single-agent updates; ReDo per agent = the
single network's reset; checkpoints round-trip."""

import copy
import functools

import pytest
import torch
import torch.nn.functional as F

from redo.agent.config import DQNConfig
from redo.agent.replay import ReplaySamples
from redo.agent.streams import seeded_q_network
from redo.agent.td import td_loss, td_update
from redo.core.dormant import dormant_scores
from redo.core.gradient import gradient_scores
from redo.core.networks import minatar_cnn, mlp
from redo.core.optim import ElementwiseAdam
from redo.core.recycle import reset_neurons, select_neurons
from redo.population.learner import PopulationLearner
from redo.population.replay import PopulationBatch

NETWORKS = {
    "minatar": (functools.partial(minatar_cnn, 4, 3), (4, 10, 10), torch.uint8),
    "mlp": (functools.partial(mlp, 6, 3, (12, 10)), (6,), torch.float32),
}
GAMMA, ADAM_EPS = 0.99, 1e-3


def networks(kind, seeds):
    built = []
    for seed in seeds:
        torch.manual_seed(seed)
        built.append(NETWORKS[kind][0]())
    return built


def observations(kind, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if NETWORKS[kind][2] == torch.uint8:
        return (torch.rand(shape, generator=g) < 0.3).to(torch.uint8)
    return torch.randn(shape, generator=g)


def random_batch(kind, agents, n, seed):
    shape, g = NETWORKS[kind][1], torch.Generator().manual_seed(seed)
    return PopulationBatch(
        observations=observations(kind, (agents, n, *shape), seed),
        actions=torch.randint(3, (agents, n), generator=g),
        rewards=torch.randn(agents, n, generator=g),
        next_observations=observations(kind, (agents, n, *shape), seed + 1),
        terminated=torch.rand(agents, n, generator=g) < 0.2,
    )


def learner_for(nets, lr=(1e-2, 1e-2, 1e-2), loss="huber"):
    return PopulationLearner(nets, lr=list(lr), gamma=GAMMA, adam_eps=ADAM_EPS, loss=loss)


def params_of(learner, k):
    return {name: view[k] for name, view in learner.params.items()}


@pytest.mark.parametrize(
    ("kind", "loss", "lrs"),
    [
        ("minatar", "huber", (1e-2, 1e-2, 1e-2)),  # one learning rate: torch's fused Adam
        ("mlp", "mse", (1e-2, 3e-3, 1e-3)),  # one per agent: ElementwiseAdam's arithmetic
    ],
)
def test_update_equals_separate_single_agent_updates(kind, loss, lrs):
    seeds = [0, 1, 2]
    learner = learner_for(networks(kind, seeds), lr=lrs, loss=loss)
    singles = [
        (net, copy.deepcopy(net), ElementwiseAdam(net.parameters(), lr, eps=ADAM_EPS))
        for net, lr in zip(networks(kind, seeds), lrs, strict=True)
    ]
    loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    for step in range(4):
        batch = random_batch(kind, 3, 16, seed=10 * step)
        stats = learner.update(batch)
        for k, (net, target, optimizer) in enumerate(singles):
            samples = ReplaySamples(*(field[k].numpy() for field in batch))
            single_loss, single_q = td_update(net, target, optimizer, samples, GAMMA, loss_fn)
            assert stats.loss[k].item() == pytest.approx(single_loss, rel=1e-5)
            assert stats.q_mean[k].item() == pytest.approx(single_q, rel=1e-5, abs=1e-6)
            for name, p in net.named_parameters():
                torch.testing.assert_close(params_of(learner, k)[name], p.detach(), msg=name)
                state = optimizer.state[p]
                moments = {
                    "exp_avg": learner.state["exp_avg"],
                    "exp_avg_sq": learner.state["exp_avg_sq"],
                }
                for key, flat in moments.items():
                    torch.testing.assert_close(flat.views[name][k], state[key], msg=key)
        if step % 2 == 1:
            learner.sync_target()
            for net, target, _ in singles:
                target.load_state_dict(net.state_dict())


def test_for_configs_starts_each_agent_from_its_single_run_network():
    configs = [DQNConfig.for_env("MinAtar/Breakout-v1", seed=s) for s in (3, 8)]
    learner = PopulationLearner.for_configs(configs, (4, 10, 10), 3, "cpu")
    for k, config in enumerate(configs):
        single = seeded_q_network((4, 10, 10), 3, config.seed, "cpu")
        for name, p in single.state_dict().items():
            assert torch.equal(learner.network_of(k).state_dict()[name], p)
            assert torch.equal(learner.target_params[name][k], p)


def test_greedy_actions_are_each_agents_argmax():
    nets = networks("minatar", [0, 1, 2])
    learner = learner_for(nets)
    obs = observations("minatar", (3, 4, 10, 10), seed=5)
    actions = learner.greedy_actions(obs)
    for k, net in enumerate(nets):
        assert actions[k].item() == net(obs[k : k + 1]).argmax(dim=1).item()


@pytest.mark.parametrize("kind", NETWORKS)
def test_scores_of_any_agents_equal_each_agents_own(kind):
    nets = networks(kind, [0, 1, 2])
    learner = learner_for(nets)
    obs = observations(kind, (2, 32, *NETWORKS[kind][1]), seed=3)
    scores = learner.scores(obs, [2, 0])
    for j, k in enumerate([2, 0]):
        for name, expected in dormant_scores(nets[k], obs[j]).items():
            torch.testing.assert_close(scores[name][j], expected, rtol=1e-4, atol=1e-6)


def trained_learner_and_singles(kind, seeds=(0, 1, 2)):
    """A learner and single copies of its agents after a few updates, so that Adam's moments
    are not zero."""
    learner = learner_for(networks(kind, seeds))
    for step in range(3):
        learner.update(random_batch(kind, len(seeds), 16, seed=step))
    singles = []
    for k in range(len(seeds)):
        net = learner.network_of(k)
        adam = torch.optim.Adam(net.parameters(), lr=1e-2, eps=ADAM_EPS)
        for name, p in net.named_parameters():
            adam.state[p] = {
                "step": torch.tensor(3.0),
                "exp_avg": learner.state["exp_avg"].views[name][k].clone(),
                "exp_avg_sq": learner.state["exp_avg_sq"].views[name][k].clone(),
            }
        singles.append((net, adam))
    return learner, singles


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("selection", ["dormant", "random", "all"])
@pytest.mark.parametrize("init", ["default", "scaled"])
def test_reset_of_one_agent_is_the_single_networks_reset(kind, selection, init):
    learner, singles = trained_learner_and_singles(kind)
    before = {name: view.clone() for name, view in learner.params.items()}
    obs = observations(kind, (1, 32, *NETWORKS[kind][1]), seed=4)
    scores = {name: s[0] for name, s in learner.scores(obs, [1]).items()}
    tau = 0.5
    masks = select_neurons(scores, tau, selection, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(9)
    learner.reset(
        1, masks, init=init, bias="zero", step_mode="keep",
        whole_network=selection == "all", generator=generator,
    )  # fmt: skip
    net, adam = singles[1]
    reset_neurons(
        net, adam, masks, init=init, whole_network=selection == "all",
        generator=torch.Generator().manual_seed(9),
    )  # fmt: skip
    for name, p in net.named_parameters():
        assert torch.equal(learner.params[name][1], p.detach()), name
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(learner.state[key].views[name][1], adam.state[p][key]), key
        for other in (0, 2):  # the other agents are untouched
            assert torch.equal(learner.params[name][other], before[name][other])
    assert learner.clock["step"].numel() == 1  # the paper's step mode keeps one count


def test_elementwise_and_zero_all_step_modes_widen_the_clock_per_agent():
    learner, _ = trained_learner_and_singles("mlp")
    masks = {"fc1": torch.zeros(12, dtype=torch.bool), "fc2": torch.zeros(10, dtype=torch.bool)}
    masks["fc1"][[0, 3]] = True
    learner.reset(
        0, masks, init="default", bias="zero", step_mode="elementwise", whole_network=False,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    step = learner._per_entry_clock()["step"].views
    assert step["fc1.weight"][0][[0, 3]].eq(0).all()  # the recycled rows restart
    assert step["fc1.weight"][0][1].eq(3).all() and step["fc1.weight"][1].eq(3).all()
    assert step["fc2.weight"][0][:, [0, 3]].eq(0).all()  # and their outgoing columns
    learner.reset(
        2, masks, init="default", bias="zero", step_mode="zero_all", whole_network=False,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    for name, view in step.items():
        assert view[2].eq(0).all(), name
        assert view[1].eq(3).all(), name
    learner.update(random_batch("mlp", 3, 16, seed=11))  # updates run on the widened clock
    assert step["fc1.weight"][1].eq(4).all() and step["fc1.weight"][2].eq(1).all()


def test_state_dict_round_trips_into_a_fresh_learner():
    learner, _ = trained_learner_and_singles("minatar")
    fresh = learner_for(networks("minatar", [5, 6, 7]))
    fresh.load_state_dict(learner.state_dict())
    batch = random_batch("minatar", 3, 16, seed=20)
    a, b = learner.update(batch), fresh.update(batch)
    assert torch.equal(a.loss, b.loss)
    for name in learner.params:
        assert torch.equal(learner.params[name], fresh.params[name])


@pytest.mark.parametrize("kind", NETWORKS)
def test_gradient_scores_of_any_agents_equal_each_agents_own(kind):
    learner, singles = trained_learner_and_singles(kind)
    batch = random_batch(kind, 2, 16, seed=30)
    scores = learner.gradient_scores(batch, [2, 0])
    for j, k in enumerate([2, 0]):
        net = singles[k][0]
        target = learner.network_of(k, target=True)
        samples = ReplaySamples(*(field[j].numpy() for field in batch))
        loss, _ = td_loss(net, target, samples, GAMMA, F.smooth_l1_loss)
        for name, expected in gradient_scores(net, loss).items():
            torch.testing.assert_close(scores[name][j], expected, rtol=1e-4, atol=1e-6)
