"""The target checks of stored benchmark reports, on hand-made reports."""

from __future__ import annotations

import json

import pytest

from redo.bench.performance import (
    load_reports,
    population_bound,
    population_reach,
    redo_cost_share,
    round_spread,
    target_checks,
)
from redo.bench.runner import speed_ratio
from redo.bench.settings import INTERVALS


def row(method, agents, sps, redo=False, redo_share=0.0, score_share=0.0, threads=1):
    return {
        "method": method,
        "threads": threads,
        "env": "MinAtar/Breakout-v1",
        "redo": redo,
        "agents": agents,
        "replay_ratio": 1.0,
        "redo_period": 100,
        "window_env_steps": 400,
        "env_steps_per_s": sps,
        "redo_share": redo_share,
        "score_share": score_share,
    }


def report(device="cpu", rows=None, roofline=()):
    return {
        "command": "python -m redo bench",
        "date": "2026-11-24T00:00:00+00:00",
        "provenance": {"device": device},
        "rows": rows
        or [
            row("single", 1, 300.0),
            row("reference", 1, 400.0),
            row("population", 8, 600.0, threads=2),
            row("single", 1, 290.0, redo=True, redo_share=0.05, score_share=0.01),
            row("reference", 1, 250.0, redo=True),
        ],
        "micro": [],
        "roofline": list(roofline),
    }


def test_target_checks_compare_ratios_with_goals():
    checks = target_checks(report()).set_index(["target", "where"])
    off = "MinAtar/Breakout-v1, ReDo off"
    assert checks.loc[("single / reference loop (threads 1)", off), "measured"] == pytest.approx(
        0.75
    )
    assert not checks.loc[("single / reference loop (threads 1)", off), "met"]
    population = "population K=8 / single (threads 2 / 1)"
    assert checks.loc[(population, off), "measured"] == pytest.approx(2.0)
    assert checks.loc[(population, off), "met"]
    on = "MinAtar/Breakout-v1, ReDo on"
    assert checks.loc[("single / reference loop (threads 1)", on), "met"]  # 290 / 250
    whole = checks.loc[("ReDo on / off, env steps/s, single K=1, threads 1", "MinAtar/Breakout-v1")]
    assert whole["measured"] == pytest.approx(290 / 300) and not whole["met"]  # 0.967 < 0.97


def test_gpu_reports_use_the_gpu_target():
    rows = [row("single", 1, 100.0), row("population", 64, 2_900.0)]
    checks = target_checks(report("cuda:0", rows))
    (population,) = checks[checks["target"].str.startswith("population")].itertuples()
    assert population.target == "population K=64 / single (threads 1 / 1)"
    assert population.measured == pytest.approx(29.0) and not population.met


def test_each_loop_is_taken_at_its_fastest_thread_count():
    rows = [
        row("single", 1, 300.0, threads=1),
        row("single", 1, 200.0, threads=2),
        row("reference", 1, 280.0, threads=1),
        row("reference", 1, 100.0, threads=2),
        row("population", 8, 400.0, threads=1),
        row("population", 8, 480.0, threads=2),
    ]
    checks = target_checks(report(rows=rows)).set_index("target")["measured"]
    assert checks["population K=8 / single (threads 2 / 1)"] == pytest.approx(1.6)
    assert checks["single / reference loop (threads 1)"] == pytest.approx(300 / 280)
    assert checks["single / reference loop (threads 2)"] == pytest.approx(2.0)


def test_reports_without_threads_per_row_take_the_reports_thread_count():
    rows = [row("single", 1, 100.0), row("population", 8, 200.0)]
    for r in rows:
        del r["threads"]
    old = report(rows=rows) | {"provenance": {"device": "cpu", "hardware": {"torch_threads": 1}}}
    (population,) = target_checks(old).itertuples()
    assert population.target == "population K=8 / single (threads 1 / 1)"


def test_ratios_pair_the_rounds_measured_side_by_side():
    """A slow moment of the machine slows both rows of its round: the check divides round by
    round, so a ratio of medians taken from different rounds cannot fake or hide a speed-up."""
    single = row("single", 1, 200.0) | {"rounds_env_steps_per_s": [100.0, 200.0, 400.0]}
    population = row("population", 8, 300.0) | {"rounds_env_steps_per_s": [150.0, 300.0, 1000.0]}
    (check,) = target_checks(report(rows=[single, population])).itertuples()
    assert check.measured == pytest.approx(1.5)  # median of 1.5, 1.5, 2.5
    assert speed_ratio(population, single) == pytest.approx(1.5)
    assert speed_ratio(row("single", 1, 100.0), row("single", 1, 50.0)) == 2.0  # no rounds


def test_redo_cost_is_rescaled_to_the_papers_period_and_log_interval():
    # bench: reset every 100 gradient steps, a log row every 400 / INTERVALS gradient steps
    r = row("single", 1, 1.0, redo=True, redo_share=0.05, score_share=0.01)
    expected = 0.05 * 100 / 1000 + 0.01 * (400 / INTERVALS) / 1000
    assert redo_cost_share(r) == pytest.approx(expected)


def test_population_bound_is_single_step_time_over_update_floor():
    roofline = [
        {"env_id": "MinAtar/Breakout-v1", "per_agent_floor_s": 0.002, "kernel_floor_s": 0.004}
    ]
    (bound,) = population_bound(report(roofline=roofline)).to_dict("records")
    assert bound["single ms/env step"] == pytest.approx(1000 / 300)
    assert bound["max speed-up (compute)"] == pytest.approx((1 / 300) / 0.002)
    assert bound["max speed-up (kernels)"] == pytest.approx((1 / 300) / 0.004)


def test_population_bound_takes_the_single_loop_at_its_fastest_count_as_the_target_does():
    rows = [row("single", 1, 300.0, threads=1), row("single", 1, 600.0, threads=2)]
    roofline = [
        {"env_id": "MinAtar/Breakout-v1", "per_agent_floor_s": 0.001, "threads": t} for t in (1, 2)
    ]
    bounds = population_bound(report(rows=rows, roofline=roofline))
    assert list(bounds["threads"]) == [1, 2]
    assert list(bounds["single ms/env step"]) == pytest.approx([1000 / 600] * 2)
    assert bounds["max speed-up (kernels)"].isna().all()  # a report from before layer timing


@pytest.mark.parametrize(("kernel_floor_s", "within"), [(0.001, True), (0.003, False)])
def test_population_reach_compares_the_goal_with_the_best_kernel_bound(kernel_floor_s, within):
    roofline = [
        {"env_id": "MinAtar/Breakout-v1", "per_agent_floor_s": 0.001, "kernel_floor_s": f}
        for f in (0.01, kernel_floor_s)  # two thread counts: the better one counts
    ]
    (reach,) = population_reach(report(roofline=roofline)).to_dict("records")
    assert reach["goal"] == "K=8: 1.5x"
    assert reach["max speed-up (kernels)"] == pytest.approx((1 / 300) / kernel_floor_s)
    assert reach["within reach of the kernels"] is within


def test_round_spread_is_the_extreme_rounds_over_the_median():
    rows = [row("single", 1, 200.0) | {"rounds_env_steps_per_s": [100.0, 200.0, 300.0]}]
    (spread,) = round_spread(report(rows=rows)).to_dict("records")
    assert spread["slowest / median"] == 0.5 and spread["fastest / median"] == 1.5


def test_load_reports_sorts_by_date_and_rejects_other_json(tmp_path):
    late, early = report(), report()
    early["date"] = "2025-01-01T00:00:00+00:00"
    (tmp_path / "a.json").write_text(json.dumps(late))
    (tmp_path / "b.json").write_text(json.dumps(early))
    assert [r["file"] for r in load_reports(tmp_path)] == ["b.json", "a.json"]
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match=r"c.json is not a `python -m redo bench` report"):
        load_reports(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m redo bench --out"):
        load_reports(tmp_path / "missing")
