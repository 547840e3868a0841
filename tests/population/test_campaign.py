"""Campaigns (redo.population.campaign, ``python -m redo campaign``): a plan of tiny sweeps,
trained in a working folder, its finished runs copied into data folders; resuming after an
interruption anywhere, even in the middle of a checkpoint write or after the working folder
was lost, gives the results of an uninterrupted campaign."""

import copy
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import redo.population.sweep as sweep
from redo.agent.metrics import TIMING_COLUMNS
from redo.cli import main
from redo.population import campaign
from redo.population.lockstep import POPULATION_CHECKPOINT, Lockstep, check_resumable
from redo.population.sweep import MANIFEST_FILE, POPULATIONS_DIR, Grid, run_folder
from redo.records.reader import load_run, load_runs
from redo.records.record import RECORD_FILE

#: CartPole runs of a second or so, with a checkpoint every 100 env steps (3 per run) and a
#: ReDo step every 20 gradient steps.
TINY = {
    "total_steps": 300,
    "learning_starts": 100,
    "batch_size": 32,
    "buffer_size": 1000,
    "log_interval": 10,
    "target_update_period": 50,
    "checkpoint_interval": 100,
    "redo_period": 20,
}

#: Block a: 4 runs in 2 populations of 2; block b: 1 run at another replay ratio.
PLAN = {
    "name": "tiny",
    "description": "two tiny blocks",
    "blocks": [
        {
            "name": "a",
            "data": "data/a",
            "envs": ["CartPole-v1"],
            "methods": ["dqn", "redo"],
            "replay_ratios": [1.0],
            "seeds": [0, 1],
            "max_population": 2,
            "settings": dict(TINY),
        },
        {
            "name": "b",
            "data": "data/b",
            "envs": ["CartPole-v1"],
            "methods": ["redo"],
            "replay_ratios": [0.25],
            "seeds": [0],
            "settings": dict(TINY),
        },
    ],
}
RUNS = 5

#: The files of a run's copy in a data folder.
COPIED = {RECORD_FILE, "metrics.csv.gz", "episodes.csv.gz"}


def write_plan(root, spec=PLAN):
    """The plan file ``root/campaigns/<name>.json``; its data folders lie under ``root``."""
    path = Path(root) / "campaigns" / f"{spec.get('name', 'plan')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))
    return path


def load(root, spec=PLAN):
    return campaign.load_plan(write_plan(root, spec), root=root)


def copies(plan):
    """Every planned run, as loaded from its copy in its block's data folder."""
    return {
        (block.name, str(run_folder("", config))): load_run(run_folder(block.data, config))
        for block, config in plan.runs()
    }


def metric_rows(run):
    """The logged rows without the columns that measure time."""
    return run.metrics.drop(columns=[c for c in TIMING_COLUMNS if c in run.metrics])


def assert_same_results(plan, reference):
    """Every run's copy holds the reference campaign's rows, episodes and population."""
    mine, theirs = copies(plan), copies(reference)
    assert mine.keys() == theirs.keys() and len(mine) == RUNS
    for key, run in mine.items():
        expected = theirs[key]
        assert run.record["status"] == "finished", key
        assert run.record["env_steps"] == expected.record["env_steps"] == 300
        assert run.config == expected.config
        assert run.population == expected.population, key
        assert run.episodes.equals(expected.episodes), key
        assert metric_rows(run).equals(metric_rows(expected)), key


def snapshot(root):
    """Every file under ``root`` with its bytes, to tell that nothing was written."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def status_rows(plan, work):
    """``{block: (planned, finished, in progress)}``."""
    rows, _ = campaign.status(plan, work)
    return {r.name: (r.planned, r.finished, r.in_progress) for r in rows}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny campaign, trained once without interruption on one worker (in this process)."""
    root = tmp_path_factory.mktemp("reference")
    plan = load(root)
    jobs = campaign.run(plan, root / "work", workers=1)
    return plan, root / "work", jobs


def interrupt_learning(monkeypatch, population, env_step):
    """Raise KeyboardInterrupt from inside the ``population``-th population trained (1 is the
    first), at ``env_step``."""
    learn, seen = Lockstep.learn, []

    def interrupted(self, step, epsilons):
        if self.folder not in seen:
            seen.append(self.folder)
        if len(seen) == population and step == env_step:
            raise KeyboardInterrupt
        return learn(self, step, epsilons)

    monkeypatch.setattr(Lockstep, "learn", interrupted)


# --- the plan -----------------------------------------------------------------------------


def test_load_plan_reads_the_blocks(tmp_path, monkeypatch):
    plan = campaign.load_plan(write_plan(tmp_path))  # root: the folder above the plan's
    assert plan.name == "tiny" and plan.path == tmp_path / "campaigns" / "tiny.json"
    a, b = plan.blocks
    assert (a.name, a.data, a.max_population) == ("a", tmp_path / "data" / "a", 2)
    assert (b.name, b.data, b.max_population) == ("b", tmp_path / "data" / "b", 32)
    assert a.grid == Grid(envs=("CartPole-v1",), replay_ratios=(1.0,), seeds=(0, 1), settings=TINY)
    assert len(plan.runs()) == RUNS and [blk.name for blk, _ in plan.runs()] == ["a"] * 4 + ["b"]
    assert campaign.load_plan(plan.path, root=tmp_path / "x").blocks[0].data == (
        tmp_path / "x" / "data" / "a"
    )
    nameless = {k: v for k, v in PLAN.items() if k != "name"}
    path = tmp_path / "other.json"
    path.write_text(json.dumps(nameless))
    assert campaign.load_plan(path).name == "other"  # the file's name
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert campaign.default_work_dir(plan) == tmp_path / "cache/redo-book/campaigns/tiny"
    # blocks may share a data folder when their runs differ there (other replay ratios)
    shared = edited(lambda p: p["blocks"][1].update(data="data/a"))
    assert campaign.load_plan(write_plan(tmp_path, shared)).blocks[1].data == a.data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaigns", "other.json"]  # no data


def test_the_repositorys_plan_loads():
    plan = campaign.load_plan(Path(__file__).parents[2] / "campaigns" / "evidence.json")
    assert plan.name == "evidence" and len(plan.blocks) >= 1
    assert all(block.data.is_relative_to(Path(__file__).parents[2] / "book" / "data")
               for block in plan.blocks)  # fmt: skip
    folders = [(b.data, run_folder(b.data, c)) for b, c in plan.runs()]
    assert len(set(folders)) == len(folders)  # no two runs share a copy


def edited(edit):
    spec = copy.deepcopy(PLAN)
    edit(spec)
    return spec


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["blocks"][1].update(sedes=[0]), "block 1 (b): unknown key(s) ['sedes']"),
        (lambda p: p["blocks"][0].pop("data"), "block 0 (a) needs a 'name' and a 'data' folder"),
        (lambda p: p["blocks"][1].pop("name"), "block 1 (unnamed) needs a 'name' and a 'data'"),
        (lambda p: p["blocks"][1].update(name="a"), "block 1 (a): block 0 has the same name"),
        (lambda p: p["blocks"][1]["settings"].update(lr=-1), "block 1 (b): lr must be a finite number > 0"),
        (lambda p: p["blocks"][0]["settings"].update(learning_rate=1), "block 0 (a): unknown setting(s) ['learning_rate']"),
        (lambda p: p["blocks"][0]["settings"].update(seed=3), "block 0 (a): settings ['seed'] are axes of the grid"),
        (lambda p: p["blocks"][1].update(settings=[1]), "block 1 (b): settings must be an object"),
        (lambda p: p["blocks"][0].update(methods=["ppo"]), "block 0 (a): unknown method(s) ['ppo']"),
        (lambda p: p["blocks"][0].update(envs="CartPole-v1"), "block 0 (a): the grid's envs must be a sequence"),
        (lambda p: p["blocks"][0].update(envs=["Nope-v0"]), "block 0 (a): unsupported environment id 'Nope-v0'"),
        (lambda p: p["blocks"][0].update(seeds=[]), "block 0 (a): the grid's seeds is empty"),
        (lambda p: p["blocks"][1].update(max_population=0), "block 1 (b): max_population must be an integer >= 1"),
        (lambda p: p["blocks"][1].update(max_population="3"), "block 1 (b): max_population must be an integer >= 1"),
        (lambda p: p["blocks"][0].update(data=None), "block 0 (a): data must be a folder name"),
        (lambda p: p["blocks"].append(3), "block 2 (3) needs a 'name' and a 'data' folder"),
        (lambda p: p["blocks"][1].update(data="data/a", replay_ratios=[1.0]), "block 1 (b): its run "),
        (lambda p: p.update(blocks=[]), "a plan is an object with a 'name' and a non-empty 'blocks' list"),
    ],
)  # fmt: skip
def test_plan_errors_name_the_block(tmp_path, edit, message):
    path = write_plan(tmp_path, edited(edit))
    with pytest.raises(ValueError) as info:
        campaign.load_plan(path, root=tmp_path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert not (tmp_path / "data").exists()


def test_a_plan_that_is_not_json_is_an_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read the plan {path}"):
        campaign.load_plan(path)
    with pytest.raises(ValueError, match="cannot read the plan"):
        campaign.load_plan(tmp_path / "missing.json")


# --- a campaign ---------------------------------------------------------------------------


@pytest.mark.slow
def test_run_trains_every_block_and_copies_its_finished_runs(reference, tmp_path):
    plan, work, jobs = reference
    assert [(j.out.name, len(j.run_folders)) for j in jobs] == [("a", 2), ("a", 2), ("b", 1)]
    for block, config in plan.runs():
        source, target = run_folder(work / block.name, config), run_folder(block.data, config)
        assert {p.name for p in target.iterdir()} == COPIED  # no checkpoint, no plain tables
        copied, original = load_run(target), load_run(source)
        assert copied.record == original.record and copied.record["status"] == "finished"
        assert copied.metrics.equals(original.metrics)
        assert copied.episodes.equals(original.episodes)
    for job in jobs:
        block = next(b for b in plan.blocks if b.name == job.out.name)
        target = block.data / POPULATIONS_DIR / job.name
        assert {p.name for p in target.iterdir()} == {MANIFEST_FILE, "population.json"}
        for name in (MANIFEST_FILE, "population.json"):
            assert (target / name).read_bytes() == (job.folder / name).read_bytes()
    data = plan.blocks[0].data.parent
    assert not list(data.rglob("checkpoint.pt")) and not list(data.rglob("*.tmp"))
    # a data folder is a folder of runs like any other for the results loader
    assert len(load_runs(plan.blocks[0].data)) == 4 and len(load_runs(plan.blocks[1].data)) == 1

    # a copy of the finished campaign: running it again trains nothing and writes nothing
    root = plan.path.parent.parent
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    mine = campaign.load_plan(tmp_path / "campaigns" / "tiny.json", root=tmp_path)
    before = snapshot(tmp_path)
    assert campaign.run(mine, tmp_path / "work", workers=1) == []
    assert campaign.collect(mine, tmp_path / "work") == []  # collecting again is idempotent
    assert snapshot(tmp_path) == before
    # a lost copy is made again, byte for byte
    lost = run_folder(mine.blocks[0].data, mine.runs()[1][1])
    shutil.rmtree(lost)
    assert campaign.collect(mine, tmp_path / "work") == [lost]
    assert campaign.collect(mine, tmp_path / "work") == []
    assert snapshot(tmp_path) == before


def test_status_counts_the_runs_and_the_hours(reference, tmp_path):
    fresh = load(tmp_path)
    assert status_rows(fresh, tmp_path / "work") == {"a": (4, 0, 0), "b": (1, 0, 0)}
    rows, seconds_per_cost = campaign.status(fresh, tmp_path / "work")
    assert [r.hours_spent for r in rows] == [0.0, 0.0] and math.isnan(seconds_per_cost)
    assert [r.cost_left for r in rows] == [4 * 300 * 6, 300 * (1 + 5 * 0.25)]
    text = campaign.format_status(fresh, tmp_path / "work", workers=2)
    assert "0 of 5 runs finished" in text and "no population has made progress yet" in text
    assert text.splitlines()[3].split() == ["a", "4", "0", "0", "4", "0.00"]
    assert not (tmp_path / "work").exists()  # the status writes nothing

    plan, work, jobs = reference
    assert status_rows(plan, work) == {"a": (4, 4, 0), "b": (1, 1, 0)}
    rows, seconds_per_cost = campaign.status(plan, work)
    assert [r.cost_left for r in rows] == [0.0, 0.0] and seconds_per_cost > 0
    # each population's wall time once: its first member's record
    for row, block in zip(rows, plan.blocks, strict=True):
        mine = [j for j in jobs if j.out.name == block.name]
        seconds = sum(load_run(j.run_folders[0]).record["wall_time_s"] for j in mine)
        assert row.hours_spent == pytest.approx(seconds / 3600) and row.hours_spent > 0
    text = campaign.format_status(plan, work, workers=2)
    assert text.splitlines()[0] == f"campaign tiny ({plan.path}), working folder {work}"
    assert text.splitlines()[3].split()[:5] == ["a", "4", "4", "0", "0"]
    assert text.splitlines()[-2].split()[:5] == ["all", "5", "5", "0", "0"]
    assert "5 of 5 runs finished" in text and "about 0.0 hours left on 2 worker(s)" in text

    # the fastest speed: the fewest seconds per unit of cost of any finished population
    speeds = []
    for job in jobs:
        record = load_run(job.run_folders[0]).record
        cost = sum(c.total_steps * (1 + 5 * c.replay_ratio) for c in job.configs)
        speeds.append(record["wall_time_s"] / cost)
    assert campaign.fastest_speed(plan, work) == pytest.approx(min(speeds))
    assert min(speeds) < max(speeds) and seconds_per_cost > min(speeds)
    assert math.isnan(campaign.fastest_speed(fresh, tmp_path / "work"))
    # at a replay ratio with a finished population, only those populations count
    for ratio in (1.0, 0.25):
        alike = [v for j, v in zip(jobs, speeds, strict=True) if j.configs[0].replay_ratio == ratio]
        assert campaign.fastest_speed(plan, work, ratio) == pytest.approx(min(alike))
    assert campaign.fastest_speed(plan, work, 0.5) == pytest.approx(min(speeds))


def test_a_time_budget_starts_only_the_populations_that_fit(reference, tmp_path):
    """With ``hours``, a population starts only if it is expected to end within them at the
    measured speed; the others are left untouched for a later run."""
    root = reference[0].path.parent.parent
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    plan = campaign.load_plan(tmp_path / "campaigns" / "tiny.json", root=tmp_path)
    work = tmp_path / "work"
    b = plan.blocks[1]
    shutil.rmtree(work / b.name)  # block b is yet to train; block a's speed is measured
    shutil.rmtree(b.data)
    seconds_per_cost = campaign.fastest_speed(plan, work)
    [job] = campaign.block_jobs(plan, work)
    needed = job.cost * seconds_per_cost * campaign.TIME_MARGIN
    assert campaign.fits_in(job, seconds_per_cost, needed)
    assert not campaign.fits_in(job, seconds_per_cost, needed * 0.99)
    assert campaign.fits_in(job, float("nan"), 0.0)  # no speed measured yet: every job fits

    before = snapshot(tmp_path)
    assert campaign.run(plan, work, workers=1, hours=0) == []
    assert snapshot(tmp_path) == before
    assert [j.name for j in campaign.run(plan, work, workers=1, hours=1)] == [job.name]
    assert status_rows(plan, work) == {"a": (4, 4, 0), "b": (1, 1, 0)}


def test_the_hours_option(reference, tmp_path, capsys):
    plan, work, _ = reference
    argv = ["campaign", "run", str(plan.path), "--work", str(work), "--workers", "1"]
    assert main([*argv, "--hours", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "0 populations started within the budget of 0.5 h" in out and "5 of 5 runs" in out
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--hours", bad])
        assert info.value.code == 2
        assert f"argument --hours: must be a number > 0, got '{bad}'" in capsys.readouterr().err


@pytest.mark.slow
def test_an_interrupted_campaign_resumes_to_the_same_results(reference, tmp_path, monkeypatch):
    plan, work = load(tmp_path), tmp_path / "work"
    with monkeypatch.context() as m:
        interrupt_learning(m, population=2, env_step=250)  # after its checkpoint at 200
        with pytest.raises(KeyboardInterrupt):
            campaign.run(plan, work, workers=1)
    # the first population finished and was copied; the second is resumable; b is new
    assert status_rows(plan, work) == {"a": (4, 2, 2), "b": (1, 0, 0)}
    copied = sorted(p.parent.name for p in plan.blocks[0].data.rglob(RECORD_FILE))
    assert copied == ["dqn-rr1-s0", "dqn-rr1-s1"]
    assert not plan.blocks[1].data.exists()
    text = campaign.format_status(plan, work, workers=1)
    assert "2 of 5 runs finished" in text and "hours left on 1 worker(s)" in text
    jobs = campaign.block_jobs(plan, work, workers=1)
    assert [(j.out.name, j.resume, j.restart) for j in jobs] == [
        ("a", True, False),
        ("b", False, False),
    ]
    checkpoint = check_resumable(jobs[0].folder, jobs[0].run_folders, jobs[0].configs)
    assert checkpoint["env_step"] == 200
    left = 2 * (300 - 200) * (1 + 5 * 1.0)  # what a time budget counts: the steps after it
    assert campaign.fits_in(jobs[0], 1.0, left * campaign.TIME_MARGIN)
    assert not campaign.fits_in(jobs[0], 1.0, left * campaign.TIME_MARGIN - 1)

    assert campaign.run(plan, work, workers=1) == jobs
    assert status_rows(plan, work) == {"a": (4, 4, 0), "b": (1, 1, 0)}
    assert_same_results(plan, reference[0])
    resumed = load_run(run_folder(plan.blocks[0].data, jobs[0].configs[0]))
    assert [s["env_step_start"] for s in resumed.record["segments"]] == [0, 200]


@pytest.mark.slow
@pytest.mark.parametrize("write", [1, 2, 3])  # the checkpoints at env steps 100, 200, 300
def test_an_interruption_in_a_checkpoint_write_loses_nothing(
    reference, tmp_path, monkeypatch, write
):
    plan, work = load(tmp_path), tmp_path / "work"
    save, writes = torch.save, []

    def half_save(obj, f, *args, **kwargs):
        """torch.save that dies half-way through the ``write``-th checkpoint."""
        writes.append(obj)
        if len(writes) < write:
            return save(obj, f, *args, **kwargs)
        whole = io.BytesIO()
        save(obj, whole, *args, **kwargs)
        f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(torch, "save", half_save)
        with pytest.raises(KeyboardInterrupt):
            campaign.run(plan, work, workers=1)
    (first, *_) = campaign.block_jobs(plan, work, workers=1)
    assert not list(first.folder.glob("*.tmp"))  # the half-written file is gone
    if write == 1:  # nothing to resume from: it trains anew
        assert first.restart and not (first.folder / POPULATION_CHECKPOINT).exists()
    else:  # the checkpoint before stands
        assert first.resume
        checkpoint = check_resumable(first.folder, first.run_folders, first.configs)
        assert checkpoint["env_step"] == 100 * (write - 1)
    assert status_rows(plan, work) == {"a": (4, 0, 2), "b": (1, 0, 0)}

    campaign.run(plan, work, workers=1)
    assert_same_results(plan, reference[0])


@pytest.mark.slow
def test_a_lost_working_folder_loses_only_unfinished_runs(reference, tmp_path, monkeypatch):
    plan, work = load(tmp_path), tmp_path / "work"
    with monkeypatch.context() as m:
        interrupt_learning(m, population=2, env_step=150)
        with pytest.raises(KeyboardInterrupt):
            campaign.run(plan, work, workers=1)
    shutil.rmtree(work)
    assert status_rows(plan, work) == {"a": (4, 2, 0), "b": (1, 0, 0)}  # the copies count

    trained, train_job = [], sweep.train_job
    monkeypatch.setattr(
        sweep, "train_job", lambda job, *a: trained.extend(job.members()) or train_job(job, *a)
    )
    monkeypatch.chdir(tmp_path)
    campaign.run(plan, Path("work"), workers=1)  # a working folder relative to the current one
    assert trained == ["CartPole-v1/redo-rr1-s0", "CartPole-v1/redo-rr1-s1",
                       "CartPole-v1/redo-rr0.25-s0"]  # fmt: skip
    assert status_rows(plan, work) == {"a": (4, 4, 0), "b": (1, 1, 0)}
    assert_same_results(plan, reference[0])
    assert campaign.run(plan, work, workers=1) == []


# --- the command line ---------------------------------------------------------------------


@pytest.mark.slow
def test_campaign_commands(reference, tmp_path, monkeypatch, capsys):
    path = write_plan(tmp_path)  # its data folders: tmp_path/data/...
    monkeypatch.chdir(tmp_path)  # a working folder relative to the current one
    argv = lambda action, *extra: ["campaign", action, str(path), *extra]  # noqa: E731

    assert main(argv("status", "--work", "work", "--workers", "2")) == 0
    out = capsys.readouterr().out
    assert f"working folder {tmp_path / 'work'}" in out and "0 of 5 runs finished" in out

    assert main(argv("run", "--work", "work", "--workers", "2")) == 0  # on 2 worker processes
    out = capsys.readouterr().out
    assert out.startswith(f"campaign tiny: working folder {tmp_path / 'work'}, 2 worker(s)\n")
    assert out.count("runs of block a)") == 2 and out.count("(1 run of block b)") == 1
    assert "5 of 5 runs finished" in out
    plan = campaign.load_plan(path)
    assert_same_results(plan, reference[0])  # the same populations, trained in other processes

    assert main(argv("collect", "--work", "work")) == 0
    assert capsys.readouterr().out == "copied 0 finished runs into the data folders\n"
    shutil.rmtree(run_folder(plan.blocks[1].data, plan.runs()[-1][1]))
    assert main(argv("collect", "--work", "work")) == 0
    assert capsys.readouterr().out == "copied 1 finished run into the data folders\n"
    assert main(argv("run", "--work", "work", "--workers", "1")) == 0
    assert "5 of 5 runs finished" in capsys.readouterr().out

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(argv("status")) == 0  # the default working folder
    out = capsys.readouterr().out
    assert f"working folder {tmp_path / 'cache/redo-book/campaigns/tiny'}" in out
    assert "5 of 5 runs finished" in out  # the copies count


@pytest.mark.parametrize("action", ["status", "run", "collect"])
def test_a_bad_plan_exits_2_naming_plan(tmp_path, capsys, action):
    bad = write_plan(tmp_path, edited(lambda p: p["blocks"][1].update(sedes=[0])))
    with pytest.raises(SystemExit) as info:
        main(["campaign", action, str(bad), "--work", str(tmp_path / "work")])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"usage: python -m redo campaign {action}")
    assert "argument PLAN:" in lines[-1] and "block 1 (b): unknown key(s) ['sedes']" in lines[-1]
    assert not (tmp_path / "work").exists()
    with pytest.raises(SystemExit) as info:
        main(["campaign", action, str(tmp_path / "missing.json")])
    assert info.value.code == 2
    assert "argument PLAN: cannot read the plan" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_campaign_marks_its_runs_interrupted_and_resumes(tmp_path):
    """``kill <pid>`` (SIGTERM) of a campaign run in the background, with SIGINT ignored as a
    non-interactive shell leaves it: the workers stop, every started run is marked
    interrupted, and running the campaign again finishes it."""
    import signal
    import subprocess
    import sys
    import time

    spec = {
        "name": "killed",
        "blocks": [
            {
                "name": "a", "data": "data/a", "envs": ["MinAtar/Breakout-v1"],
                "methods": ["dqn", "redo"], "replay_ratios": [1.0], "seeds": [0],
                "settings": {"total_steps": 4000, "learning_starts": 500,
                             "checkpoint_interval": 1000, "log_interval": 100},
            }
        ],
    }  # fmt: skip
    path = write_plan(tmp_path, spec)
    work = tmp_path / "work"
    command = [sys.executable, "-m", "redo", "campaign", "run", str(path), "--work", str(work),
               "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    checkpoints = work / "a" / POPULATIONS_DIR
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob(f"*/{POPULATION_CHECKPOINT}")):
        assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.terminate()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    records = [load_run(f).record for f in sorted((work / "a").glob("MinAtar/*/*"))]
    assert len(records) == 2 and all(r["status"] == "interrupted" for r in records), output
    assert main(["campaign", "run", str(path), "--work", str(work), "--workers", "1"]) == 0
    assert all(run.record["status"] == "finished" for run in load_runs(tmp_path / "data" / "a"))
