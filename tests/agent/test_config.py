"""DQNConfig: family defaults, the paper's tau and ReDo, validation, comparison, description."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest

from redo.agent.config import (
    FAMILY_DEFAULTS,
    REDO_OPTIONS,
    ConfigError,
    DQNConfig,
    OfTotal,
    describe_redo,
    differing_settings,
    paper_tau,
)


def test_for_env_fills_family_defaults():
    atari = DQNConfig.for_env("ALE/Breakout-v5")
    assert (atari.lr, atari.adam_eps, atari.learning_starts) == (6.25e-5, 1.5e-4, 20_000)
    assert (atari.target_update_period, atari.epsilon_end, atari.replay_ratio) == (
        8_000,
        0.01,
        0.25,
    )
    minatar = DQNConfig.for_env("MinAtar/Breakout-v1", seed=3)
    assert (minatar.buffer_size, minatar.learning_starts, minatar.seed) == (100_000, 5_000, 3)
    classic = DQNConfig.for_env("CartPole-v1")
    assert (classic.buffer_size, classic.target_update_period, classic.batch_size) == (
        10_000,
        500,
        128,
    )


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "MinAtar/Breakout-v1", "CartPole-v1"])
def test_defaults_are_the_papers_redo(env_id):
    config = DQNConfig.for_env(env_id, redo=True)
    assert (config.redo_selection, config.redo_init, config.redo_bias) == (
        "dormant",
        "default",
        "zero",
    )
    assert config.redo_step_mode == "keep"
    assert (config.redo_period, config.score_batch_size) == (1_000, 64)
    assert not DQNConfig.for_env(env_id).redo


def test_tau_follows_the_paper_unless_given():
    assert DQNConfig.for_env("ALE/Pong-v5").tau == 0.025 == paper_tau(0.25)
    assert DQNConfig.for_env("ALE/Pong-v5", replay_ratio=1).tau == 0.1
    assert DQNConfig.for_env("ALE/Pong-v5", replay_ratio=1, tau=0.05).tau == 0.05


def test_budget_dependent_defaults_scale_with_total_steps():
    small = DQNConfig.for_env("CartPole-v1", total_steps=20_000)
    assert (small.learning_starts, small.epsilon_decay_steps) == (400, 10_000)
    big = DQNConfig.for_env("CartPole-v1", total_steps=2_000_000)
    assert big.learning_starts == 10_000  # cleanRL's value is the cap
    assert OfTotal(0.5).resolve(7) == 3


def test_every_family_defines_every_setting():
    settings = {f.name for f in dataclasses.fields(DQNConfig)} - {"env_id", "tau"}
    for defaults in FAMILY_DEFAULTS.values():
        assert set(defaults) == settings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tau", -0.1, "tau must be a finite number >= 0"),
        ("tau", math.nan, "tau must be a finite number >= 0"),
        ("redo_period", 0, "redo_period must be an integer >= 1"),
        ("replay_ratio", 0, "replay_ratio must be a finite number > 0"),
        ("replay_ratio", math.nan, "replay_ratio must be a finite number > 0"),
        ("total_steps", 0, "total_steps must be an integer >= 1"),
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("score_batch_size", -1, "score_batch_size must be an integer >= 1"),
        ("redo_init", "he", "redo_init must be one of"),
        ("redo_step_mode", "auto", "redo_step_mode must be one of"),
        ("redo_selection", "largest", "redo_selection must be one of"),
        ("loss", "l1", "loss must be one of"),
        ("gamma", 1.5, "gamma must be a finite number in [0, 1]"),
        ("redo", "yes", "redo must be True or False"),
        ("device", "gpu7", "device must be a torch device"),
    ],
)
def test_bad_values_name_the_setting(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        DQNConfig.for_env("CartPole-v1", **{field: value})
    assert info.value.field == field


@pytest.mark.parametrize("selection", ["dormant", "random", "all"])
@pytest.mark.parametrize("step_mode", ["keep", "elementwise", "zero_all"])
def test_every_redo_variant_is_a_valid_setting(selection, step_mode):
    config = DQNConfig.for_env(
        "CartPole-v1", redo=True, redo_selection=selection, redo_step_mode=step_mode
    )
    assert (config.redo_selection, config.redo_step_mode) == (selection, step_mode)


def test_unknown_env_and_setting():
    with pytest.raises(ConfigError, match=r"supported ids are .*CartPole-v1") as info:
        DQNConfig.for_env("CartPole-v0")
    assert info.value.field == "env_id"
    with pytest.raises(ConfigError, match="unknown setting"):
        DQNConfig.for_env("CartPole-v1", learning_rate=1e-3)


def test_config_round_trips_through_json():
    config = DQNConfig.for_env(
        "MinAtar/Breakout-v1", redo=True, replay_ratio=np.int64(1), redo_selection="random"
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert DQNConfig.from_dict(data) == config
    assert isinstance(config.replay_ratio, float)
    with pytest.raises(ConfigError, match="missing"):
        DQNConfig.from_dict({k: v for k, v in data.items() if k != "seed"})


# --- differing_settings ---------------------------------------------------------------------


def test_differing_settings_is_empty_for_the_same_run():
    config = DQNConfig.for_env("CartPole-v1", redo=True)
    assert differing_settings(config.to_dict(), config) == []
    assert differing_settings(json.loads(json.dumps(config.to_dict())), config) == []


def test_differing_settings_lists_changes_sorted_and_honours_ignore():
    config = DQNConfig.for_env("CartPole-v1")
    changes = {"seed": 4, "lr": 1e-3, "redo": True, "tau": 0.5, "loss": "huber", "gamma": 0.9}
    changes |= {"batch_size": 7, "device": "cpu:0"}
    stored = config.replace(**changes).to_dict()
    assert differing_settings(stored, config) == sorted(changes)
    assert differing_settings(stored, config, ignore=("seed", "redo")) == sorted(
        set(changes) - {"seed", "redo"}
    )
    # a value stored as the integer 1 is the config's 1.0 (the config stores floats)
    assert differing_settings(config.to_dict() | {"gamma": 1}, config.replace(gamma=1)) == []


def test_differing_settings_counts_missing_and_unknown_keys():
    config = DQNConfig.for_env("CartPole-v1")
    stored = config.to_dict()
    del stored["redo_selection"]  # a record from before the setting existed
    stored["redo_auto"] = True  # a setting that no longer exists
    assert differing_settings(stored, config) == ["redo_auto", "redo_selection"]
    # a stored None is not the same as a missing key
    assert differing_settings(config.to_dict() | {"extra": None}, config) == ["extra"]


# --- describe_redo --------------------------------------------------------------------------


def test_describe_redo_names_the_variant():
    config = DQNConfig.for_env("MinAtar/Breakout-v1")
    assert describe_redo(config) == "no ReDo"
    assert describe_redo(config.replace(redo_selection="random")) == "no ReDo"
    paper = config.replace(redo=True)
    assert describe_redo(paper) == "the paper's ReDo"
    assert describe_redo(paper.replace(redo_selection="random")) == "ReDo with selection=random"
    variant = paper.replace(redo_step_mode="zero_all", redo_selection="all", redo_bias="redraw")
    # options come in REDO_OPTIONS's order, without the redo_ prefix
    assert describe_redo(variant) == "ReDo with selection=all, bias=redraw, step_mode=zero_all"
    assert describe_redo(variant.to_dict()) == describe_redo(variant)  # a run.json's config


def test_redo_options_are_the_redo_variant_settings():
    assert REDO_OPTIONS == (
        "redo_score",
        "redo_selection",
        "redo_init",
        "redo_bias",
        "redo_step_mode",
    )
    assert set(REDO_OPTIONS) <= {f.name for f in dataclasses.fields(DQNConfig)}


def test_describe_redo_names_a_threshold_or_period_other_than_the_papers():
    # the paper's tau depends on the replay ratio: 0.025 at 0.25 is the paper's, 0.1 is not
    quarter = DQNConfig.for_env("MinAtar/Breakout-v1", redo=True, replay_ratio=0.25)
    assert quarter.tau == 0.025 and describe_redo(quarter) == "the paper's ReDo"
    assert describe_redo(quarter.replace(tau=0.1)) == "ReDo with tau=0.1"
    changed = DQNConfig.for_env("CartPole-v1", redo=True, tau=0.3, redo_period=7)
    assert describe_redo(changed) == "ReDo with period=7, tau=0.3"
    assert describe_redo(changed.replace(tau=0.0)) == "ReDo with period=7, tau=0"
