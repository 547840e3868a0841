"""Sweeps (redo.population.sweep, ``python -m redo sweep``): the grid, the plan, resuming, and real
tiny sweeps, in this process and on a local Ray instance."""

import json
import shutil
from pathlib import Path

import pytest

import redo.population.lockstep
from redo.cli import main
from redo.agent.config import ConfigError, DQNConfig
from redo.records.run import RECORD_FILE, RunWriter, load_run, load_runs
from redo.population.sweep import (
    MANIFEST_FILE,
    POPULATIONS_DIR,
    Grid,
    SweepError,
    plan,
    run_folder,
    run_status,
    run_sweep,
    write_manifest,
)

#: Settings of CartPole runs of a second or so.
TINY = {
    "total_steps": 300,
    "learning_starts": 100,
    "batch_size": 32,
    "buffer_size": 1000,
    "log_interval": 10,
    "target_update_period": 50,
    "checkpoint_interval": 100,
}
TINY_ARGS = ["--steps", "300"] + [
    arg for name, value in TINY.items() if name != "total_steps" for arg in ("--set", f"{name}={value}")
]  # fmt: skip


def grid(**axes):
    """A CartPole grid: dqn and redo at replay ratio 1, seeds 0 and 1 (4 runs) by default."""
    defaults = {
        "envs": ("CartPole-v1",),
        "replay_ratios": (1.0,),
        "seeds": (0, 1),
        "settings": TINY,
    }
    return Grid(**(defaults | axes))


def sweep_argv(out, *extra):
    return ["sweep", "--envs", "CartPole-v1", "--replay-ratios", "1", "--seeds", "0", "1",
            "--out", str(out), *TINY_ARGS, "--no-progress", *extra]  # fmt: skip


def fake_run(folder, config, status="finished", checkpoint=True):
    """A realistic run record for ``config``: one metrics row (and a checkpoint), then
    ``status``."""
    with RunWriter(folder, config.to_dict()) as writer:
        writer.log_metrics({"env_step": 10, "grad_step": 10, "loss": 0.5})
        if checkpoint:
            writer.save_checkpoint({"env_step": 10})
        if status == "interrupted":
            writer.close("interrupted")


def snapshot(root):
    """Every file under ``root`` with its bytes, to tell that nothing was written."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


class FakeTrainer:
    """Stands in for redo.population.train_population: writes each member's run (with a
    checkpoint, continued on resume) and records the call; interrupts the populations named
    in ``interrupt`` once."""

    def __init__(self, interrupt=()):
        self.calls = []
        self.interrupt = set(interrupt)

    def __call__(self, configs, out_dir, device=None, progress=False, run_folders=None, **kw):
        out_dir, resume = Path(out_dir), kw.pop("resume")
        assert not kw
        assert (out_dir / MANIFEST_FILE).is_file(), "the manifest is written before training"
        self.calls.append({"name": out_dir.name, "folders": list(run_folders), "resume": resume})
        writers = [
            RunWriter(f, c.to_dict(), resume=resume)
            for f, c in zip(run_folders, configs, strict=True)
        ]
        step = 20 if resume else 10
        for writer in writers:
            writer.log_metrics({"env_step": step, "grad_step": step, "loss": 0.5})
            writer.save_checkpoint({"env_step": step})
        if out_dir.name in self.interrupt:
            self.interrupt.remove(out_dir.name)
            for writer in writers:
                writer.close("interrupted")
            raise KeyboardInterrupt
        for writer in writers:
            writer.finish()


# --- the grid ---------------------------------------------------------------------------


def test_grid_has_one_run_per_combination_with_the_papers_tau():
    g = Grid(envs=["CartPole-v1", "Acrobot-v1"], seeds=[0, 1, 2], settings={"total_steps": 300})
    assert g.envs == ("CartPole-v1", "Acrobot-v1") and g.seeds == (0, 1, 2)  # tuples
    configs = g.configs()
    assert len(configs) == 2 * 2 * 2 * 3  # envs x methods x replay ratios (0.25, 1) x seeds
    assert len({run_folder("out", c) for c in configs}) == len(configs)
    assert {(c.env_id, c.redo, c.replay_ratio, c.seed) for c in configs} == {
        (e, r, rr, s)
        for e in ("CartPole-v1", "Acrobot-v1")
        for r in (False, True)
        for rr in (0.25, 1.0)
        for s in (0, 1, 2)
    }
    assert all(c.tau == (0.025 if c.replay_ratio == 0.25 else 0.1) for c in configs)
    assert all(c.total_steps == 300 for c in configs)
    first = configs[0]  # the grid's order: env, method, ratio, tau, seed
    assert (first.env_id, first.redo, first.replay_ratio, first.seed) == (
        "CartPole-v1",
        False,
        0.25,
        0,
    )
    assert [c.seed for c in configs[:4]] == [0, 1, 2, 0]


def test_grid_with_explicit_taus_and_settings():
    g = grid(taus=(0.05, 0.1), replay_ratios=(0.25, 1.0), methods=("redo",))
    configs = g.configs()
    assert len(configs) == 1 * 2 * 2 * 2
    assert {(c.replay_ratio, c.tau) for c in configs} == {
        (r, t) for r in (0.25, 1.0) for t in (0.05, 0.1)
    }
    assert all(c.redo and c.log_interval == 10 and c.buffer_size == 1000 for c in configs)
    names = sorted(run_folder("out", c).name for c in configs if c.seed == 0)
    assert names == [
        "redo-rr0.25-tau0.05-s0",
        "redo-rr0.25-tau0.1-s0",
        "redo-rr1-s0",
        "redo-rr1-tau0.05-s0",
    ]


@pytest.mark.parametrize(
    ("axes", "field", "message"),
    [
        ({"envs": ()}, "envs", "the grid's envs is empty"),
        ({"methods": ()}, "methods", "the grid's methods is empty"),
        ({"replay_ratios": []}, "replay_ratios", "the grid's replay_ratios is empty"),
        ({"seeds": ()}, "seeds", "the grid's seeds is empty"),
        ({"methods": ("dqn", "ppo")}, "methods", "unknown method(s) ['ppo']"),
        ({"seeds": (0, 1, 0)}, "seeds", "repeat 0"),
        ({"replay_ratios": (1, 1.0)}, "replay_ratios", "repeat"),
        ({"envs": "CartPole-v1"}, "envs", "must be a sequence"),
        ({"settings": {"seed": 3}}, "seed", "are axes of the grid"),
        ({"settings": {"tau": 0.1, "lr": 1e-3}}, "tau", "are axes of the grid"),
        ({"settings": {"env_id": "Acrobot-v1"}}, "env_id", "are axes of the grid"),
    ],
)
def test_grid_errors_name_the_axis(axes, field, message):
    with pytest.raises(ConfigError) as info:
        grid(**axes)
    assert info.value.field == field and message in str(info.value)


def test_grid_values_are_checked_by_the_config():
    with pytest.raises(ConfigError) as info:
        grid(settings={"lr": -1.0}).configs()
    assert info.value.field == "lr"
    with pytest.raises(ConfigError) as info:
        grid(replay_ratios=(0.0,)).configs()
    assert info.value.field == "replay_ratio"
    assert len(grid(taus=()).configs()) == 4  # an empty taus is the paper's rule


def test_run_folder_names_tau_only_when_not_the_papers():
    config = DQNConfig.for_env("MinAtar/Breakout-v1", replay_ratio=0.25, seed=3, redo=True)
    assert run_folder("runs", config) == Path("runs/MinAtar/Breakout-v1/redo-rr0.25-s3")
    assert run_folder("runs", config.replace(tau=0.1)).name == "redo-rr0.25-tau0.1-s3"
    config = DQNConfig.for_env("CartPole-v1", replay_ratio=1, seed=0)
    assert run_folder("o", config) == Path("o/CartPole-v1/dqn-rr1-s0")
    assert run_folder("o", config.replace(tau=0.025)).name == "dqn-rr1-tau0.025-s0"


# --- the plan -----------------------------------------------------------------------------


def test_plan_groups_by_shared_settings_in_chunks(tmp_path):
    g = Grid(
        envs=("CartPole-v1", "Acrobot-v1"),
        replay_ratios=(0.25, 1.0),
        taus=(0.025, 0.1),
        seeds=(0, 1, 2),
        settings=TINY,
    )
    jobs = plan(g, tmp_path, max_population=5)
    configs = g.configs()
    per_env = len(configs) // 2  # 2 methods x 2 ratios x 2 taus x 3 seeds = 24
    assert [len(j.configs) for j in jobs] == [5] * 4 + [4] + [5] * 4 + [4]
    assert all(not j.resume for j in jobs)
    assert all(len({c.env_id for c in j.configs}) == 1 for j in jobs)  # one env per population
    # every run once, in the grid's order, each in its own folder
    assert [c for j in jobs for c in j.configs] == configs
    assert [f for j in jobs for f in j.run_folders] == [run_folder(tmp_path, c) for c in configs]
    assert all(j.folder.parent == tmp_path / POPULATIONS_DIR for j in jobs)
    assert len({j.name for j in jobs}) == len(jobs) and all(j.name.startswith("pop-") for j in jobs)
    assert len(plan(g, tmp_path, max_population=per_env)) == 2
    assert len(plan(g, tmp_path, max_population=1000)) == 2  # envs never share a population
    assert list(tmp_path.iterdir()) == []  # planning writes nothing
    # settings shared by a population that it cannot run are refused here already
    with pytest.raises(ConfigError) as info:
        plan(grid(settings=TINY | {"redo_bias": "redraw"}), tmp_path)
    assert info.value.field == "redo_bias"
    with pytest.raises(ValueError, match="max_population must be >= 1"):
        plan(g, tmp_path, max_population=0)


def test_plan_names_populations_by_their_members(tmp_path):
    g = grid(seeds=(0, 1, 2))
    names = [j.name for j in plan(g, tmp_path / "a", max_population=2)]
    assert names == [j.name for j in plan(g, tmp_path / "a", max_population=2)]
    assert names == [j.name for j in plan(g, tmp_path / "b", max_population=2)]  # relative
    assert names != [j.name for j in plan(g, tmp_path / "a", max_population=3)]


def test_plan_skips_finished_runs(tmp_path):
    g = grid(seeds=(0, 1, 2))  # 6 runs
    first = plan(g, tmp_path, max_population=2)
    for folder, config in zip(first[0].run_folders, first[0].configs, strict=True):
        fake_run(folder, config)  # the first population finished
    assert run_status(first[0].run_folders[0]) == "finished"
    jobs = plan(g, tmp_path, max_population=2)
    assert [j.name for j in jobs] == [j.name for j in first[1:]]  # the others keep their ids
    assert not {f for j in jobs for f in j.run_folders} & set(first[0].run_folders)
    # a finished run stored on another device is the same run
    folder = first[1].run_folders[0]
    fake_run(folder, first[1].configs[0].replace(device="meta"))
    assert folder not in {f for j in plan(g, tmp_path) for f in j.run_folders}


def test_plan_resumes_an_interrupted_population_whole(tmp_path):
    g = grid(seeds=(0, 1, 2))
    first = plan(g, tmp_path, max_population=4)  # 4 + 2 runs
    interrupted = first[1]
    write_manifest(interrupted)
    manifest = json.loads((interrupted.folder / MANIFEST_FILE).read_text())
    assert manifest == {"runs": [str(f.relative_to(tmp_path)) for f in interrupted.run_folders]}
    for folder, config in zip(interrupted.run_folders, interrupted.configs, strict=True):
        fake_run(folder, config, status="interrupted")
    assert run_status(interrupted.run_folders[0]) == "unfinished"

    jobs = plan(g, tmp_path, max_population=1)  # another size: the manifest still decides
    assert jobs[0].resume and jobs[0].folder == interrupted.folder
    assert jobs[0].run_folders == interrupted.run_folders
    assert jobs[0].configs == interrupted.configs
    assert [len(j.run_folders) for j in jobs[1:]] == [1] * 4 and not any(j.resume for j in jobs[1:])

    # a manifest whose runs all finished, or that were never started, is no longer a population
    for folder, config in zip(first[0].run_folders, first[0].configs, strict=True):
        fake_run(folder, config)
    write_manifest(first[0])
    assert [j.name for j in plan(g, tmp_path, max_population=4)] == [interrupted.name]


def test_plan_refuses_unfinished_runs_it_cannot_place(tmp_path):
    g = grid()
    (job,) = plan(g, tmp_path)
    fake_run(job.run_folders[1], job.configs[1], status="interrupted")
    with pytest.raises(ValueError, match="no population manifest") as info:
        plan(g, tmp_path)
    assert str(job.run_folders[1]) in str(info.value) and "redo train --resume" in str(info.value)

    write_manifest(job)
    for folder, config in zip(job.run_folders, job.configs, strict=True):
        if folder != job.run_folders[1]:
            fake_run(folder, config, status="interrupted")
    assert plan(g, tmp_path)[0].resume
    (other := tmp_path / POPULATIONS_DIR / "pop-other").mkdir()
    (other / MANIFEST_FILE).write_text(json.dumps({"runs": [job.members()[1]]}))
    with pytest.raises(ValueError, match="both list the unfinished runs"):
        plan(g, tmp_path)
    (other / MANIFEST_FILE).write_text(json.dumps({"runs": [job.members()[1], "X/dqn-rr1-s0"]}))
    with pytest.raises(ValueError, match=r"are not in this grid"):
        plan(g, tmp_path)
    (other / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="is not a population manifest"):
        plan(g, tmp_path)


def test_plan_refuses_a_population_that_cannot_resume(tmp_path):
    g = grid()
    (job,) = plan(g, tmp_path)
    write_manifest(job)
    for folder, config in zip(job.run_folders[:3], job.configs, strict=False):
        fake_run(folder, config, status="interrupted", checkpoint=False)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="interrupted before its first checkpoint") as info:
        plan(g, tmp_path)  # the fourth run never started: it has no checkpoint either
    message = str(info.value)
    assert f"population {job.folder} cannot resume" in message
    assert f"delete its run folders {[str(f) for f in job.run_folders[:3]]}" in message
    with pytest.raises(ValueError, match="cannot resume"):
        run_sweep(g, tmp_path)
    assert snapshot(tmp_path) == before
    for folder in job.run_folders[:3]:  # as the message says: delete them, and it trains anew
        shutil.rmtree(folder)
    (again,) = plan(g, tmp_path)
    assert again.name == job.name and not again.resume

    for folder, config in zip(job.run_folders, job.configs, strict=True):
        fake_run(folder, config, status="finished" if config.seed == 0 else "interrupted")
    with pytest.raises(ValueError, match=r"s0'\] finished without the others"):
        plan(g, tmp_path)


def test_plan_never_overwrites_a_run_of_other_settings(tmp_path):
    g = grid()
    config = g.configs()[2]
    folder = run_folder(tmp_path, config)
    fake_run(folder, config.replace(lr=1e-3, batch_size=64))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="holds a run with other settings") as info:
        plan(g, tmp_path)
    assert str(folder) in str(info.value) and "batch_size, lr" in str(info.value)
    with pytest.raises(ValueError, match="holds a run with other settings"):
        run_sweep(g, tmp_path)
    assert snapshot(tmp_path) == before


def test_plan_refuses_runs_that_would_share_a_folder(tmp_path):
    with pytest.raises(ValueError, match="would share the folder"):
        plan(grid(taus=(0.05, 0.0500000001)), tmp_path)


# --- run_sweep and the command line, with a fake trainer ------------------------------------


def test_interrupted_sweep_resumes_and_then_has_nothing_to_do(tmp_path, monkeypatch, capsys):
    names = [j.name for j in plan(grid(), tmp_path, max_population=2)]
    fake = FakeTrainer(interrupt=[names[1]])
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)

    assert main(sweep_argv(tmp_path, "--max-population", "2")) == 130
    out, err = capsys.readouterr()
    assert f"population {names[0]} done (new, 2 runs)" in out and "interrupted" in err
    assert [(c["name"], c["resume"]) for c in fake.calls] == [(names[0], False), (names[1], False)]

    assert main(sweep_argv(tmp_path, "--max-population", "2", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "0 new runs and 2 to resume in 1 population; 2 finished runs skipped" in out
    assert f"population {names[1]} (resume, 2 runs):\n  CartPole-v1/redo-rr1-s0\n" in out
    assert (
        "finished, skipped (2 runs):\n  CartPole-v1/dqn-rr1-s0\n  CartPole-v1/dqn-rr1-s1\n" in out
    )
    assert len(fake.calls) == 2  # a dry run trains nothing

    # the manifest, not --max-population, says which runs resume together
    assert main(sweep_argv(tmp_path, "--max-population", "1")) == 0
    out = capsys.readouterr().out
    assert fake.calls[2] == {"name": names[1], "folders": fake.calls[1]["folders"], "resume": True}
    assert "0 runs trained, 2 resumed, 2 skipped as finished" in out

    assert main(sweep_argv(tmp_path)) == 0
    assert "0 runs trained, 0 resumed, 4 skipped as finished" in capsys.readouterr().out
    assert len(fake.calls) == 3
    runs = load_runs(tmp_path)
    assert len(runs) == 4 and all(r.record["status"] == "finished" for r in runs)
    resumed = load_run(tmp_path / "CartPole-v1" / "redo-rr1-s1")
    assert list(resumed.metrics["env_step"]) == [10, 20] and len(resumed.record["segments"]) == 2


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    argv = ["sweep", "--envs", "CartPole-v1", "Acrobot-v1", "--methods", "redo", "--taus", "0.05",
            "--out", str(out_dir), "--max-population", "4", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == f"sweep under {out_dir}: 12 new runs and 0 to resume in 4 populations; 0 finished runs skipped"
    )
    headers = [line for line in lines if line.startswith("population ")]
    assert [h.split(" ", 2)[2] for h in headers] == ["(new, 4 runs):", "(new, 2 runs):"] * 2
    assert lines[1:6] == [
        headers[0],
        "  CartPole-v1/redo-rr0.25-tau0.05-s0",
        "  CartPole-v1/redo-rr0.25-tau0.05-s1",
        "  CartPole-v1/redo-rr0.25-tau0.05-s2",
        "  CartPole-v1/redo-rr1-tau0.05-s0",
    ]
    assert not out_dir.exists()


def test_set_reads_values_as_the_configs_types(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("redo.cli.run_sweep", lambda grid, out, **kw: seen.update(grid=grid, **kw))
    argv = sweep_argv(tmp_path, "--set", "lr=1e-3", "--set", "save_replay_in_checkpoint=off",
                      "--set", "redo_step_mode=keep", "--device", "cpu", "--max-population", "3",
                      "--ray-address", "auto", "--cpus-per-population", "2")  # fmt: skip
    assert main(argv) == 0
    settings = seen["grid"].settings
    assert settings["lr"] == 1e-3 and isinstance(settings["lr"], float)
    assert settings["save_replay_in_checkpoint"] is False
    assert settings["redo_step_mode"] == "keep"
    assert settings["log_interval"] == 10 and isinstance(settings["log_interval"], int)
    assert settings["total_steps"] == 300
    assert seen["grid"].methods == ("dqn", "redo") and seen["grid"].replay_ratios == (1.0,)
    assert seen["grid"].taus == () and seen["grid"].seeds == (0, 1)
    assert (seen["max_population"], seen["device"], seen["ray_address"]) == (3, "cpu", "auto")
    assert (seen["cpus_per_population"], seen["gpus_per_population"]) == (2.0, 0.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "lr=abc"], "argument --set: lr=abc: invalid float value 'abc'"),
        (["--set", "log_interval=1.5"], "argument --set: log_interval=1.5: invalid int value"),
        (["--set", "save_replay_in_checkpoint=maybe"], "argument --set: save_replay_in_checkpoint=maybe: save_replay_in_checkpoint takes true or false"),
        (["--set", "learning_rate=1"], "argument --set: unknown setting 'learning_rate'; settings are"),
        (["--set", "lr"], "argument --set: expected NAME=VALUE, got 'lr'"),
        (["--set", "seed=1"], "argument --set: seed has an option of its own: use --seeds"),
        (["--set", "redo=true"], "argument --set: redo has an option of its own: use --methods"),
        (["--set", "total_steps=9"], "argument --set: total_steps has an option of its own: use --steps"),
        (["--set", "lr=-1"], "argument --set: lr must be a finite number > 0"),
        (["--set", "lr=1", "--set", "lr=2"], "argument --set: lr is set twice"),
        (["--set", "redo_init=lecun_normal"], "argument --set: a population redraws recycled weights"),
        (["--steps", "0"], "argument --steps: total_steps must be an integer >= 1"),
        (["--seeds", "0", "0"], "argument --seeds: the grid's seeds repeat 0"),
        (["--replay-ratios", "-1"], "argument --replay-ratios: replay_ratio must be a finite number > 0"),
        (["--taus", "-1"], "argument --taus: tau must be a finite number >= 0"),
        (["--envs", "Nope-v0"], "argument --envs: unsupported environment id 'Nope-v0'"),
        (["--methods", "ppo"], "argument --methods: invalid choice: 'ppo'"),
        (["--max-population", "0"], "argument --max-population: must be an integer >= 1, got '0'"),
        (["--cpus-per-population", "-1"], "argument --cpus-per-population: must be a number >= 0"),
        (["--device", "gpu0"], "argument --device: not a torch device: 'gpu0'"),
    ],
)  # fmt: skip
def test_bad_sweep_options_exit_2_naming_the_option(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(sweep_argv(tmp_path, *extra, "--dry-run"))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: python -m redo sweep") and len(lines) == 2
    assert message in lines[1]


def test_a_taken_run_folder_is_an_error_of_out(tmp_path, capsys):
    config = grid().configs()[0]
    fake_run(run_folder(tmp_path, config), config.replace(gamma=0.5))
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit):
        main(sweep_argv(tmp_path))
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        "argument --out:" in line and "dqn-rr1-s0 holds a run with other settings (gamma)" in line
    )
    assert snapshot(tmp_path) == before


# --- real training ------------------------------------------------------------------------


def check_runs(out, g):
    """Every run of grid ``g`` under ``out`` is finished, with the grid's config and metrics."""
    runs = {r.folder: r for r in load_runs(out)}
    assert len(runs) == len(g.configs())
    for config in g.configs():
        run = runs[run_folder(out, config)]
        assert run.record["status"] == "finished"
        assert run.config == config.to_dict()
        assert len(run.metrics) > 0 and run.metrics["env_step"].max() <= config.total_steps
        assert run.record["env_steps"] == config.total_steps
    return runs


def test_real_sweep_trains_every_run_once(tmp_path, capsys):
    argv = sweep_argv(tmp_path, "--replay-ratios", "0.25", "1", "--max-population", "4")
    assert main(argv) == 0  # 2 methods x 2 ratios x 2 seeds = 8 runs in 2 populations
    out = capsys.readouterr().out
    assert "8 new runs and 0 to resume in 2 populations" in out
    assert out.count(" done (new, 4 runs): CartPole-v1/") == 2
    assert "8 runs trained, 0 resumed, 0 skipped as finished" in out
    g = grid(replay_ratios=(0.25, 1.0))
    runs = check_runs(tmp_path, g)
    rr1 = runs[tmp_path / "CartPole-v1" / "redo-rr1-s0"].metrics
    assert rr1["grad_step"].iloc[-1] == 200  # (300 - 100 learning starts) x ratio 1
    for job in plan(grid(replay_ratios=(0.25, 1.0), seeds=(0, 1, 2)), tmp_path, 4):
        assert all(f.name.endswith("-s2") for f in job.run_folders)  # only seed 2 is left
    populations = sorted((tmp_path / POPULATIONS_DIR).iterdir())
    assert len(populations) == 2
    assert all(
        (p / MANIFEST_FILE).is_file() and (p / "population.json").is_file() for p in populations
    )

    records = {p: p.read_bytes() for p in tmp_path.rglob(RECORD_FILE)}
    assert main(argv) == 0
    assert "0 runs trained, 0 resumed, 8 skipped as finished" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in tmp_path.rglob(RECORD_FILE)} == records


def test_real_sweep_resumes_an_interrupted_population_exactly(tmp_path, monkeypatch):
    g = grid(methods=("redo",), settings=TINY | {"redo_period": 20})  # 2 runs, 1 population
    run_sweep(g, tmp_path / "reference")

    step_envs = redo.population.Lockstep.step_envs

    def interrupted(self, obs, actions, env_step):
        if env_step == 150:  # after the checkpoints at env step 100
            raise KeyboardInterrupt
        return step_envs(self, obs, actions, env_step)

    monkeypatch.setattr(redo.population.Lockstep, "step_envs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(g, tmp_path / "sweep")
    monkeypatch.undo()
    (job,) = plan(g, tmp_path / "sweep")
    assert job.resume
    assert run_sweep(g, tmp_path / "sweep") == [job]

    runs = check_runs(tmp_path / "sweep", g)
    for config in g.configs():
        run = runs[run_folder(tmp_path / "sweep", config)]
        reference = load_run(run_folder(tmp_path / "reference", config))
        assert len(run.record["segments"]) == 2
        assert run.episodes.equals(reference.episodes)
        same = [c for c in run.metrics.columns if "time" not in c and c != "sps"]
        assert run.metrics[same].equals(reference.metrics[same])
        assert run.metrics["redo/calls"].iloc[-1] > 0


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance on this machine for the module's Ray tests (start-up takes seconds).
    Ray is a test dependency: without it this fails, it does not skip."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_sweep_on_a_local_ray_instance(tmp_path, local_ray):
    g = grid()  # 4 runs in 2 populations, trained at once as 2 Ray tasks of 1 CPU
    blocked = run_folder(tmp_path, g.configs()[2])  # the first run of the second population
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the run folder should be")
    done = []
    with pytest.raises(SweepError, match="1 of 2 populations failed") as info:
        run_sweep(g, tmp_path, max_population=2, ray_address="local", on_done=done.append)
    jobs = plan(g, tmp_path, max_population=2)
    assert len(jobs) == 1 and jobs[0].name in str(info.value)
    assert len(done) == 1 and done[0].name != jobs[0].name  # the other one ran to its end

    blocked.unlink()
    assert [j.name for j in run_sweep(g, tmp_path, 2, ray_address="local")] == [jobs[0].name]
    assert local_ray.is_initialized()  # an instance the sweep did not start is left running
    check_runs(tmp_path, g)
    assert run_sweep(g, tmp_path, 2, ray_address="local") == []
