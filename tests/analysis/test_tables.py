"""Tidy tables from run records: which run a row came from, curves, final values, and the
per-game normalisation.

The tables are checked on synthetic run records written with ``RunWriter`` (the ``runs``
fixture), whose values are known functions of each run's settings, so every number can be
checked by hand.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from redo.agent.config import REDO_OPTIONS, DQNConfig
from redo.analysis.tables import (
    DQN_VARIANT,
    ID_COLUMNS,
    MATCH_COLUMNS,
    PAPER_REDO,
    RANDOM_SELECTION,
    ablation_variant,
    before_reset_share,
    config_identity,
    coverage,
    coverage_grid,
    dormant_curves,
    early_dormant,
    final_dormant,
    final_returns,
    finished_runs,
    game_name,
    layer_dormant_curves,
    normalise_per_game,
    random_returns,
    recycling_curves,
    reference_returns,
    return_curves,
    run_identity,
    runs_given,
    spread_grid,
    variant_order,
    variant_summary,
    with_variants,
)
from redo.records.reader import load_run, load_runs
from redo.records.record import RECORD_FILE
from redo.records.writer import RunWriter
from tests.analysis.frames import hand_final
from tests.synthetic_runs import (
    GAMES,
    LEARNED_ENDS,
    LOG_STEPS,
    RANDOM_BASE,
    TOTAL,
    dormant_value,
    level,
    write_synthetic_run,
)

# --- identifying runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "game"),
    [
        ("MinAtar/Breakout-v1", "Breakout"),
        ("MinAtar/SpaceInvaders-v1", "SpaceInvaders"),
        ("ALE/Breakout-v5", "Breakout"),
        ("CartPole-v1", "CartPole"),
        ("MountainCar-v0", "MountainCar"),
    ],
)
def test_game_name(env_id, game):
    assert game_name(env_id) == game


def test_config_without_dqn_settings_is_refused(tmp_path):
    with RunWriter(tmp_path / "r", {"env_id": "CartPole-v1", "seed": 0}) as writer:
        writer.log_episode(10, 1.0, 10)
    with pytest.raises(ValueError, match=r"config lacks \[.*'redo'"):
        final_returns(load_runs(tmp_path))


def test_config_without_the_redo_options_is_refused(tmp_path):
    """A config of an older redo, before ReDo's neuron selection was a setting."""
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    del config["redo_selection"]
    RunWriter(tmp_path / "r", config).finish()
    with pytest.raises(ValueError, match=r"config lacks \['redo_selection'\]"):
        run_identity(load_run(tmp_path / "r"))


def test_no_runs_are_refused():
    with pytest.raises(ValueError, match="no runs given"):
        runs_given([])
    with pytest.raises(ValueError, match="no runs given"):
        final_returns(iter([]))


def test_id_columns_name_every_redo_option_and_no_population():
    assert set(REDO_OPTIONS) <= set(ID_COLUMNS)
    assert ID_COLUMNS[-1] == "redo_variant"
    assert ID_COLUMNS[0] == "run"
    assert not any("population" in c for c in ID_COLUMNS)


def test_run_identity(runs):
    identity = run_identity(runs[0])
    assert tuple(identity) == ID_COLUMNS
    config = runs[0].config
    assert identity["run"] == str(runs[0].folder)
    assert identity["redo_tau"] == config["tau"]
    assert {k: identity[k] for k in REDO_OPTIONS} == {
        "redo_score": "activation",
        "redo_selection": "dormant",
        "redo_init": "default",
        "redo_bias": "zero",
        "redo_step_mode": "keep",
    }
    variants = {run_identity(r)["method"]: run_identity(r)["redo_variant"] for r in runs}
    assert variants == {"DQN": "no ReDo", "DQN+ReDo": "the paper's ReDo"}


@pytest.mark.parametrize(
    ("redo", "overrides", "variant"),
    [
        (False, {}, "no ReDo"),
        (False, {"redo_step_mode": "elementwise"}, "no ReDo"),
        (True, {}, "the paper's ReDo"),
        (True, {"redo_step_mode": "elementwise"}, "ReDo with step_mode=elementwise"),
        (True, {"redo_selection": "random"}, "ReDo with selection=random"),
        (
            True,
            {"redo_init": "xavier_uniform", "redo_bias": "redraw"},
            "ReDo with init=xavier_uniform, bias=redraw",
        ),
    ],
)
def test_redo_variant_names_the_redo_in_words(tmp_path, redo, overrides, variant):
    write_synthetic_run(tmp_path / "r", "MinAtar/Breakout-v1", redo, 1.0, 0, **overrides)
    (row,) = final_returns(load_runs(tmp_path)).to_dict("records")
    assert row["redo_variant"] == variant
    for key, value in overrides.items():
        assert row[key] == value


def test_runs_of_one_setting_are_alike_however_they_were_packed(tmp_path):
    """The same config trained alone, or as agent 1 of 2, or agent 7 of 16, is one setting:
    the population a run was trained in is not part of its identity."""
    packings = {
        "alone": None,
        "pair": {"id": "pair", "size": 2, "index": 1},
        "sweep": {"id": "sweep-3", "size": 16, "index": 7},
    }
    for name, population in packings.items():
        write_synthetic_run(
            tmp_path / name, "MinAtar/Freeway-v1", True, 0.25, 1, population=population
        )
    runs = load_runs(tmp_path)
    assert [r.population for r in runs] == list(packings.values())
    records = [json.loads((r.folder / RECORD_FILE).read_text()) for r in runs]
    assert [rec["config"] for rec in records[1:]] == [records[0]["config"]] * 2

    identities = pd.DataFrame([run_identity(r) for r in runs])
    assert list(identities.columns) == list(ID_COLUMNS)
    others = identities.drop(columns="run")
    assert (others == others.iloc[0]).all(axis=None)
    for table in (
        final_returns(runs),
        final_dormant(runs, tau=0.1),
        dormant_curves(runs),
        return_curves(runs, window=250),
    ):
        parts = [
            part.drop(columns="run").reset_index(drop=True) for _, part in table.groupby("run")
        ]
        for part in parts[1:]:
            pd.testing.assert_frame_equal(part, parts[0])


# --- tidy tables ------------------------------------------------------------------------------


def test_dormant_curves(runs):
    curves = dormant_curves(runs, taus=(0.0, 0.1))
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "tau", "dormant_fraction"]
    assert len(curves) == 16 * len(LOG_STEPS) * 2
    assert curves.groupby(["game", "method", "replay_ratio", "seed"]).ngroups == 16
    assert set(curves["method"]) == {"DQN", "DQN+ReDo"}
    expected = [
        dormant_value(
            GAMES[r.env_id], r.method == "DQN+ReDo", r.replay_ratio, r.seed, r.env_step, r.tau
        )
        for r in curves.itertuples()
    ]
    np.testing.assert_allclose(curves["dormant_fraction"], expected)
    # the config's ReDo threshold is the paper's rule for each replay ratio
    assert dict(zip(curves["replay_ratio"], curves["redo_tau"], strict=True)) == {
        0.25: 0.025,
        1.0: 0.1,
    }


def test_dormant_curves_names_the_logged_thresholds(runs):
    with pytest.raises(ValueError, match=r"dormant/tau=0.05.*'dormant/tau=0', 'dormant/tau=0.025'"):
        dormant_curves(runs, taus=(0.05,))


def test_dormant_curves_of_runs_without_rows_are_refused(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    RunWriter(tmp_path / "r", config).finish()
    with pytest.raises(ValueError, match="no run has logged a metrics row yet"):
        dormant_curves(load_runs(tmp_path))


def test_return_curves_bins_episodes_by_their_end(runs):
    curves = return_curves(runs, window=250)
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "episode_return", "episodes"]
    one = curves[
        (curves["game"] == "Breakout")
        & (curves["method"] == "DQN+ReDo")
        & (curves["replay_ratio"] == 1.0)
        & (curves["seed"] == 1)
    ].set_index("env_step")
    lvl = level(0, True, 1.0, 1)
    # (0, 250]: episodes ending at 100, 200 (random play, 2 and 4) and 250 (100)
    assert one.loc[250, "episodes"] == 3
    assert one.loc[250, "episode_return"] == pytest.approx((2 + 4 + 100) / 3)
    assert one.loc[500, "episode_return"] == pytest.approx(lvl * 0.5)
    assert one.loc[750, "episode_return"] == pytest.approx(lvl * 0.7)
    assert one.loc[1000, "episode_return"] == pytest.approx(lvl * (0.95 + 1.0) / 2)
    assert list(one.index) == [250, 500, 750, 1000]


def test_return_curves_rejects_a_bad_window(runs):
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            return_curves(runs, window=bad)


@pytest.mark.parametrize(
    ("fraction", "ends"),
    [(0.1, (950, 1000)), (0.5, (700, 950, 1000)), (1.0, (100, 200, 250, *LEARNED_ENDS))],
)
def test_final_returns(runs, fraction, ends):
    final = final_returns(runs, fraction=fraction)
    assert len(final) == 16
    assert list(final.columns) == [*ID_COLUMNS, "fraction", "final_return", "episodes"]
    assert (final["episodes"] == len(ends)).all()
    for row in final.itertuples():
        game, redo = GAMES[row.env_id], row.method == "DQN+ReDo"
        returns = {
            100: RANDOM_BASE[row.game] + row.seed,
            200: RANDOM_BASE[row.game] + row.seed + 2,
            250: 100.0,
        } | {e: level(game, redo, row.replay_ratio, row.seed) * e / TOTAL for e in LEARNED_ENDS}
        assert row.final_return == pytest.approx(np.mean([returns[e] for e in ends]))


def test_final_returns_of_a_run_stopped_early_is_nan(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "r", config) as writer:
        writer.log_episode(400, 20.0, 400)
    (row,) = final_returns(load_runs(tmp_path)).itertuples()
    assert np.isnan(row.final_return)
    assert row.episodes == 0


def test_final_dormant(runs):
    final = final_dormant(runs, tau=0.025, fraction=0.25)  # rows at 800, 900, 1000
    assert len(final) == 16
    assert list(final.columns) == [*ID_COLUMNS, "tau", "fraction", "dormant_fraction", "rows"]
    assert (final["rows"] == 3).all()
    assert (final["tau"] == 0.025).all()
    for row in final.itertuples():
        values = [
            dormant_value(
                GAMES[row.env_id], row.method == "DQN+ReDo", row.replay_ratio, row.seed, s, 0.025
            )
            for s in (800, 900, 1000)
        ]
        assert row.dormant_fraction == pytest.approx(np.mean(values))


def test_early_dormant(runs):
    early = early_dormant(runs, tau=0.1, fraction=0.15)  # first row 300: rows at 300, 400
    assert len(early) == 16
    assert (early["rows"] == 2).all()
    for row in early.itertuples():
        values = [
            dormant_value(
                GAMES[row.env_id], row.method == "DQN+ReDo", row.replay_ratio, row.seed, s, 0.1
            )
            for s in (300, 400)
        ]
        assert row.dormant_fraction == pytest.approx(np.mean(values))


def test_window_dormant_of_a_run_without_rows_is_nan(tmp_path):
    config = DQNConfig.for_env("CartPole-v1", total_steps=1000).to_dict()
    RunWriter(tmp_path / "r", config).finish()
    for table in (final_dormant, early_dormant):
        (row,) = table(load_runs(tmp_path), tau=0.1).itertuples()
        assert np.isnan(row.dormant_fraction) and row.rows == 0


def test_fractions_outside_zero_one_are_refused(runs):
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            final_returns(runs, fraction=bad)
        with pytest.raises(ValueError, match="fraction"):
            final_dormant(runs, tau=0.1, fraction=bad)
        with pytest.raises(ValueError, match="fraction"):
            early_dormant(runs, tau=0.1, fraction=bad)


# --- normalisation ----------------------------------------------------------------------------


def test_random_returns_pool_the_episodes_before_learning_starts(runs):
    random = random_returns(runs)
    # per game 8 runs, each with returns base + seed and base + seed + 2 (seeds 0 and 1);
    # the episode ending at 250 > learning_starts is not random play
    assert random.to_dict() == pytest.approx({"Breakout": 1.0 + 1.5, "Freeway": 0.0 + 1.5})
    assert random.name == "random_return"


def test_random_returns_need_a_random_policy(tmp_path):
    write_synthetic_run(tmp_path / "r", "MinAtar/Breakout-v1", False, 1.0, 0, epsilon_start=0.5)
    with pytest.raises(ValueError, match="epsilon_start"):
        random_returns(load_runs(tmp_path))


def test_normalise_per_game_by_hand():
    final = hand_final()
    assert reference_returns(final).to_dict() == {"A": 8.0, "B": 4.0}
    scored = normalise_per_game(final, {"A": 1.0, "B": -4.0})
    score = scored.set_index(["game", "method", "replay_ratio", "seed"])["score"]
    assert score["A", "DQN", 1.0, 1] == pytest.approx((5 - 1) / (8 - 1))
    assert score["B", "DQN", 1.0, 0] == pytest.approx((0 + 4) / (4 + 4))
    assert score["B", "DQN", 0.25, 0] == pytest.approx((-1 + 4) / (4 + 4))
    # the best setting of each game scores 1 on average
    best = scored.groupby(["game", "method", "replay_ratio"])["score"].mean()
    assert best["A", "DQN+ReDo", 1.0] == pytest.approx(1.0)
    assert best["B", "DQN+ReDo", 1.0] == pytest.approx(1.0)
    assert list(scored.columns) == [*final.columns, "random_return", "reference_return", "score"]
    assert "score" not in final.columns  # pure: the input is left alone


def test_normalise_per_game_with_a_given_reference():
    scored = normalise_per_game(hand_final(), pd.Series({"A": 0.0, "B": 0.0}), {"A": 20, "B": 2})
    assert scored["score"].tolist() == pytest.approx(
        [3 / 20, 5 / 20, 7 / 20, 9 / 20, 10 / 20, 2 / 20, 0, 1, 2, 2, -0.5, 0.5]
    )


def test_normalise_per_game_refuses_undefined_scales():
    with pytest.raises(ValueError, match=r"game\(s\) \['B'\]"):
        normalise_per_game(hand_final(), {"A": 1.0})
    with pytest.raises(ValueError, match=r"not above the random return in game\(s\) \['B'\]"):
        normalise_per_game(hand_final(), {"A": 1.0, "B": 4.0})


def test_normalise_per_game_can_leave_out_undefined_games():
    final = hand_final()
    scored = normalise_per_game(final, {"A": 1.0}, drop_undefined=True)
    assert set(scored["game"]) == {"A"}
    assert scored.equals(normalise_per_game(final[final["game"] == "A"], {"A": 1.0}))
    flat = normalise_per_game(final, {"A": 1.0, "B": 4.0}, drop_undefined=True)
    assert set(flat["game"]) == {"A"}


# --- per layer ------------------------------------------------------------------------------


def test_layer_dormant_curves(runs):
    """The synthetic runs log one layer, fc1, at tau = 0.1, always 0."""
    curves = layer_dormant_curves(runs, tau=0.1)
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "tau", "layer", "dormant_fraction"]
    assert len(curves) == len(runs) * len(LOG_STEPS)
    assert set(curves["layer"]) == {"fc1"} and (curves["dormant_fraction"] == 0).all()
    assert (curves["tau"] == 0.1).all()
    with pytest.raises(ValueError, match="no per-layer column dormant/tau=0/<layer>"):
        layer_dormant_curves(runs, tau=0.0)


def test_layer_dormant_curves_reads_every_layer(tmp_path):
    config = DQNConfig.for_env("MinAtar/Breakout-v1", total_steps=1000).to_dict()
    with RunWriter(tmp_path / "r", config) as writer:
        for step, (conv, fc) in zip((300, 400), ((0.0, 0.5), (0.25, 0.75)), strict=True):
            writer.log_metrics(
                {"env_step": step, "grad_step": step, "dormant/tau=0.1": 0.4}
                | {"dormant/tau=0.1/conv1": conv, "dormant/tau=0.1/fc1": fc}
            )
    curves = layer_dormant_curves(load_runs(tmp_path))
    table = curves.pivot(index="env_step", columns="layer", values="dormant_fraction")
    assert table.to_dict("list") == {"conv1": [0.0, 0.25], "fc1": [0.5, 0.75]}


# --- what is in -----------------------------------------------------------------------------


def test_finished_runs_skip_missing_folders_and_runs_still_running(tmp_path):
    assert finished_runs(tmp_path / "not yet") == []
    write_synthetic_run(tmp_path / "a" / "done", "MinAtar/Breakout-v1", False, 1.0, 0)
    config = DQNConfig.for_env("MinAtar/Breakout-v1", total_steps=1000).to_dict()
    running = RunWriter(tmp_path / "b" / "running", config)
    running.log_episode(10, 1.0, 10)
    found = finished_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert [run.folder.name for run in found] == ["done"]
    assert [run.folder.name for run in finished_runs(str(tmp_path))] == ["done"]


def planned(seeds=(0, 1, 2), **overrides):
    return [
        DQNConfig.for_env(
            env_id, redo=redo, replay_ratio=1.0, seed=seed, total_steps=TOTAL,
            learning_starts=200, **overrides,
        )
        for env_id in GAMES
        for redo in (False, True)
        for seed in seeds
    ]  # fmt: skip


def test_coverage_matches_planned_runs_by_their_settings(runs):
    """The fixture has seeds 0 and 1 of every game, method and ratio: of a plan with seeds
    0-2 at ratio 1, seeds 0 and 1 are in, wherever their folders are."""
    table = coverage(planned(), runs)
    assert list(table.columns) == [*MATCH_COLUMNS, "run", "finished"]
    assert len(table) == 12
    assert table.groupby("seed")["finished"].all().to_dict() == {0: True, 1: True, 2: False}
    assert table.loc[~table["finished"], "run"].isna().all()
    for _, row in table[table["finished"]].iterrows():
        (run,) = [r for r in runs if str(r.folder) == row["run"]]
        assert config_identity(run.config) == {c: row[c] for c in MATCH_COLUMNS}


def test_coverage_counts_only_runs_of_the_planned_settings(runs):
    """A ReDo variant, a longer budget or an unfinished run is another run than planned."""
    assert not coverage(planned(redo_step_mode="elementwise"), runs)["finished"][6:].any()
    longer = [c.replace(total_steps=2 * TOTAL) for c in planned()]
    assert not coverage(longer, runs)["finished"].any()
    as_dicts = coverage([c.to_dict() for c in planned()], runs)
    assert as_dicts.equals(coverage(planned(), runs))
    assert coverage([], runs).empty


def test_coverage_grid_says_which_seeds_are_to_come(runs):
    grid = coverage_grid(coverage(planned(), runs))
    assert list(grid.columns) == ["DQN, 1", "DQN+ReDo, 1"]
    assert list(grid.index) == ["Breakout", "Freeway"]
    assert grid.loc["Breakout", "DQN, 1"] == "2 of 3, seed 2 to come"
    assert coverage_grid(coverage(planned(seeds=(0,)), runs)).iloc[0, 0] == "1 of 1"
    both = coverage_grid(coverage(planned(seeds=(1, 5, 7)), runs), ("game", "method"), ())
    assert both.loc[("Freeway", "DQN+ReDo"), "runs in"] == "1 of 3, seeds 5, 7 to come"
    assert coverage_grid(coverage([], runs)).empty


def test_spread_grid_gives_each_cell_its_mean_and_range():
    table = pd.DataFrame(
        {
            "game": ["Breakout"] * 4 + ["Freeway"] * 2,
            "method": ["DQN", "DQN", "DQN", "DQN+ReDo", "DQN", "DQN"],
            "replay_ratio": [1.0, 1.0, 1.0, 1.0, 0.25, 0.25],
            "final_return": [1.0, 2.0, 6.0, 4.25, 30.0, np.nan],
        }
    )
    grid = spread_grid(table, "final_return")
    assert list(grid.columns) == ["DQN, 0.25", "DQN, 1", "DQN+ReDo, 1"]
    assert grid.loc["Breakout", "DQN, 1"] == "3.0 [1.0, 6.0]"
    assert grid.loc["Breakout", "DQN+ReDo, 1"] == "4.2 [4.2, 4.2]"
    assert grid.loc["Freeway", "DQN, 0.25"] == "30.0 [30.0, 30.0]"  # the NaN run left out
    assert grid.loc["Breakout", "DQN, 0.25"] == "" and grid.loc["Freeway", "DQN, 1"] == ""
    by_game = spread_grid(table, "final_return", ("game", "method"), (), digits=2)
    assert by_game.loc[("Breakout", "DQN+ReDo"), "final_return"] == "4.25 [4.25, 4.25]"
    assert spread_grid(table.iloc[5:], "final_return").empty


# --- ablation variants ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("redo", "overrides", "variant"),
    [
        (False, {}, DQN_VARIANT),
        (False, {"redo_period": 250}, DQN_VARIANT),
        (True, {}, PAPER_REDO),
        (True, {"tau": 0.1}, PAPER_REDO),  # the paper's tau at replay ratio 1
        (True, {"redo_selection": "random"}, RANDOM_SELECTION),
        (True, {"redo_step_mode": "elementwise"}, "ReDo, Adam step: elementwise"),
        (True, {"redo_step_mode": "zero_all"}, "ReDo, Adam step: zero_all"),
        (True, {"redo_init": "xavier_uniform"}, "ReDo, init: xavier_uniform"),
        (True, {"redo_bias": "redraw"}, "ReDo, bias: redraw"),
        (True, {"tau": 0.0}, "ReDo, tau = 0"),
        (True, {"tau": 0.025}, "ReDo, tau = 0.025"),
        (True, {"redo_period": 4000}, "ReDo, F = 4,000"),
        (True, {"redo_period": 250, "tau": 0.0}, "ReDo, tau = 0, F = 250"),
        (
            True,
            {"redo_selection": "all", "redo_period": 50_000},
            "whole network reset every 50,000",
        ),
        (
            True,
            {"redo_selection": "all", "redo_period": 500, "tau": 0.0},
            "whole network reset every 500",
        ),
    ],
)
def test_ablation_variant_is_the_difference_from_the_papers_redo(redo, overrides, variant):
    config = DQNConfig.for_env("MinAtar/Breakout-v1", redo=redo, replay_ratio=1.0, **overrides)
    assert ablation_variant(config_identity(config.to_dict())) == variant


def test_the_papers_tau_depends_on_the_replay_ratio():
    at_quarter = DQNConfig.for_env("MinAtar/Breakout-v1", redo=True, replay_ratio=0.25)
    assert ablation_variant(config_identity(at_quarter.to_dict())) == PAPER_REDO
    other = at_quarter.replace(tau=0.1)
    assert ablation_variant(config_identity(other.to_dict())) == "ReDo, tau = 0.1"


def variant_runs(tmp_path):
    """Breakout at ratio 1: DQN, the paper's ReDo and random selection, seeds 0 and 1."""
    settings = {
        "dqn": (False, {}),
        "redo": (True, {}),
        "random": (True, {"redo_selection": "random"}),
    }
    for name, (redo, overrides) in settings.items():
        for seed in (0, 1):
            write_synthetic_run(
                tmp_path / name / f"s{seed}", "MinAtar/Breakout-v1", redo, 1.0, seed, **overrides
            )
    return load_runs(tmp_path)


def test_with_variants_and_their_order(tmp_path):
    final = with_variants(final_returns(variant_runs(tmp_path)))
    assert final.groupby("variant")["seed"].apply(sorted).to_dict() == {
        DQN_VARIANT: [0, 1],
        PAPER_REDO: [0, 1],
        "ReDo, random selection": [0, 1],
    }
    assert variant_order(["b", "ReDo, a", PAPER_REDO, DQN_VARIANT, "b"]) == [
        DQN_VARIANT,
        PAPER_REDO,
        "ReDo, a",
        "b",
    ]


def test_variant_summary_by_hand(tmp_path):
    """Synthetic final returns (fraction 0.1: the episodes ending at 950 and 1000) are
    level * 0.975; a ReDo run's level is 40 + seed and DQN's 20 + seed (Breakout, ratio 1),
    whatever the selection."""
    runs = variant_runs(tmp_path)
    final = with_variants(final_returns(runs))
    dormant = with_variants(final_dormant(runs, tau=0.1))
    summary = variant_summary(final, dormant)
    assert list(summary.index) == [
        ("Breakout", DQN_VARIANT),
        ("Breakout", PAPER_REDO),
        ("Breakout", "ReDo, random selection"),
    ]
    dqn, redo = summary.loc[("Breakout", DQN_VARIANT)], summary.loc[("Breakout", PAPER_REDO)]
    assert dqn["runs"] == 2 and dqn["seeds"] == "0, 1"
    assert dqn["return min"] == pytest.approx(level(0, False, 1.0, 0) * 0.975)
    assert dqn["return max"] == pytest.approx(level(0, False, 1.0, 1) * 0.975)
    assert redo["return mean"] == pytest.approx(
        np.mean([level(0, True, 1.0, s) for s in (0, 1)]) * 0.975
    )
    expected = np.mean(
        [dormant_value(0, False, 1.0, s, step, 0.1) for s in (0, 1) for step in (1000,)]
    )
    assert dqn["dormant mean"] == pytest.approx(expected)
    assert list(summary["returns vs reference"]) == ["all below", "", "overlapping"]
    alone = variant_summary(final[final["variant"] == DQN_VARIANT], dormant)
    assert list(alone["returns vs reference"]) == [""]


def test_before_reset_share_reads_the_redo_runs(tmp_path, runs):
    assert np.isnan(before_reset_share(runs))  # the synthetic runs do not log the column
    for redo, flags in ((True, (1, 0, 1, 1)), (False, (0, 0))):
        config = DQNConfig.for_env("MinAtar/Breakout-v1", redo=redo, total_steps=1000).to_dict()
        with RunWriter(tmp_path / f"redo-{redo}", config) as writer:
            for i, flag in enumerate(flags):
                writer.log_metrics(
                    {"env_step": 300 + i, "grad_step": i, "redo/scored_before_reset": flag}
                )
    assert before_reset_share(load_runs(tmp_path)) == pytest.approx(0.75)


def test_recycling_curves_give_neurons_per_check_and_skip_what_was_not_logged(tmp_path):
    rows = {  # env_step: (calls so far, recycled, recycled again) in that row's interval
        300: (1, 10, 0),
        400: (1, 0, 0),  # no check in this interval: no point
        500: (3, 12, 8),  # two checks: 6 neurons and 4 again per check
    }
    for name, redo, again in (("redo", True, True), ("old", True, False), ("dqn", False, True)):
        config = DQNConfig.for_env("MinAtar/Breakout-v1", redo=redo, total_steps=1000).to_dict()
        with RunWriter(tmp_path / name, config) as writer:
            for step, (calls, recycled, recycled_again) in rows.items():
                row = {"env_step": step, "grad_step": step, "redo/calls": calls}
                row |= {"redo/recycled": recycled}
                if again:
                    row |= {"redo/recycled_again": recycled_again}
                writer.log_metrics(row)
    curves = recycling_curves(load_runs(tmp_path))
    assert list(curves.columns) == [*ID_COLUMNS, "env_step", "measure", "neurons"]
    assert curves["neurons"].dtype == np.float64 and curves["env_step"].dtype == np.int64
    assert set(curves["run"].map(lambda run: Path(run).name)) == {"redo", "old"}  # not DQN
    redo = curves[curves["run"].str.endswith("redo")]
    table = redo.pivot(index="env_step", columns="measure", values="neurons")
    assert table.to_dict("list") == {"recycled": [10.0, 6.0], "recycled again": [0.0, 4.0]}
    old = curves[curves["run"].str.endswith("old")]
    assert set(old["measure"]) == {"recycled"}  # recorded before the column existed
    dqn_only = recycling_curves([run for run in load_runs(tmp_path) if run.folder.name == "dqn"])
    assert dqn_only.empty and list(dqn_only.columns) == list(curves.columns)


def test_recycling_curves_of_the_synthetic_redo_runs(runs):
    curves = recycling_curves(runs)
    assert set(curves["method"]) == {"DQN+ReDo"}
    assert curves["neurons"].dtype == np.float64
    again = curves[curves["measure"] == "recycled again"]
    assert (again["neurons"] == again["env_step"] // 200).all()
