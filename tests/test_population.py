"""Many agents at once: the population's update, scores, resets, replay and loop against the
single-agent pieces they must reproduce."""

import copy
import functools
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import kill, reset_regions, silenced

from redo.agent.config import ConfigError, DQNConfig
from redo.core.dormant import dormant_masks, dormant_scores
from redo.agent.dqn import TIMING_COLUMNS, dormant_columns, dormant_columns_from_scores, td_update, train
from redo.agent.envs import make_env
from redo.core.networks import minatar_cnn, mlp, q_network_for
from redo.core.optim import ElementwiseAdam
from redo.population.lockstep import (
    POPULATION_FILE,
    Lockstep,
    check_population,
    make_vector_env,
    train_population,
)
from redo.population.learner import PopulationLearner
from redo.population.replay import PopulationBatch, PopulationReplay
from redo.core.recycle import reset_neurons
from redo.agent.replay import ReplayBuffer, ReplaySamples
from redo.records.run import RunWriter, load_run

#: (network builder, observation shape, stored dtype) for the two architectures ReDo resets
#: differently: conv -> flatten -> linear (MinAtar) and linear -> linear (MLP).
NETWORKS = {
    "minatar": (functools.partial(minatar_cnn, 4, 3), (4, 10, 10), torch.uint8),
    "mlp": (functools.partial(mlp, 6, 3, (12, 10)), (6,), torch.float32),
}
GAMMA, ADAM_EPS = 0.99, 1e-3


def networks(kind, seeds):
    build = NETWORKS[kind][0]
    built = []
    for seed in seeds:
        torch.manual_seed(seed)
        built.append(build())
    return built


def observations(kind, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if NETWORKS[kind][2] == torch.uint8:
        return (torch.rand(shape, generator=g) < 0.3).to(torch.uint8)
    return torch.randn(shape, generator=g)


def random_batch(kind, agents, n, seed):
    obs_shape, g = NETWORKS[kind][1], torch.Generator().manual_seed(seed)
    return PopulationBatch(
        observations=observations(kind, (agents, n, *obs_shape), seed),
        actions=torch.randint(3, (agents, n), generator=g),
        rewards=torch.randn(agents, n, generator=g),
        next_observations=observations(kind, (agents, n, *obs_shape), seed + 1),
        terminated=torch.rand(agents, n, generator=g) < 0.2,
    )


def learner_for(nets, **overrides):
    settings = {
        "lr": [1e-2, 3e-3, 1e-3][: len(nets)],
        "tau": [0.1] * len(nets),
        "redo": [True] * len(nets),
        "gamma": GAMMA,
        "adam_eps": ADAM_EPS,
        "generator": torch.Generator().manual_seed(99),
    }
    return PopulationLearner(nets, **(settings | overrides))


def agent_state(learner, k):
    """Agent k's parameters and Adam state, step counts expanded to one per element."""
    return {
        key: {
            name: t[k].expand_as(learner.params[name][k]).clone()
            for name, t in getattr(learner, key).items()
        }
        for key in ("params", "exp_avg", "exp_avg_sq", "step")
    }


def single_state(net, optimizer):
    """A single agent's parameters and Adam state, step counts expanded to one per element."""
    state = {"params": {n: p.detach().clone() for n, p in net.named_parameters()}}
    for key in ("exp_avg", "exp_avg_sq", "step"):
        state[key] = {
            n: optimizer.state[p][key].expand_as(p).clone() for n, p in net.named_parameters()
        }
    return state


def assert_states_close(a, b, exact=False):
    for key in a:
        for name in a[key]:
            if exact:
                assert torch.equal(a[key][name], b[key][name]), (key, name)
            else:
                torch.testing.assert_close(
                    a[key][name], b[key][name], rtol=1e-5, atol=1e-6, msg=f"{key} {name}"
                )


def singles_from(learner):
    """Each agent as an nn.Module with an ElementwiseAdam holding exactly its state."""
    pairs = []
    for k in range(learner.agents):
        net = learner.network(k)
        optimizer = ElementwiseAdam(net.parameters(), lr=float(learner.lr[k]), eps=ADAM_EPS)
        state = agent_state(learner, k)
        for name, p in net.named_parameters():
            optimizer.state[p] = {
                key: state[key][name] for key in ("step", "exp_avg", "exp_avg_sq")
            }
        pairs.append((net, optimizer))
    return pairs


# --- (a) one population update = K single-agent updates ---------------------------------------


@pytest.mark.parametrize(("kind", "loss"), [("minatar", "huber"), ("mlp", "mse")])
def test_update_equals_separate_single_agent_updates(kind, loss):
    seeds, lrs = [0, 1, 2], [1e-2, 3e-3, 1e-3]
    learner = learner_for(networks(kind, seeds), lr=lrs, loss=loss)
    singles = []
    for net, lr in zip(networks(kind, seeds), lrs, strict=True):
        singles.append(
            (net, copy.deepcopy(net), ElementwiseAdam(net.parameters(), lr, eps=ADAM_EPS))
        )
    loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    schedule = [[True, True, True], [True, False, True], [False, True, True]]
    for step, due in enumerate(schedule):
        batch = random_batch(kind, 3, 16, seed=10 * step)
        before = [agent_state(learner, k) for k in range(3)]
        stats = learner.update(batch, due)
        for k, (net, target, optimizer) in enumerate(singles):
            if not due[k]:  # skipped: parameters and optimizer state exactly as they were
                assert_states_close(agent_state(learner, k), before[k], exact=True)
                assert stats.loss[k] == 0
                continue
            samples = ReplaySamples(*(field[k].numpy() for field in batch))
            single_loss, single_q = td_update(net, target, optimizer, samples, GAMMA, loss_fn)
            assert_states_close(agent_state(learner, k), single_state(net, optimizer))
            assert stats.loss[k].item() == pytest.approx(single_loss, rel=1e-5)
            assert stats.q_mean[k].item() == pytest.approx(single_q, rel=1e-5, abs=1e-6)
        learner.sync_target()
        for net, target, _ in singles:
            target.load_state_dict(net.state_dict())


def test_from_configs_starts_each_agent_from_its_single_run_parameters():
    configs = [DQNConfig.for_env("MinAtar/Breakout-v1", seed=s) for s in (3, 8)]
    learner = PopulationLearner.from_configs(configs, (4, 10, 10), 3, "cpu")
    for k, config in enumerate(configs):
        torch.manual_seed(config.seed)
        single = q_network_for((4, 10, 10), 3)
        for name, p in single.state_dict().items():
            assert torch.equal(learner.network(k).state_dict()[name], p)
            assert torch.equal(learner.target_params[name][k], p)


def test_greedy_actions_are_each_agents_argmax():
    nets = networks("minatar", [0, 1, 2])
    learner = learner_for(nets)
    obs = observations("minatar", (3, 4, 10, 10), seed=5)
    expected = [int(net(obs[k : k + 1]).argmax()) for k, net in enumerate(nets)]
    assert learner.greedy_actions(obs).tolist() == expected


# --- (b) scores and resets = redo.core.dormant and redo.core.recycle per agent --------------------------

#: Neurons killed per agent (huge negative bias: silent on any input) in the first hidden
#: layer, and the last hidden layer, of each kind.
KILLED = {
    "minatar": (("conv1", [[1, 5], [], [0, 2, 3]]), ("fc1", [[7], [2, 9], []])),
    "mlp": (("fc1", [[1, 5], [], [0, 2, 3]]), ("fc2", [[7], [2, 9], []])),
}


def population_with_dead_neurons(kind, **overrides):
    nets = networks(kind, [0, 1, 2])
    for layer, per_agent in KILLED[kind]:
        for net, neurons in zip(nets, per_agent, strict=True):
            kill(net, layer, neurons)
    learner = learner_for(nets, **overrides)
    learner.update(random_batch(kind, 3, 16, seed=1))  # non-zero moments and steps
    return learner


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_scores_and_masks_equal_each_agents_own(kind):
    taus, redo = [0.0, 0.1, 0.3], [True, True, False]
    learner = population_with_dead_neurons(kind, tau=taus, redo=redo)
    x = observations(kind, (3, 32, *NETWORKS[kind][1]), seed=2)
    scores = learner.scores(x)
    masks = learner.dormant_masks(scores)
    for k in range(3):
        single = dormant_scores(learner.network(k), x[k])
        assert list(single) == list(scores)
        for name, score in single.items():
            torch.testing.assert_close(scores[name][k], score, rtol=1e-5, atol=1e-7)
            expected = dormant_masks(single, taus[k])[name] & redo[k]
            assert torch.equal(masks[name][k], expected)
    assert any(m[0].any() for m in masks.values())  # agent 0 has dormant neurons


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_population_reset_equals_reset_neurons_per_agent(kind):
    learner = population_with_dead_neurons(kind, tau=[0.0, 0.1, 0.3], redo=[True, True, False])
    x = observations(kind, (3, 32, *NETWORKS[kind][1]), seed=2)
    masks = learner.dormant_masks(learner.scores(x))
    singles = singles_from(learner)
    counts = learner.recycle(x)
    assert counts.tolist() == [int(sum(m[k].sum() for m in masks.values())) for k in range(3)]
    for k, (net, optimizer) in enumerate(singles):
        agent_masks = {name: m[k] for name, m in masks.items()}
        reset_neurons(net, optimizer, agent_masks, generator=torch.Generator().manual_seed(5))
        after, single = agent_state(learner, k), single_state(net, optimizer)
        for name, region in reset_regions(net, agent_masks).items():
            for key in single:  # untouched entries exactly equal, reset moments/steps zero
                assert torch.equal(after[key][name][~region], single[key][name][~region])
                if key != "params":
                    assert (after[key][name][region] == 0).all()
            rows = torch.zeros_like(region)
            layer = name.rsplit(".", 1)[0]
            if layer in agent_masks:
                rows[agent_masks[layer]] = True
            if name.endswith("weight"):  # new rows within the init bound, outgoing columns 0
                assert (after["params"][name][rows].abs() <= region[0].numel() ** -0.5).all()
                assert (after["params"][name][region & ~rows] == 0).all()
            else:
                assert (after["params"][name][rows] == 0).all()  # bias 0
    assert counts[2] == 0 and counts[0] > 0
    # and learning goes on as in the single loop, with step counts that now differ per entry
    batch, singles = random_batch(kind, 3, 16, seed=4), singles_from(learner)
    learner.update(batch)
    for k, (net, optimizer) in enumerate(singles):
        samples = ReplaySamples(*(field[k].numpy() for field in batch))
        td_update(net, learner.network(k, target=True), optimizer, samples, GAMMA, F.smooth_l1_loss)
        assert_states_close(agent_state(learner, k), single_state(net, optimizer))


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_tau_zero_reset_keeps_every_agents_function(kind):
    """At tau = 0 the recycled neurons were silent on the score batch: there each agent's
    network computes exactly what it computed before, and on any input what the old network
    computes with those neurons silenced (so their outgoing columns are the right ones)."""
    learner = population_with_dead_neurons(kind, tau=[0.0] * 3)
    x = observations(kind, (3, 32, *NETWORKS[kind][1]), seed=2)
    masks = learner.dormant_masks(learner.scores(x))
    before = [learner.network(k) for k in range(3)]
    counts = learner.recycle(x)
    assert all(c >= killed for c, killed in zip(counts.tolist(), [3, 2, 3], strict=True))
    fresh = observations(kind, (64, *NETWORKS[kind][1]), seed=7)
    for k in range(3):
        reference = silenced(before[k], {name: m[k] for name, m in masks.items()})
        with torch.no_grad():
            assert torch.equal(learner.network(k)(x[k]), before[k](x[k]))
            torch.testing.assert_close(learner.network(k)(fresh), reference(fresh))


def test_zero_all_step_mode_zeroes_every_step_of_agents_that_recycled():
    learner = population_with_dead_neurons("mlp", tau=[0.0] * 3, redo_step_mode="zero_all")
    learner.update(random_batch("mlp", 3, 16, seed=3), due=[True, True, False])
    learner.recycle(observations("mlp", (3, 32, 6), seed=2), torch.tensor([True, False, True]))
    for name, step in learner.step.items():
        assert (step[0] == 0).all() and (step[2] == 0).all(), name
        assert (step[1] == 2).all(), name  # not asked to recycle: untouched


# --- replay ---------------------------------------------------------------------------------


def filled_replay(agents=2, capacity=8, steps=5, truncate_at=()):
    replay = PopulationReplay(agents, capacity, (1,), torch.float32)
    for t in range(steps):
        value = torch.full((agents, 1), float(t))
        terminated = torch.zeros(agents, dtype=torch.bool)
        truncated = torch.full((agents,), t in truncate_at)
        replay.add(value, torch.full((agents,), t), value[:, 0], value + 1, terminated, truncated)
    return replay


def test_replay_returns_consistent_transitions_and_skips_unusable_slots():
    replay = filled_replay(capacity=8, steps=13, truncate_at=(9, 11))
    batch = replay.sample(500, torch.Generator().manual_seed(0))
    actions = batch.actions.flatten()
    # step 5's slot holds step 12's next observation; steps 9 and 11 were truncated
    assert set(actions.tolist()) == {6, 7, 8, 10, 12}
    torch.testing.assert_close(batch.observations[..., 0], batch.actions.float())
    torch.testing.assert_close(batch.next_observations[..., 0], batch.actions.float() + 1)


def test_when_no_candidate_is_usable_the_newest_usable_transition_is_taken():
    replay = filled_replay(capacity=16, steps=10, truncate_at=range(9))  # only step 9 usable
    assert (replay.sample_indices(100, torch.Generator().manual_seed(0)) == 9).all()


def test_an_agents_samples_do_not_depend_on_the_other_agents_data():
    a, b = filled_replay(steps=6), filled_replay(steps=6)
    b.unusable[1] = True  # agent 1's data differ entirely
    b.observations[1] = -1
    ia = a.sample_indices(64, torch.Generator().manual_seed(3))
    ib = b.sample_indices(64, torch.Generator().manual_seed(3))
    assert torch.equal(ia[0], ib[0])


# --- (c), (d) the lockstep loop ---------------------------------------------------------------


def tiny(seed, **overrides):
    settings = {
        "seed": seed,
        "total_steps": 300,
        "learning_starts": 60,
        "replay_ratio": 1.0,
        "batch_size": 16,
        "buffer_size": 500,
        "target_update_period": 50,
        "epsilon_decay_steps": 100,
        "log_interval": 40,
        "redo_period": 40,
        "score_batch_size": 32,
        "tau": 0.5,
    }
    return DQNConfig.for_env("MinAtar/Breakout-v1", **(settings | overrides))


def without_timing(frame):
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


def test_an_agents_run_does_not_depend_on_the_other_agents(tmp_path):
    first = train_population([tiny(0, redo=True), tiny(1, redo=False)], tmp_path / "a")
    second = train_population([tiny(0, redo=True), tiny(7, redo=True, lr=1e-3)], tmp_path / "b")
    a, b = first.agents[0], second.agents[0]
    assert a.metrics["redo/recycled_total"].iloc[-1] > 0
    pd.testing.assert_frame_equal(without_timing(a.metrics), without_timing(b.metrics))
    pd.testing.assert_frame_equal(a.episodes, b.episodes)
    assert not first.agents[1].episodes.equals(second.agents[1].episodes)


def test_population_writes_single_run_records(tmp_path):
    shared = {"total_steps": 120, "log_interval": 10}
    configs = [tiny(0, **shared), tiny(1, replay_ratio=0.5, tau=0.1, **shared)]
    result = train_population(configs, tmp_path / "pop")
    single = train(configs[1], tmp_path / "single")
    for k, config in enumerate(configs):
        run = load_run(result.agents[k].folder)
        assert run.config == config.to_dict()
        assert run.record["status"] == "finished"
        assert len(run.episodes) > 0 and len(run.metrics) > 0
    agent = load_run(result.agents[1].folder)
    assert list(agent.metrics.columns) == list(single.metrics.columns)
    # replay ratio 0.5: half the gradient steps, logged at the same env and gradient steps
    for column in ("env_step", "grad_step", "epsilon"):
        assert agent.metrics[column].tolist() == single.metrics[column].tolist()
    # before learning starts both act with the same coin, env and action space
    early = configs[1].learning_starts
    pd.testing.assert_frame_equal(
        agent.episodes[agent.episodes.env_step <= early],
        single.episodes[single.episodes.env_step <= early],
    )
    timing = json.loads((tmp_path / "pop" / POPULATION_FILE).read_text())
    assert timing == result.timing
    assert timing["agents"] == 2 and timing["env_steps_per_agent"] == 120
    assert set(timing["time_s"]) == {"act", "env", "store", "update", "redo", "score"}
    with pytest.raises(FileExistsError, match="already holds"):
        train_population(configs, tmp_path / "pop")


def test_logged_dormant_columns_are_the_single_loops():
    net = networks("minatar", [0])[0]
    kill(net, "conv1", [3])
    x = observations("minatar", (32, 4, 10, 10), seed=1)
    taus = (0.0, 0.025, 0.1)
    assert dormant_columns_from_scores(dormant_scores(net, x), taus) == dormant_columns(
        net, x, taus
    )


# --- (e) final transitions --------------------------------------------------------------------


def test_episode_ends_are_stored_as_the_single_loop_stores_them(tmp_path):
    """A 3-step time limit (truncation) for agent 0, CartPole's own termination for agent 1:
    the population's replay must hold what redo.agent.replay.ReplayBuffer holds when fed the same
    transitions by single envs, and log the same episodes."""
    configs = [DQNConfig.for_env("CartPole-v1", seed=s, buffer_size=64) for s in (0, 1)]
    options = [{"max_episode_steps": 3}, {}]
    envs = make_vector_env(configs, options)
    writers = [RunWriter(tmp_path / str(k), c.to_dict()) for k, c in enumerate(configs)]
    loop = Lockstep(configs, envs, writers, seed=0)
    singles = [make_env(c.env_id, c.seed, **o) for c, o in zip(configs, options, strict=True)]
    buffers = [ReplayBuffer(64, (4,), np.float32) for _ in configs]
    single_obs = [env.reset()[0] for env in singles]
    obs, _ = envs.reset()
    rng = np.random.default_rng(0)
    episodes = [[], []]
    for env_step in range(1, 41):
        actions = rng.integers(2, size=2)
        obs = loop.step_envs(obs, actions, env_step)
        for k, env in enumerate(singles):
            next_obs, reward, terminated, truncated, info = env.step(int(actions[k]))
            buffers[k].add(single_obs[k], int(actions[k]), reward, next_obs, terminated, truncated)
            if "episode" in info:
                episodes[k].append(
                    (env_step, float(info["episode"]["r"]), int(info["episode"]["l"]))
                )
            single_obs[k] = env.reset()[0] if terminated or truncated else next_obs
        np.testing.assert_array_equal(obs, np.stack(single_obs))
    for k, buffer in enumerate(buffers):
        for field in ("observations", "actions", "rewards", "terminated", "unusable"):
            np.testing.assert_array_equal(
                getattr(loop.replay, field)[k].numpy(), getattr(buffer, field)
            )
        assert buffer.unusable.any() if k == 0 else buffer.terminated.any()
    for writer in writers:
        writer.close("finished")
    for k in range(2):
        logged = load_run(tmp_path / str(k)).episodes
        assert list(logged.itertuples(index=False, name=None)) == episodes[k]


# --- (f) validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_size": 64}, "batch_size"),
        ({"buffer_size": 999}, "buffer_size"),
        ({"target_update_period": 7}, "target_update_period"),
        ({"gamma": 0.9}, "gamma"),
    ],
)
def test_shared_settings_must_agree(change, field):
    configs = [tiny(0), tiny(1).replace(**change)]
    with pytest.raises(ConfigError, match=field) as error:
        check_population(configs)
    assert error.value.field == field
    check_population([tiny(0), tiny(1, redo=True, tau=0.2, lr=1e-3, replay_ratio=2)])


def test_env_ids_must_agree_and_population_limits_are_named():
    cartpole = DQNConfig.for_env("CartPole-v1")
    with pytest.raises(ConfigError, match="env_id"):
        check_population([tiny(0), cartpole])
    with pytest.raises(ConfigError, match="redo_init"):
        check_population([tiny(0, redo_init="lecun_normal")])
    with pytest.raises(ConfigError, match="redo_bias"):
        check_population([tiny(0, redo_bias="redraw")])
    with pytest.raises(ValueError, match="empty"):
        check_population([])
    with pytest.raises(TypeError, match="DQNConfig"):
        check_population([tiny(0), tiny(1).to_dict()])
