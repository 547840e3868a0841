"""Sweeps (redo.population.sweep, ``python -m redo sweep``): the grid, the plan, resuming and
restarting, and real tiny sweeps, in this process, on a pool of worker processes and on a
local Ray instance."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

import redo.population.lockstep
import redo.population.sweep as sweep
import redo.records.provenance
from redo.agent.config import ConfigError, DQNConfig
from redo.agent.metrics import TIMING_COLUMNS
from redo.cli import main
from redo.core.recycle import INIT_CHOICES
from redo.population.lockstep import POPULATION_CHECKPOINT, Lockstep
from redo.population.sweep import (
    MANIFEST_FILE,
    POPULATIONS_DIR,
    Grid,
    SweepError,
    interrupt_on_sigterm,
    plan,
    run_folder,
    run_jobs,
    run_status,
    run_sweep,
    write_manifest,
)
from redo.records.reader import load_run, load_runs
from redo.records.record import RECORD_FILE, RUN_FILES
from redo.records.writer import RunWriter

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


def fake_run(folder, config, status="finished", population=None):
    """A realistic run record for ``config``: one metrics row, then ``status``."""
    with RunWriter(folder, config.to_dict(), population=population) as writer:
        writer.log_metrics({"env_step": 10, "grad_step": 10, "loss": 0.5})
        writer.mark(10)
        if status == "interrupted":
            writer.close("interrupted")


def fake_population(job, status="interrupted", checkpoint=True, members=None):
    """The state a population leaves: its manifest, its members' runs (the first ``members``,
    default all) ended with ``status``, and its checkpoint if ``checkpoint``."""
    write_manifest(job)
    size = len(job.configs)
    for i, (folder, config) in enumerate(
        zip(job.run_folders[:members], job.configs[:members], strict=True)
    ):
        fake_run(folder, config, status, {"id": job.name, "size": size, "index": i})
    if checkpoint:
        torch.save({"env_step": 10}, job.folder / POPULATION_CHECKPOINT)


def snapshot(root):
    """Every file under ``root`` with its bytes, to tell that nothing was written."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


class FakeTrainer:
    """Stands in for redo.population.lockstep.train_population: writes each member's run
    (named as a population's), "checkpoints" by writing the population's checkpoint.pt and
    marking the runs, continues them on resume, and records the call. Interrupts the
    populations named in ``interrupt`` once, after their checkpoint; those in ``early`` once,
    before it; fails those in ``fail``."""

    def __init__(self, interrupt=(), early=(), fail=()):
        self.calls = []
        self.interrupt, self.early, self.fail = set(interrupt), set(early), set(fail)

    def __call__(self, configs, out_dir, device=None, progress=False, run_folders=None, **kw):
        out_dir, resume = Path(out_dir), kw.pop("resume")
        assert not kw
        assert (out_dir / MANIFEST_FILE).is_file(), "the manifest is written before training"
        assert resume == (out_dir / POPULATION_CHECKPOINT).is_file()
        self.calls.append({"name": out_dir.name, "folders": list(run_folders), "resume": resume})
        if out_dir.name in self.fail:
            raise RuntimeError(f"population {out_dir.name} broke")
        writers = [
            RunWriter(
                f,
                c.to_dict(),
                resume_at=10 if resume else None,
                population={"id": out_dir.name, "size": len(configs), "index": i},
            )
            for i, (f, c) in enumerate(zip(run_folders, configs, strict=True))
        ]
        step = 20 if resume else 10
        for writer in writers:
            writer.log_metrics({"env_step": step, "grad_step": step, "loss": 0.5})
        if out_dir.name in self.early:
            self.early.remove(out_dir.name)
            for writer in writers:
                writer.close("interrupted")
            raise KeyboardInterrupt
        for writer in writers:
            writer.sync()
        torch.save({"env_step": step}, out_dir / POPULATION_CHECKPOINT)
        for writer in writers:
            writer.mark(step)
        if out_dir.name in self.interrupt:
            self.interrupt.remove(out_dir.name)
            for writer in writers:
                writer.close("interrupted")
            raise KeyboardInterrupt
        for writer in writers:
            writer.finish()
        (out_dir / "population.json").write_text("{}\n")


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


def test_plan_groups_by_shared_settings_in_even_chunks(tmp_path):
    g = Grid(
        envs=("CartPole-v1", "Acrobot-v1"),
        replay_ratios=(0.25, 1.0),
        taus=(0.025, 0.1),
        seeds=(0, 1, 2),
        settings=TINY,
    )
    jobs = plan(g, tmp_path, max_population=5)
    configs = g.configs()
    per_group = len(configs) // 4  # per env and ratio: 2 methods x 2 taus x 3 seeds = 12
    assert [len(j.configs) for j in jobs] == [4] * 12  # 12 runs in 3 even chunks of at most 5
    assert all(not j.resume and not j.restart for j in jobs)
    assert all(len({c.env_id for c in j.configs}) == 1 for j in jobs)  # one env per population
    assert all(len({c.replay_ratio for c in j.configs}) == 1 for j in jobs)  # and one ratio
    # every run once, each in its own folder; within a population in the grid's order
    as_text = lambda c: json.dumps(c.to_dict(), sort_keys=True)  # noqa: E731
    assert sorted(map(as_text, [c for j in jobs for c in j.configs])) == sorted(
        map(as_text, configs)
    )
    for job in jobs:
        order = [configs.index(c) for c in job.configs]
        assert order == sorted(order)
        assert list(job.run_folders) == [run_folder(tmp_path, c) for c in job.configs]
    assert all(j.folder.parent == tmp_path / POPULATIONS_DIR for j in jobs)
    assert len({j.name for j in jobs}) == len(jobs) and all(j.name.startswith("pop-") for j in jobs)
    assert len(plan(g, tmp_path, max_population=per_group)) == 4
    # envs and replay ratios never share a population
    assert len(plan(g, tmp_path, max_population=1000)) == 4
    assert list(tmp_path.iterdir()) == []  # planning writes nothing
    # every recycling setting may be shared by a population
    for init in INIT_CHOICES:
        settings = TINY | {"redo_init": init, "redo_bias": "redraw"}
        (job,) = plan(grid(settings=settings), tmp_path)
        assert len(job.configs) == 4 and job.configs[0].redo_init == init
    with pytest.raises(ValueError, match="max_population must be >= 1"):
        plan(g, tmp_path, max_population=0)


def test_min_populations_splits_groups_evenly(tmp_path):
    g = grid(seeds=(0, 1, 2))  # 6 runs in one group
    sizes = {n: [len(j.configs) for j in plan(g, tmp_path, min_populations=n)] for n in range(1, 9)}
    assert sizes[1] == [6]
    assert sizes[2] == [3, 3]  # e.g. two workers: a population each
    assert sizes[3] == [2, 2, 2]
    assert sizes[4] == [2, 2, 1, 1]
    assert sizes[6] == sizes[7] == sizes[8] == [1] * 6  # never more populations than runs
    jobs = plan(g, tmp_path, min_populations=2)
    assert [c for j in jobs for c in j.configs] == g.configs()  # consecutive chunks
    # max_population splits first, min_populations only further
    assert [len(j.configs) for j in plan(g, tmp_path, max_population=2, min_populations=2)] == [
        2
    ] * 3
    assert [len(j.configs) for j in plan(g, tmp_path, max_population=4, min_populations=1)] == [
        3
    ] * 2
    # with several groups, the largest populations are split first
    two = grid(seeds=(0, 1, 2), replay_ratios=(0.25, 1.0))  # 2 groups of 6
    assert [len(j.configs) for j in plan(two, tmp_path, min_populations=2)] == [6, 6]
    assert [len(j.configs) for j in plan(two, tmp_path, min_populations=4)] == [3] * 4
    assert sorted(len(j.configs) for j in plan(two, tmp_path, min_populations=3)) == [3, 3, 6]
    assert len(plan(two, tmp_path, min_populations=100)) == 12
    # a population that was started keeps its members whatever min_populations is
    first = plan(g, tmp_path, min_populations=2)
    fake_population(first[0])
    jobs = plan(g, tmp_path, min_populations=6)
    assert jobs[0].resume and jobs[0].run_folders == first[0].run_folders
    assert [len(j.configs) for j in jobs[1:]] == [1] * 3


def test_plan_names_populations_by_their_members(tmp_path):
    g = grid(seeds=(0, 1, 2))
    names = [j.name for j in plan(g, tmp_path / "a", max_population=2)]
    assert names == [j.name for j in plan(g, tmp_path / "a", max_population=2)]
    assert names == [j.name for j in plan(g, tmp_path / "b", max_population=2)]  # relative
    assert names == [j.name for j in plan(g, tmp_path / "a", min_populations=3)]  # same chunks
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
    first = plan(g, tmp_path, max_population=4)  # 3 + 3 runs
    interrupted = first[1]
    fake_population(interrupted)
    manifest = json.loads((interrupted.folder / MANIFEST_FILE).read_text())
    assert manifest == {"runs": [str(f.relative_to(tmp_path)) for f in interrupted.run_folders]}
    assert run_status(interrupted.run_folders[0]) == "unfinished"

    jobs = plan(g, tmp_path, max_population=1)  # another size: the manifest still decides
    assert jobs[0].resume and not jobs[0].restart and jobs[0].folder == interrupted.folder
    assert jobs[0].run_folders == interrupted.run_folders
    assert jobs[0].configs == interrupted.configs
    assert [len(j.run_folders) for j in jobs[1:]] == [1] * 3 and not any(j.resume for j in jobs[1:])

    # a manifest whose runs all finished, or that were never started, is no longer a population
    for folder, config in zip(first[0].run_folders, first[0].configs, strict=True):
        fake_run(folder, config)
    write_manifest(first[0])
    write_manifest(plan(g, tmp_path / "elsewhere", max_population=1)[-1])
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
    torch.save({"env_step": 10}, job.folder / POPULATION_CHECKPOINT)
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


def test_plan_restarts_a_population_interrupted_before_its_first_checkpoint(tmp_path):
    g = grid()
    (job,) = plan(g, tmp_path)
    fake_population(job, checkpoint=False, members=3)  # the fourth run never started
    before = snapshot(tmp_path)
    (again,) = plan(g, tmp_path, max_population=1, min_populations=4)  # the manifest decides
    assert again.restart and not again.resume
    assert (again.name, again.folder, again.run_folders) == (job.name, job.folder, job.run_folders)
    assert again.configs == job.configs
    assert snapshot(tmp_path) == before  # planning clears nothing

    # a population whose checkpoint is there resumes, whatever its members' folders hold
    torch.save({"env_step": 10}, job.folder / POPULATION_CHECKPOINT)
    (resumed,) = plan(g, tmp_path)
    assert resumed.resume and not resumed.restart
    (job.folder / POPULATION_CHECKPOINT).unlink()

    # some members finished, the others not: no population ends so, so it is an error
    for folder, config in zip(job.run_folders, job.configs, strict=True):
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
        fake_run(folder, config, status="finished" if config.seed == 0 else "interrupted")
    with pytest.raises(ValueError, match=r"s0'\] finished without the others"):
        plan(g, tmp_path)


def test_a_restarted_population_is_trained_anew_in_the_same_folders(tmp_path, monkeypatch):
    g = grid()
    (job,) = plan(g, tmp_path)
    fake_population(job, checkpoint=False, members=3)
    fake = FakeTrainer()
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    assert run_sweep(g, tmp_path, workers=1) == [
        sweep.PopulationJob(job.configs, job.run_folders, job.folder, resume=False, restart=True)
    ]
    assert fake.calls == [{"name": job.name, "folders": list(job.run_folders), "resume": False}]
    for i, folder in enumerate(job.run_folders):
        run = load_run(folder)  # the old rows and segment are gone: one new segment
        assert run.record["status"] == "finished" and len(run.record["segments"]) == 1
        assert list(run.metrics["env_step"]) == [10]
        assert run.population == {"id": job.name, "size": 4, "index": i}
    assert plan(g, tmp_path) == []


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
        run_sweep(g, tmp_path, workers=1)
    assert snapshot(tmp_path) == before


def test_plan_refuses_runs_that_would_share_a_folder(tmp_path):
    with pytest.raises(ValueError, match="would share the folder"):
        plan(grid(taus=(0.05, 0.0500000001)), tmp_path)


# --- run_sweep and the command line, with a fake trainer ------------------------------------


def test_interrupted_sweep_resumes_and_then_has_nothing_to_do(tmp_path, monkeypatch, capsys):
    names = [j.name for j in plan(grid(), tmp_path, max_population=2)]
    fake = FakeTrainer(interrupt=[names[1]])
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    argv = lambda *extra: sweep_argv(tmp_path, "--workers", "1", *extra)  # noqa: E731

    assert main(argv("--max-population", "2")) == 130
    out, err = capsys.readouterr()
    assert f"population {names[0]} done (new, 2 runs)" in out and "interrupted" in err
    assert [(c["name"], c["resume"]) for c in fake.calls] == [(names[0], False), (names[1], False)]

    assert main(argv("--max-population", "2", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "0 new runs and 2 to resume in 1 population; 2 finished runs skipped" in out
    assert f"population {names[1]} (resume, 2 runs):\n  CartPole-v1/redo-rr1-s0\n" in out
    assert (
        "finished, skipped (2 runs):\n  CartPole-v1/dqn-rr1-s0\n  CartPole-v1/dqn-rr1-s1\n" in out
    )
    assert len(fake.calls) == 2  # a dry run trains nothing

    # the manifest, not --max-population, says which runs resume together
    assert main(argv("--max-population", "1")) == 0
    out = capsys.readouterr().out
    assert fake.calls[2] == {"name": names[1], "folders": fake.calls[1]["folders"], "resume": True}
    assert f"population {names[1]} done (resumed, 2 runs)" in out
    assert "0 runs trained, 2 resumed, 2 skipped as finished" in out

    assert main(argv()) == 0
    assert "0 runs trained, 0 resumed, 4 skipped as finished" in capsys.readouterr().out
    assert len(fake.calls) == 3
    runs = [load_run(run_folder(tmp_path, c)) for c in grid().configs()]
    assert all(r.record["status"] == "finished" for r in runs)
    resumed = load_run(tmp_path / "CartPole-v1" / "redo-rr1-s1")
    assert list(resumed.metrics["env_step"]) == [10, 20] and len(resumed.record["segments"]) == 2
    assert resumed.population == {"id": names[1], "size": 2, "index": 1}


def test_a_sweep_interrupted_before_a_checkpoint_restarts(tmp_path, monkeypatch, capsys):
    names = [j.name for j in plan(grid(), tmp_path, max_population=2)]
    fake = FakeTrainer(early=[names[1]])
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    argv = lambda *extra: sweep_argv(tmp_path, "--workers", "1", "--max-population", "2", *extra)  # noqa: E731
    assert main(argv()) == 130
    capsys.readouterr()
    assert run_status(tmp_path / "CartPole-v1" / "redo-rr1-s0") == "unfinished"

    assert main(argv("--dry-run")) == 0
    out = capsys.readouterr().out
    assert "2 new runs and 0 to resume in 1 population; 2 finished runs skipped" in out
    assert f"population {names[1]} (restart, 2 runs):\n  CartPole-v1/redo-rr1-s0\n" in out

    assert main(argv()) == 0
    out = capsys.readouterr().out
    assert f"population {names[1]} done (restarted, 2 runs)" in out
    assert "2 runs trained, 0 resumed, 2 skipped as finished" in out
    assert [(c["name"], c["resume"]) for c in fake.calls] == [
        (names[0], False),
        (names[1], False),
        (names[1], False),
    ]
    restarted = load_run(tmp_path / "CartPole-v1" / "redo-rr1-s0")
    assert list(restarted.metrics["env_step"]) == [10] and len(restarted.record["segments"]) == 1
    assert restarted.record["status"] == "finished"


def test_a_failed_population_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    g = grid(replay_ratios=(0.25, 1.0))  # a population per ratio; the costlier rr1 goes first
    jobs = plan(g, tmp_path)
    assert [j.configs[0].replay_ratio for j in jobs] == [0.25, 1.0]
    assert jobs[1].cost > jobs[0].cost
    fake = FakeTrainer(fail=[jobs[1].name])
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    done = []
    with pytest.raises(SweepError, match="1 of 2 populations failed") as info:
        run_sweep(g, tmp_path, workers=1, on_done=done.append)
    assert jobs[1].name in str(info.value) and "broke" in str(info.value)
    assert [c["name"] for c in fake.calls] == [jobs[1].name, jobs[0].name]  # longest first
    assert [j.name for j in done] == [jobs[0].name]
    assert [j.name for j in plan(g, tmp_path)] == [jobs[1].name]  # it trains on the next run

    fake.fail.clear()
    assert main(sweep_argv(tmp_path, "--replay-ratios", "0.25", "1", "--workers", "1")) == 0
    assert "4 runs trained, 0 resumed, 4 skipped as finished" in capsys.readouterr().out
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_jobs(jobs, workers=0)


def test_run_jobs_keeps_their_order_and_leaves_what_may_not_start(tmp_path, monkeypatch):
    jobs = plan(grid(replay_ratios=(0.25, 1.0), seeds=(0,)), tmp_path, min_populations=2)
    assert len(jobs) == 2
    fake = FakeTrainer()
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    asked = []

    def may_start(job):
        asked.append(job.name)
        return job is not jobs[0]

    assert run_jobs(jobs, workers=1, may_start=may_start) == [jobs[0]]
    assert [c["name"] for c in fake.calls] == [jobs[1].name]
    assert asked == [jobs[0].name, jobs[1].name, jobs[0].name]  # asked again once a worker frees
    again = plan(grid(replay_ratios=(0.25, 1.0), seeds=(0,)), tmp_path / "again", min_populations=2)
    assert run_jobs(again[::-1], workers=1) == []  # every job, in the order given
    assert [c["name"] for c in fake.calls[1:]] == [again[1].name, again[0].name]


def deliver(signum: int) -> None:
    """Send ``signum`` to this process and give Python the moment it needs to run the handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_only_the_first_signal_interrupts(first):
    """Ctrl-C reaches a worker, and then its pool's SIGTERM: the second signal must not
    interrupt the worker while it marks its runs interrupted."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(first)}"):
            deliver(first)
        deliver(signal.SIGTERM)  # ignored: nothing raised
        deliver(signal.SIGINT)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_a_population_does_not_start_on_code_changed_under_the_sweep(tmp_path, monkeypatch):
    jobs = plan(grid(replay_ratios=(0.25, 1.0), seeds=(0,)), tmp_path, min_populations=2)
    fake = FakeTrainer()
    monkeypatch.setattr(redo.population.lockstep, "train_population", fake)
    # the sweep's start, then the first population's start, then the second's
    seen = iter(["v1", "v1", "v2"])
    monkeypatch.setattr(redo.records.provenance, "code_fingerprint", lambda: next(seen))
    with pytest.raises(SweepError, match="1 of 2 populations failed") as info:
        run_jobs(jobs, workers=1)
    assert "CodeChangedError" in str(info.value) and "code changed after the sweep" in str(
        info.value
    )
    assert [c["name"] for c in fake.calls] == [jobs[0].name]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    argv = ["sweep", "--envs", "CartPole-v1", "Acrobot-v1", "--methods", "redo", "--taus", "0.05",
            "--out", str(out_dir), "--max-population", "4", "--workers", "2", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == f"sweep under {out_dir}: 12 new runs and 0 to resume in 4 populations; 0 finished runs skipped"
    )
    headers = [line for line in lines if line.startswith("population ")]
    assert [h.split(" ", 2)[2] for h in headers] == ["(new, 3 runs):"] * 4  # one per env, ratio
    assert lines[1:9] == [
        headers[0],
        "  CartPole-v1/redo-rr0.25-tau0.05-s0",
        "  CartPole-v1/redo-rr0.25-tau0.05-s1",
        "  CartPole-v1/redo-rr0.25-tau0.05-s2",
        headers[1],
        "  CartPole-v1/redo-rr1-tau0.05-s0",
        "  CartPole-v1/redo-rr1-tau0.05-s1",
        "  CartPole-v1/redo-rr1-tau0.05-s2",
    ]
    assert not out_dir.exists()


def dry_run_populations(text):
    """``{population id: [member, ...]}`` from a dry run's output."""
    populations, current = {}, None
    for line in text.splitlines():
        if line.startswith("population "):
            current = populations.setdefault(line.split()[1], [])
        elif line.startswith("  ") and current is not None:
            current.append(line.strip())
        else:
            current = None
    return populations


@pytest.mark.parametrize("workers", [1, 3, 8])
def test_dry_run_shows_the_populations_the_run_makes(tmp_path, monkeypatch, capsys, workers):
    argv = sweep_argv(tmp_path, "--seeds", "0", "1", "2", "--workers", str(workers))  # 6 runs
    assert main([*argv, "--dry-run"]) == 0
    shown = dry_run_populations(capsys.readouterr().out)
    assert len(shown) == min(workers, 6)

    ran = []
    monkeypatch.setattr(sweep, "run_jobs", lambda jobs, *args: ran.extend(jobs))
    assert main(argv) == 0
    assert {j.name: j.members() for j in ran} == shown
    expected = plan(grid(seeds=(0, 1, 2)), tmp_path, min_populations=workers)
    assert {j.name: j.members() for j in expected} == shown


def test_set_reads_values_as_the_configs_types(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("redo.cli.run_sweep", lambda grid, out, **kw: seen.update(grid=grid, **kw))
    argv = sweep_argv(tmp_path, "--set", "lr=1e-3", "--set", "save_replay_in_checkpoint=off",
                      "--set", "redo_step_mode=keep", "--set", "redo_init=lecun_normal",
                      "--device", "cpu", "--max-population", "3", "--workers", "3",
                      "--threads", "2", "--ray-address", "auto",
                      "--cpus-per-population", "2")  # fmt: skip
    assert main(argv) == 0
    settings = seen["grid"].settings
    assert settings["lr"] == 1e-3 and isinstance(settings["lr"], float)
    assert settings["save_replay_in_checkpoint"] is False
    assert settings["redo_step_mode"] == "keep" and settings["redo_init"] == "lecun_normal"
    assert settings["log_interval"] == 10 and isinstance(settings["log_interval"], int)
    assert settings["total_steps"] == 300
    assert seen["grid"].methods == ("dqn", "redo") and seen["grid"].replay_ratios == (1.0,)
    assert seen["grid"].taus == () and seen["grid"].seeds == (0, 1)
    assert (seen["max_population"], seen["device"], seen["ray_address"]) == (3, "cpu", "auto")
    assert (seen["workers"], seen["threads"]) == (3, 2)
    assert (seen["cpus_per_population"], seen["gpus_per_population"]) == (2.0, 0.0)
    seen.clear()
    assert main(sweep_argv(tmp_path)) == 0
    assert (seen["workers"], seen["threads"], seen["ray_address"]) == (None, 1, None)


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
        (["--set", "redo_init=he"], "argument --set: redo_init must be one of"),
        (["--steps", "0"], "argument --steps: total_steps must be an integer >= 1"),
        (["--seeds", "0", "0"], "argument --seeds: the grid's seeds repeat 0"),
        (["--replay-ratios", "-1"], "argument --replay-ratios: replay_ratio must be a finite number > 0"),
        (["--taus", "-1"], "argument --taus: tau must be a finite number >= 0"),
        (["--envs", "Nope-v0"], "argument --envs: unsupported environment id 'Nope-v0'"),
        (["--methods", "ppo"], "argument --methods: invalid choice: 'ppo'"),
        (["--max-population", "0"], "argument --max-population: must be an integer >= 1, got '0'"),
        (["--cpus-per-population", "-1"], "argument --cpus-per-population: must be a number >= 0"),
        (["--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
        (["--threads", "-2"], "argument --threads: must be an integer >= 1, got '-2'"),
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
    """Every run of grid ``g`` under ``out`` is finished, with the grid's config and metrics.
    (Each run is loaded from its folder: see test_load_runs_reads_a_sweeps_folder.)"""
    runs = {f: load_run(f) for f in (run_folder(out, c) for c in g.configs())}
    assert len(runs) == len(g.configs())
    for config in g.configs():
        run = runs[run_folder(out, config)]
        assert run.record["status"] == "finished"
        assert run.config == config.to_dict()
        assert len(run.metrics) > 0 and run.metrics["env_step"].max() <= config.total_steps
        assert run.record["env_steps"] == config.total_steps
    return runs


@pytest.mark.slow
def test_real_sweep_on_two_workers_trains_every_run_once(tmp_path, capsys):
    argv = sweep_argv(tmp_path, "--replay-ratios", "0.25", "1", "--max-population", "4",
                      "--workers", "2")  # fmt: skip
    assert main([*argv, "--dry-run"]) == 0
    shown = dry_run_populations(capsys.readouterr().out)
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
    # the populations the dry run showed trained, each run in its own, once
    populations = sorted((tmp_path / POPULATIONS_DIR).iterdir())
    assert sorted(p.name for p in populations) == sorted(shown) and len(shown) == 2
    assert all(
        (p / MANIFEST_FILE).is_file() and (p / "population.json").is_file() for p in populations
    )
    for name, members in shown.items():
        assert json.loads((tmp_path / POPULATIONS_DIR / name / MANIFEST_FILE).read_text()) == {
            "runs": members
        }
        for i, member in enumerate(members):
            run = runs[tmp_path / member]
            assert run.population == {"id": name, "size": len(members), "index": i}
            assert len(run.record["segments"]) == 1
    timing = [json.loads((p / "population.json").read_text()) for p in populations]
    assert [t["torch_threads"] for t in timing] == [1, 1]  # --threads' default, per worker

    records = {p: p.read_bytes() for p in tmp_path.rglob(RECORD_FILE)}
    assert main(argv) == 0
    assert "0 runs trained, 0 resumed, 8 skipped as finished" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in tmp_path.rglob(RECORD_FILE)} == records


def test_load_runs_reads_a_sweeps_folder(tmp_path):
    """The results loader reads a sweep's folder like any other (the module's promise)."""
    (job,) = plan(grid(), tmp_path)
    fake_population(job, status="finished")  # a finished population keeps its checkpoint
    runs = load_runs(tmp_path)
    assert [r.folder for r in runs] == sorted(job.run_folders)


def metric_rows(run):
    """The logged rows without the columns that measure time."""
    return run.metrics.drop(columns=[c for c in TIMING_COLUMNS if c in run.metrics])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop_at", "resumes"),
    [(150, True), (50, False)],  # after the checkpoints at env step 100; before them
    ids=["resume", "restart"],
)
def test_real_sweep_continues_an_interrupted_population_exactly(
    tmp_path, monkeypatch, stop_at, resumes
):
    g = grid(methods=("redo",), settings=TINY | {"redo_period": 20})  # 2 runs, 1 population
    run_sweep(g, tmp_path / "reference", workers=1)

    step_envs = Lockstep.step_envs

    def interrupted(self, obs, actions, env_step):
        if env_step == stop_at:
            raise KeyboardInterrupt
        return step_envs(self, obs, actions, env_step)

    monkeypatch.setattr(Lockstep, "step_envs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(g, tmp_path / "sweep", workers=1)
    monkeypatch.undo()
    (job,) = plan(g, tmp_path / "sweep")
    assert (job.resume, job.restart) == (resumes, not resumes)
    assert all(load_run(f).record["status"] == "interrupted" for f in job.run_folders)
    assert run_sweep(g, tmp_path / "sweep", workers=1) == [job]

    runs = check_runs(tmp_path / "sweep", g)
    for i, config in enumerate(g.configs()):
        run = runs[run_folder(tmp_path / "sweep", config)]
        reference = load_run(run_folder(tmp_path / "reference", config))
        assert len(run.record["segments"]) == (2 if resumes else 1)
        assert run.population == {"id": job.name, "size": 2, "index": i}
        assert run.episodes.equals(reference.episodes)
        assert metric_rows(run).equals(metric_rows(reference))
        assert run.metrics["redo/calls"].iloc[-1] > 0


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance on this machine for the module's Ray tests (start-up takes seconds).
    Ray is a test dependency: without it this fails, it does not skip."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
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
