"""A campaign: a committed plan of many sweeps, trained over many sessions, resumable anywhere.

A **plan** is a JSON file in the repository (:func:`load_plan`): a name and a list of
blocks, each one sweep (:class:`redo.population.sweep.Grid`) with its own ``data`` folder in
``book/data`` and, optionally, its own ``max_population``. Every run of the campaign is
therefore listed, by its block and its grid, in a file that is committed with the results.

**Working state** (run folders with their checkpoints and replay buffers, the populations'
folders) lives outside the repository, in ``WORK/<block name>`` (:func:`default_work_dir`:
``$XDG_CACHE_HOME/redo-book/campaigns/<plan name>``, or ``~/.cache/...``). Running the campaign
again continues where it stopped: finished runs are skipped, interrupted populations resume
from their last checkpoint, the rest train. Losing the folder loses only the unfinished
populations, because each finished run's record is **copied** into its block's ``data``
folder as soon as its population ends (:func:`collect`): ``run.json``, and ``metrics.csv`` and
``episodes.csv`` gzip-compressed, never a checkpoint, and the population's ``population.json``
and ``manifest.json``. A run already in ``data`` counts as finished even without its work
folder.

Populations run on a pool of local worker processes (one per core by default), started in
plan order, a block's longest first, so that stage 1 of a plan comes before its ablations and
both cores stay busy to the end. A run given a time budget (``hours``) starts only the
populations expected to finish within it at the fastest speed measured at their replay ratio
(:func:`fits_in`, :func:`fastest_speed`): on a machine whose working folder does not outlive
the session, none is left half-trained, and shorter populations (a later block's) fill the
session's end.

:func:`status` counts planned, finished, in progress and not started runs per block, the
hours spent (population wall time, each population once) and the hours left at the speed
measured so far.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redo.agent.config import DQNConfig
from redo.population.sweep import (
    MANIFEST_FILE,
    POPULATIONS_DIR,
    Grid,
    PopulationJob,
    plan,
    run_cost,
    run_folder,
    run_jobs,
    run_status,
)
from redo.records.record import EPISODES_FILE, METRICS_FILE, RECORD_FILE, read_record

#: What a block of a plan may set besides the grid's axes.
BLOCK_KEYS: tuple[str, ...] = ("name", "data", "max_population", "settings")


@dataclass(frozen=True)
class Block:
    """One sweep of a plan: its grid, where its finished runs are copied (``data``, relative
    to the repository), and the largest population it trains."""

    name: str
    grid: Grid
    data: Path
    max_population: int = 32


@dataclass(frozen=True)
class Plan:
    """A campaign: its name (which names its working folder) and its blocks, in order."""

    name: str
    blocks: tuple[Block, ...]
    path: Path

    def runs(self) -> list[tuple[Block, DQNConfig]]:
        """Every planned run, with its block."""
        return [(block, config) for block in self.blocks for config in block.grid.configs()]


def load_plan(path: str | Path, root: str | Path | None = None) -> Plan:
    """Read and check a plan file; ``data`` folders are resolved against ``root`` (the
    repository; by default the folder that holds the plan's folder).

    Raises ValueError naming the block and the problem (an unknown key, a repeated name, a
    bad grid or setting) before anything trains.
    """
    path = Path(path)
    try:
        text = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the plan {path}: {err}") from err
    if not isinstance(text, dict) or not isinstance(text.get("blocks"), list) or not text["blocks"]:
        raise ValueError(f"{path}: a plan is an object with a 'name' and a non-empty 'blocks' list")
    root = Path(root) if root is not None else path.resolve().parent.parent
    blocks = []
    for i, spec in enumerate(text["blocks"]):
        label = spec.get("name", "unnamed") if isinstance(spec, dict) else repr(spec)
        where = f"{path}: block {i} ({label})"
        if not isinstance(spec, dict) or "name" not in spec or "data" not in spec:
            raise ValueError(f"{where} needs a 'name' and a 'data' folder")
        axes = {f.name for f in dataclasses.fields(Grid)} - {"settings"}
        unknown = sorted(set(spec) - axes - set(BLOCK_KEYS))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown}; a block has {sorted(axes | set(BLOCK_KEYS))}"
            )
        settings = spec.get("settings", {})
        if not isinstance(settings, dict):
            raise ValueError(f"{where}: settings must be an object, got {settings!r}")
        max_population = spec.get("max_population", 32)
        if (
            isinstance(max_population, bool)
            or not isinstance(max_population, int)
            or max_population < 1
        ):
            raise ValueError(
                f"{where}: max_population must be an integer >= 1, got {max_population!r}"
            )
        if not isinstance(spec["data"], str) or not spec["data"]:
            raise ValueError(f"{where}: data must be a folder name, got {spec['data']!r}")
        try:
            # axes as given: the grid refuses a string where a list belongs
            grid = Grid(**{axis: spec[axis] for axis in axes if axis in spec}, settings=settings)
            grid.configs()  # every setting checked now, not hours later
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err
        names = [b.name for b in blocks]
        if str(spec["name"]) in names:
            raise ValueError(
                f"{where}: block {names.index(str(spec['name']))} has the same name; block "
                "names must differ (each names its working folder)"
            )
        blocks.append(Block(str(spec["name"]), grid, root / spec["data"], max_population))
    copied: dict[Path, int] = {}  # a run's copy -> the block that copies it there
    for i, block in enumerate(blocks):
        for config in block.grid.configs():
            target = run_folder(block.data, config)
            if copied.setdefault(target, i) != i:
                raise ValueError(
                    f"{path}: block {i} ({block.name}): its run {target} would be copied where "
                    f"block {copied[target]} ({blocks[copied[target]].name}) copies one; give "
                    "it another data folder"
                )
    return Plan(str(text.get("name", path.stem)), tuple(blocks), path)


def default_work_dir(plan: Plan) -> Path:
    """Where a campaign's working state lives by default: the user's cache folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "redo-book" / "campaigns" / plan.name


def block_jobs(plan: Plan, work: Path, workers: int = 1) -> list[PopulationJob]:
    """The populations still to train, blocks in plan order, each block's longest first.

    A run whose record is already in the block's ``data`` folder is not trained again, even
    if the working folder was lost."""
    jobs = []
    for block in plan.blocks:
        out = work / block.name
        for config in block.grid.configs():
            copied = run_folder(block.data, config)
            if _copied(copied) and run_status(run_folder(out, config)) == "new":
                _restore_marker(run_folder(out, config), copied)
        block_plan = plan_block(block, out, workers)
        jobs += sorted(block_plan, key=lambda job: job.cost, reverse=True)
    return jobs


def plan_block(block: Block, out: Path, workers: int) -> list[PopulationJob]:
    return plan(block.grid, out, block.max_population, min_populations=workers)


#: How much longer than the estimate a population may take and still end within a time
#: budget: the speed is measured on other games and population sizes, and the machine may
#: be shared for a while.
TIME_MARGIN = 1.25


def run(
    plan: Plan,
    work: Path,
    workers: int = 1,
    threads: int = 1,
    device: str | None = None,
    on_done: Callable[[PopulationJob], object] | None = None,
    hours: float | None = None,
) -> list[PopulationJob]:
    """Train what is left of ``plan`` in ``work``, copying each population's finished runs
    into their blocks' ``data`` folders as it ends; returns the jobs started.

    With ``hours``, a population starts only if :func:`fits_in` the time left of that budget;
    the others are left, untouched, for a later run."""
    work = Path(work).absolute()  # the jobs' folders are absolute: compared below
    work.mkdir(parents=True, exist_ok=True)
    collect(plan, work)
    jobs = block_jobs(plan, work, workers)

    def finished(job: PopulationJob) -> None:
        collect(plan, work)
        if on_done is not None:
            on_done(job)

    may_start = None
    if hours is not None:
        deadline = time.monotonic() + hours * 3600

        def may_start(job: PopulationJob) -> bool:
            speed = fastest_speed(plan, work, job.configs[0].replay_ratio)
            return fits_in(job, speed, deadline - time.monotonic())

    left = run_jobs(jobs, device, workers, threads, on_done=finished, may_start=may_start)
    return [job for job in jobs if job not in left]


def fits_in(job: PopulationJob, seconds_per_cost: float, seconds: float) -> bool:
    """Whether ``job`` is expected to finish within ``seconds``: the cost of the steps its
    runs have left after the checkpoint it resumes from (all of them when it does not resume),
    at ``seconds_per_cost`` (:func:`fastest_speed`), times :data:`TIME_MARGIN`.
    Before any speed is measured (NaN), every job fits."""
    if seconds_per_cost != seconds_per_cost:
        return True
    left = sum(
        run_cost(config, config.total_steps - (_checkpointed(folder, config) if job.resume else 0))
        for config, folder in zip(job.configs, job.run_folders, strict=True)
    )
    return left * seconds_per_cost * TIME_MARGIN <= seconds


def collect(plan: Plan, work: Path) -> list[Path]:
    """Copy every finished run of ``work`` that is not yet in its block's ``data`` folder;
    returns the copies made."""
    copies = []
    for block in plan.blocks:
        out = work / block.name
        for config in block.grid.configs():
            source, target = run_folder(out, config), run_folder(block.data, config)
            if run_status(source) == "finished" and not _copied(target):
                copy_run(source, target)
                copies.append(target)
        for population in sorted((out / POPULATIONS_DIR).glob("*/population.json")):
            target = block.data / POPULATIONS_DIR / population.parent.name
            if not (target / "population.json").exists():
                target.mkdir(parents=True, exist_ok=True)
                for name in (MANIFEST_FILE, "population.json"):
                    shutil.copy2(population.parent / name, target / name)
    return copies


def copy_run(source: Path, target: Path) -> None:
    """A run's record for the book: ``run.json`` and the gzip-compressed tables; the record
    is written last, so a copy interrupted half-way is not mistaken for a finished one."""
    target.mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, EPISODES_FILE):
        with (
            (source / name).open("rb") as table,
            (target / f"{name}.gz").open("wb") as out,
            gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed,  # same bytes each time
        ):
            shutil.copyfileobj(table, compressed)
    tmp = target / f".{RECORD_FILE}.tmp"
    shutil.copy2(source / RECORD_FILE, tmp)
    tmp.replace(target / RECORD_FILE)


def _copied(target: Path) -> bool:
    return (target / RECORD_FILE).is_file() and read_record(target)["status"] == "finished"


def _restore_marker(work_folder: Path, copied: Path) -> None:
    """A finished run whose working folder was lost: put its record back, so that planning
    skips it (its tables are in the copy)."""
    work_folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(copied / RECORD_FILE, work_folder / RECORD_FILE)
    for name in (METRICS_FILE, EPISODES_FILE):
        (work_folder / name).touch()


@dataclass(frozen=True)
class BlockStatus:
    """Counts of one block's runs, and its hours."""

    name: str
    planned: int
    finished: int
    in_progress: int
    hours_spent: float
    cost_left: float


def status(plan: Plan, work: Path) -> tuple[list[BlockStatus], float]:
    """Each block's counts and hours, and the measured seconds per unit of
    :attr:`PopulationJob.cost <redo.population.sweep.PopulationJob.cost>` (NaN before any
    population has made progress)."""
    rows, spent_s, done_cost = [], 0.0, 0.0
    for block in plan.blocks:
        out = work / block.name
        finished = in_progress = 0
        cost_left = 0.0
        for config in block.grid.configs():
            state = run_status(run_folder(out, config))
            copied = _copied(run_folder(block.data, config))
            if state == "finished" or copied:
                finished += 1
                continue
            reached = _env_steps(run_folder(out, config)) if state == "unfinished" else 0
            in_progress += state == "unfinished"
            cost_left += run_cost(config, config.total_steps - reached)
        times = _population_times(block, out)
        block_s = sum(t.seconds for t in times)
        spent_s += block_s
        done_cost += sum(t.cost for t in times)
        rows.append(
            BlockStatus(
                block.name,
                len(block.grid.configs()),
                finished,
                in_progress,
                block_s / 3600,
                cost_left,
            )
        )
    return rows, (spent_s / done_cost if done_cost else float("nan"))


def _env_steps(folder: Path) -> int:
    return int(read_record(folder)["env_steps"]) if (folder / RECORD_FILE).is_file() else 0


def _checkpointed(folder: Path, config: DQNConfig) -> int:
    """The env step of the run's last checkpoint: checkpoints fall on multiples of the
    interval, and the record may have gone on past the last one before an interruption."""
    interval = config.checkpoint_interval
    return _env_steps(folder) // interval * interval if interval else 0


@dataclass(frozen=True)
class PopulationTime:
    """One population's wall seconds so far, the cost they covered, whether it ended, and
    its replay ratio."""

    seconds: float
    cost: float
    finished: bool
    replay_ratio: float


def _population_times(block: Block, out: Path) -> list[PopulationTime]:
    """The block's populations that have made progress, each once (by one member's record)."""
    times, seen = [], set()
    for config in block.grid.configs():
        folder = run_folder(out, config)
        for source in (folder, run_folder(block.data, config)):
            if not (source / RECORD_FILE).is_file():
                continue
            record = read_record(source)
            population = record.get("population") or {}
            key = population.get("id") or str(folder)
            size = int(population.get("size", 1))
            if key in seen or not record["segments"]:
                break
            seen.add(key)
            cost = size * run_cost(config, int(record["env_steps"]))
            times.append(
                PopulationTime(
                    float(record["wall_time_s"]),
                    cost,
                    record["status"] == "finished",
                    config.replay_ratio,
                )
            )
            break
    return times


def fastest_speed(plan: Plan, work: Path, replay_ratio: float | None = None) -> float:
    """The fewest seconds per unit of :attr:`PopulationJob.cost
    <redo.population.sweep.PopulationJob.cost>` of any finished population of ``plan`` (NaN
    before one has finished): its speed when it had its core to itself. :func:`status`'s
    average also counts the hours populations were paused or shared the machine with other
    work, and so would keep a time budget from ever starting a long population.

    With ``replay_ratio``, only the populations at that replay ratio count once one of them
    has finished: :func:`~redo.population.sweep.run_cost` weighs an update as five env steps,
    the split measured at replay ratio 1, and a MinAtar population of 6 at replay ratio 0.25
    took about a fifth less time per unit of cost than one of 3 at replay ratio 1 (the
    evidence plan's two packings: 1,830 against 535 env steps per second, ``python -m redo
    bench --envs MinAtar/Seaquest-v1 --replay-ratio 0.25 --population 6 --steps 4000 --rounds
    1 --repeats 3`` against ``--replay-ratio 1 --population 3 --steps 2000``, run one after
    the other beside a campaign)."""
    times = [
        t
        for block in plan.blocks
        for t in _population_times(block, work / block.name)
        if t.finished and t.cost
    ]
    alike = [t for t in times if t.replay_ratio == replay_ratio]
    return min((t.seconds / t.cost for t in alike or times), default=float("nan"))


def format_status(plan: Plan, work: Path, workers: int) -> str:
    """The status table of ``python -m redo campaign status``."""
    rows, seconds_per_cost = status(plan, work)
    fastest = fastest_speed(plan, work)
    lines = [f"campaign {plan.name} ({plan.path}), working folder {work}"]
    header = f"{'block':<34} {'planned':>7} {'finished':>8} {'running':>7} {'new':>5} {'hours':>7}"
    lines += [header, "-" * len(header)]
    for r in rows:
        new = r.planned - r.finished - r.in_progress
        lines.append(
            f"{r.name:<34} {r.planned:>7} {r.finished:>8} {r.in_progress:>7} {new:>5} {r.hours_spent:>7.2f}"
        )
    planned = sum(r.planned for r in rows)
    finished = sum(r.finished for r in rows)
    spent = sum(r.hours_spent for r in rows)
    left = sum(r.cost_left for r in rows) * seconds_per_cost / 3600 / workers
    lines.append(
        f"{'all':<34} {planned:>7} {finished:>8} {sum(r.in_progress for r in rows):>7} "
        f"{planned - finished - sum(r.in_progress for r in rows):>5} {spent:>7.2f}"
    )
    estimate = (
        "no population has made progress yet, so no speed is measured"
        if seconds_per_cost != seconds_per_cost
        else f"about {left:.1f} hours left on {workers} worker(s) at the speed measured so far"
        + (
            f" ({left * fastest / seconds_per_cost:.1f} at the fastest population's)"
            if fastest == fastest
            else ""
        )
    )
    lines.append(
        f"{finished} of {planned} runs finished; {spent:.1f} population-hours spent; {estimate}"
    )
    return "\n".join(lines)


__all__ = [
    "BLOCK_KEYS",
    "Block",
    "BlockStatus",
    "Plan",
    "block_jobs",
    "collect",
    "copy_run",
    "default_work_dir",
    "format_status",
    "load_plan",
    "run",
    "status",
]
