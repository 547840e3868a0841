"""Sweeps: a grid of DQN (+ ReDo) runs, trained as populations, locally or on a Ray cluster.

A :class:`Grid` names the axes of an experiment (environments, methods, replay ratios, taus,
seeds) and the settings every run shares. :func:`plan` turns it into
:class:`PopulationJob` s: runs that may share a population
(:func:`redo.population.check_population`) are trained together, at most
``max_population`` at a time. :func:`run_sweep` runs the jobs on a pool of worker
processes on this machine (by default one per core, each with one torch thread: two small
populations side by side use two cores far better than one population on two threads), or
as Ray tasks on a cluster.

**Where runs go.** Every run has its own folder, ``OUT/<env id>/<method>-rr<r>-s<seed>``
(with ``-tau<t>`` when tau is not the paper's for that replay ratio; :func:`run_folder`), so
where a run lies does not depend on which population trained it, and the results loader
(:func:`redo.records.reader.load_runs`) reads a sweep's folder like any other. Each
population has a folder ``OUT/populations/<id>``: when the population starts, its manifest
(``manifest.json``, :func:`write_manifest`) lists its members; while it trains, its
checkpoint (``checkpoint.pt``) is there; when it ends,
:func:`redo.population.lockstep.train_population` writes its timing (``population.json``)
there.

**Resuming.** Running the same sweep again skips every finished run, continues each
population that was interrupted from its checkpoint (the manifest says which runs trained
together, so they resume together), and trains the rest. A population interrupted before its
first checkpoint has nothing to resume from: it is planned again with the same members and
id, and its run files are cleared before it trains anew (``PopulationJob.restart``). A folder
that holds a run with other settings is an error, never overwritten (:func:`check_folder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from redo.agent.config import ConfigError, DQNConfig, differing_settings, paper_tau
from redo.records.record import RECORD_FILE, RUN_FILES, read_record

#: Method names on the command line and in folder names, and whether ReDo is on.
METHODS: dict[str, bool] = {"dqn": False, "redo": True}

#: The folder, under a sweep's output folder, that holds one subfolder per population.
POPULATIONS_DIR = "populations"

#: The manifest of a population: its member runs, relative to the sweep's folder.
MANIFEST_FILE = "manifest.json"

#: The grid's axes, and the DQNConfig setting each one sets.
AXES: dict[str, str] = {
    "envs": "env_id",
    "methods": "redo",
    "replay_ratios": "replay_ratio",
    "taus": "tau",
    "seeds": "seed",
}

#: Settings that are not part of what a run is: a run may resume on another device.
NOT_COMPARED = ("device",)

RunStatus = Literal["new", "unfinished", "finished"]


class SweepError(RuntimeError):
    """Populations of a sweep failed; the others ran to their end."""


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep; every combination is one run.

    Attributes:
        envs: environment ids.
        methods: keys of :data:`METHODS`.
        replay_ratios: gradient steps per env step.
        taus: dormancy thresholds; empty means the paper's rule for each replay ratio
            (:func:`redo.agent.config.paper_tau`).
        seeds: one run per seed.
        settings: any other :class:`DQNConfig` settings, shared by every run (e.g.
            ``total_steps``, ``log_interval``, ``redo_step_mode``).

    Axes are stored as tuples; an empty axis (but ``taus``), a repeated value, an unknown
    method or an axis among ``settings`` raises :class:`redo.agent.config.ConfigError` naming the
    axis (or the setting). Values are checked by :meth:`configs`.
    """

    envs: tuple[str, ...]
    methods: tuple[str, ...] = ("dqn", "redo")
    replay_ratios: tuple[float, ...] = (0.25, 1.0)
    taus: tuple[float, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in AXES:
            values = getattr(self, name)
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise ConfigError(
                    name, f"the grid's {name} must be a sequence of values, got {values!r}"
                )
            values = tuple(values)
            object.__setattr__(self, name, values)
            if not values and name != "taus":
                raise ConfigError(name, f"the grid's {name} is empty: give at least one value")
            repeated = sorted({repr(v) for i, v in enumerate(values) if v in values[:i]})
            if repeated:
                raise ConfigError(
                    name, f"the grid's {name} repeat {', '.join(repeated)}: give each value once"
                )
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(
                "methods", f"unknown method(s) {unknown}: methods are {sorted(METHODS)}"
            )
        axes = sorted(set(AXES.values()) & set(self.settings))
        if axes:
            raise ConfigError(
                axes[0],
                f"settings {axes} are axes of the grid: set them through envs, methods, "
                "replay_ratios, taus and seeds",
            )

    def configs(self) -> list[DQNConfig]:
        """One validated config per run, in the grid's order (env, method, ratio, tau, seed).

        A bad value raises :class:`redo.agent.config.ConfigError` naming the setting.
        """
        configs = []
        for env_id, method, ratio in itertools.product(self.envs, self.methods, self.replay_ratios):
            for tau in self.taus or (paper_tau(ratio),):
                for seed in self.seeds:
                    configs.append(
                        DQNConfig.for_env(
                            env_id,
                            **self.settings,
                            redo=METHODS[method],
                            replay_ratio=ratio,
                            tau=tau,
                            seed=seed,
                        )
                    )
        return configs


def run_cost(config: DQNConfig, env_steps: int) -> float:
    """A rough relative cost of ``env_steps`` of one run: agent steps, with an update
    weighted as about five env steps (MinAtar's measured split at replay ratio 1)."""
    return env_steps * (1 + 5 * config.replay_ratio)


@dataclass(frozen=True)
class PopulationJob:
    """Runs to train together: their configs, run folders, and the population's folder
    (``OUT/populations/<id>``); ``resume`` when the population was interrupted after a
    checkpoint, ``restart`` when it was interrupted before its first one (its unfinished run
    folders are cleared before it trains anew)."""

    configs: tuple[DQNConfig, ...]
    run_folders: tuple[Path, ...]
    folder: Path
    resume: bool
    restart: bool = False

    @property
    def cost(self) -> float:
        """A rough relative cost, for scheduling the longest populations first: the sum of
        its runs' :func:`run_cost`."""
        return sum(run_cost(config, config.total_steps) for config in self.configs)

    @property
    def name(self) -> str:
        """The population's id, e.g. ``pop-3f2a9c01b7``."""
        return self.folder.name

    @property
    def out(self) -> Path:
        """The sweep's output folder."""
        return self.folder.parent.parent

    def members(self) -> list[str]:
        """The run folders relative to the sweep's folder, as the manifest lists them."""
        return [str(f.relative_to(self.out)) for f in self.run_folders]


def run_folder(out: str | Path, config: DQNConfig) -> Path:
    """``OUT/<env id>/<redo|dqn>-rr<r>-s<seed>``, with ``-tau<t>`` before ``-s`` when tau is
    not the paper's for that replay ratio: e.g. ``runs/MinAtar/Breakout-v1/redo-rr1-s0``,
    ``runs/CartPole-v1/redo-rr1-tau0.05-s0``. The grid's axes are in the path, so the runs of
    one sweep never collide (:func:`plan` checks it)."""
    method = "redo" if config.redo else "dqn"
    tau = "" if config.tau == paper_tau(config.replay_ratio) else f"-tau{config.tau:g}"
    return Path(out) / config.env_id / f"{method}-rr{config.replay_ratio:g}{tau}-s{config.seed}"


def run_status(folder: Path) -> RunStatus:
    """``new`` (no run files), ``finished``, or ``unfinished`` (started, not finished)."""
    if not any((folder / name).exists() for name in RUN_FILES):
        return "new"
    if (folder / RECORD_FILE).is_file() and read_record(folder)["status"] == "finished":
        return "finished"
    return "unfinished"


def check_folder(folder: Path, config: DQNConfig) -> None:
    """Refuse a run folder that holds a run of other settings: a sweep never overwrites one.

    Every setting but :data:`NOT_COMPARED` (the device) must equal the stored one.
    """
    if not (folder / RECORD_FILE).is_file():
        return
    differing = differing_settings(read_record(folder)["config"], config, ignore=NOT_COMPARED)
    if differing:
        raise ValueError(
            f"{folder} holds a run with other settings ({', '.join(differing)}): this sweep "
            "would overwrite it; give the sweep another --out, or move that run away"
        )


def plan(
    grid: Grid, out: str | Path, max_population: int = 32, min_populations: int = 1
) -> list[PopulationJob]:
    """The populations still to train for ``grid`` under ``out``, interrupted ones first.

    Finished runs are left out. A run that was started belongs to the population whose
    manifest lists it, which is resumed whole (or restarted, if it stopped before its first
    checkpoint). New runs are grouped by the settings a population must share, in grid order,
    ``max_population`` at most per population, and groups are split further, into populations
    of even sizes, until there are ``min_populations`` (the workers that should stay busy) or
    every population has one run. A population's id depends only on its members, so planning
    the same grid again names the same populations. Raises
    :class:`redo.agent.config.ConfigError` for a setting that a run does not allow, and
    ValueError for a run folder that cannot be used (it holds a run with other settings, an
    unfinished run that no manifest lists, or a finished run of a population whose other
    members did not finish) or two runs that would share a folder. Writes nothing.
    """
    from redo.population.lockstep import (
        check_population,  # torch and the envs load only when needed
    )

    if max_population < 1:
        raise ValueError(f"max_population must be >= 1, got {max_population}")
    out = Path(out)
    configs = grid.configs()
    folders = [run_folder(out, c) for c in configs]
    by_folder: dict[Path, DQNConfig] = {}
    for folder, config in zip(folders, configs, strict=True):
        if folder in by_folder:
            raise ValueError(
                f"two runs of the grid would share the folder {folder} (values that print the "
                "same at 6 significant digits?): give values that differ there"
            )
        by_folder[folder] = config
    for folder, config in by_folder.items():
        check_folder(folder, config)
    status = {f: run_status(f) for f in folders}

    jobs = []
    claimed: dict[Path, Path] = {}  # run folder -> the manifest that claims it
    for manifest in sorted((out / POPULATIONS_DIR).glob(f"*/{MANIFEST_FILE}")):
        members = [out / m for m in _read_manifest(manifest)["runs"]]
        if not any(status.get(m) == "unfinished" for m in members):
            continue
        missing = [str(m) for m in members if m not in by_folder]
        if missing:
            raise ValueError(
                f"population {manifest.parent} was interrupted, but its runs {missing} are not "
                "in this grid: run the sweep with the grid it was started with to finish it"
            )
        twice = [str(m) for m in members if m in claimed]
        if twice:
            raise ValueError(
                f"the manifests {claimed[out / twice[0]]} and {manifest} both list the "
                f"unfinished runs {twice}: move away the population folder that did not "
                "train them"
            )
        resume = _can_resume(manifest.parent, members, status)
        claimed |= dict.fromkeys(members, manifest)
        jobs.append(
            PopulationJob(
                tuple(by_folder[m] for m in members),
                tuple(members),
                manifest.parent,
                resume=resume,
                restart=not resume,
            )
        )
    unclaimed = [f for f in folders if status[f] == "unfinished" and f not in claimed]
    if unclaimed:
        raise ValueError(
            f"{[str(f) for f in unclaimed]} hold unfinished runs that no population manifest "
            f"under {out / POPULATIONS_DIR} lists: resume each with "
            "`python -m redo train --resume`, or move them away"
        )

    groups: dict[tuple[Any, ...], list[Path]] = {}
    for folder in folders:
        if status[folder] == "new" and folder not in claimed:  # not a started one's member
            groups.setdefault(_shared_settings(by_folder[folder]), []).append(folder)
    for members in groups.values():
        check_population([by_folder[m] for m in members])
    parts = {key: -(-len(members) // max_population) for key, members in groups.items()}
    while sum(parts.values()) < min_populations:
        splittable = [key for key, n in parts.items() if n < len(groups[key])]
        if not splittable:
            break
        largest = max(splittable, key=lambda key: len(groups[key]) / parts[key])
        parts[largest] += 1
    for key, members in groups.items():
        for chunk in _even_chunks(members, parts[key]):
            jobs.append(
                PopulationJob(
                    tuple(by_folder[m] for m in chunk),
                    tuple(chunk),
                    out / POPULATIONS_DIR / _population_id(out, chunk),
                    resume=False,
                )
            )
    return jobs


def _even_chunks(members: Sequence[Path], parts: int) -> list[list[Path]]:
    """``members`` in ``parts`` consecutive chunks whose sizes differ by at most one."""
    size, extra = divmod(len(members), parts)
    chunks, start = [], 0
    for part in range(parts):
        stop = start + size + (part < extra)
        chunks.append(list(members[start:stop]))
        start = stop
    return chunks


def _can_resume(population: Path, members: Sequence[Path], status: Mapping[Path, str]) -> bool:
    """Whether an interrupted population resumes from its checkpoint (True) or, stopped
    before its first one, trains anew (False); raises if some members finished without the
    others, which no population does."""
    from redo.population.lockstep import POPULATION_CHECKPOINT

    finished = [str(m) for m in members if status[m] == "finished"]
    if finished:
        raise ValueError(
            f"population {population} cannot resume: {finished} finished without the others; "
            f"move its run folders {[str(m) for m in members]} away and run the sweep again"
        )
    return (population / POPULATION_CHECKPOINT).is_file()


def write_manifest(job: PopulationJob) -> None:
    """Record which runs train together, before they start, so that a resume finds them.

    An existing manifest is kept: a population's id is a hash of its members, so it lists
    the same runs.
    """
    path = job.folder / MANIFEST_FILE
    if path.exists():
        return
    job.folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"runs": job.members()}, indent=2) + "\n"
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a crash leaves no half-written manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        runs = manifest.get("runs") if isinstance(manifest, dict) else None
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise ValueError("no list of run folders")
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a population manifest ({err}); restore it from the sweep that "
            "wrote it, or move the population's folder away"
        ) from err
    return manifest


def _shared_settings(config: DQNConfig) -> tuple[Any, ...]:
    """What agents of one population must share: every setting but the per-agent ones."""
    from redo.population.lockstep import PER_AGENT_SETTINGS

    return tuple(
        (f.name, getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name not in PER_AGENT_SETTINGS
    )


def _population_id(out: Path, members: Sequence[Path]) -> str:
    """A name that depends only on the members, so a re-planned population keeps it."""
    names = "\n".join(str(m.relative_to(out)) for m in members)
    return "pop-" + hashlib.sha1(names.encode()).hexdigest()[:10]


class CodeChangedError(RuntimeError):
    """The package's code changed under a running sweep (:func:`train_job`'s ``code``)."""


def train_job(
    job: PopulationJob,
    device: str | None = None,
    progress: bool = False,
    threads: int = 0,
    code: str | None = None,
) -> list[str]:
    """Write the job's manifest, then train (or resume, or restart) its population with
    ``threads`` torch threads (0: leave the process's setting); returns its run folders.
    This is what a worker process or a Ray task runs.

    With ``code`` (the :func:`redo.records.provenance.code_fingerprint` of when the sweep
    started), a population whose code has changed since does not start
    (:class:`CodeChangedError`): its worker could run either version and its records would
    name the new one."""
    from redo.population.lockstep import (
        train_population,  # torch and the envs load only when needed
    )
    from redo.records.provenance import code_fingerprint

    if code is not None and code_fingerprint() != code:
        raise CodeChangedError(
            f"population {job.name} not started: the package's code changed after the sweep "
            "started, so its worker could run either version and its records would name the "
            "new one. Run the same command again to go on with the code as it is now; to "
            "edit the code while a long sweep runs, run the sweep from another checkout "
            "(e.g. `git worktree add`)"
        )
    if threads:
        import torch

        torch.set_num_threads(threads)
    write_manifest(job)
    if job.restart:  # stopped before its first checkpoint: nothing to resume from
        for folder in job.run_folders:
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
    train_population(
        list(job.configs),
        job.folder,
        device=device,
        progress=progress,
        run_folders=job.run_folders,
        resume=job.resume,
    )
    return [str(f) for f in job.run_folders]


def local_workers() -> int:
    """Worker processes for a sweep on this machine: one per core the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def planned_min_populations(workers: int | None, ray_address: str | None = None) -> int:
    """The ``min_populations`` that :func:`run_sweep` plans with: one population per local
    worker (None: one per core), or 1 on Ray, whose cluster may be any size."""
    if ray_address is not None:
        return 1
    return local_workers() if workers is None else workers


def run_sweep(
    grid: Grid,
    out: str | Path,
    max_population: int = 32,
    device: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    ray_address: str | None = None,
    cpus_per_population: float = 1.0,
    gpus_per_population: float = 0.0,
    progress: bool = False,
    on_done: Callable[[PopulationJob], object] | None = None,
) -> list[PopulationJob]:
    """Train every run of ``grid`` that is not finished under ``out``; returns the jobs run.

    Without ``ray_address`` the populations train on ``workers`` processes of this machine
    (None: one per core, :func:`local_workers`), each with ``threads`` torch threads; with
    ``workers=1`` they train one after another in this process. Populations are planned so
    that every worker has one (:func:`plan`'s ``min_populations``) and started longest first.
    With ``ray_address``, each population is one Ray task that asks for
    ``cpus_per_population`` CPUs and ``gpus_per_population`` GPUs, so Ray runs as many at once
    as the cluster holds. ``ray_address`` is ``"local"`` (start a Ray instance on this
    machine, without dashboard, with every CPU and GPU it has; it is shut down at the end),
    ``"auto"`` (join the cluster this machine belongs to) or ``host:port``; if Ray is already
    initialized in this process, that instance is used. On a cluster, ``out`` must be a
    folder every node can write and ``redo`` installed on every node. Either way a population
    that fails does not stop the others, and :class:`SweepError` names the failed ones at the
    end.

    ``device`` replaces the configs' device
    (:func:`redo.population.lockstep.train_population`); ``progress`` shows a bar per
    population, in this process only; ``on_done(job)`` is called as each population ends.
    """
    out = Path(out).absolute()  # workers need not share this process's working folder
    workers = local_workers() if workers is None else workers
    jobs = plan(grid, out, max_population, planned_min_populations(workers, ray_address))
    if ray_address is None:
        longest_first = sorted(jobs, key=lambda job: job.cost, reverse=True)
        run_jobs(longest_first, device, workers, threads, progress, on_done)
    elif jobs:
        _run_on_ray(jobs, device, ray_address, cpus_per_population, gpus_per_population, on_done)
    return jobs


def run_jobs(
    jobs: Sequence[PopulationJob],
    device: str | None = None,
    workers: int = 1,
    threads: int = 1,
    progress: bool = False,
    on_done: Callable[[PopulationJob], object] | None = None,
    may_start: Callable[[PopulationJob], bool] | None = None,
) -> list[PopulationJob]:
    """Train ``jobs`` in their order on ``workers`` local processes (in this process when
    ``workers`` is 1); a failed population does not stop the others (:class:`SweepError`).

    With ``may_start``, a free worker takes the first job that ``may_start(job)`` accepts at
    that moment (e.g. one that finishes before a deadline); the jobs it still refuses when
    nothing else is left to run are returned untrained. Without it, every job trains and the
    returned list is empty."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    from redo.records.provenance import code_fingerprint  # it imports torch

    code = code_fingerprint()
    pending = list(jobs)
    failed: list[tuple[PopulationJob, BaseException]] = []

    def take() -> PopulationJob | None:
        for job in pending:
            if may_start is None or may_start(job):
                pending.remove(job)
                return job
        return None

    if workers == 1:
        while (job := take()) is not None:
            try:
                train_job(job, device, progress, threads, code)
            except Exception as err:
                failed.append((job, err))
                continue
            if on_done is not None:
                on_done(job)
    else:
        import multiprocessing
        import queue

        context = multiprocessing.get_context("spawn")  # no torch state forked into a worker
        done: queue.SimpleQueue[tuple[PopulationJob, BaseException | None]] = queue.SimpleQueue()
        processes = min(workers, max(len(pending), 1))
        running = 0
        # Leaving the block, normally or by an interruption, terminates the workers: each
        # turns the SIGTERM into a KeyboardInterrupt (interrupt_on_sigterm), so its runs are
        # marked interrupted and stay resumable from their last checkpoint.
        with context.Pool(processes, initializer=interrupt_on_sigterm) as pool:
            while True:
                while running < processes and (job := take()) is not None:
                    pool.apply_async(
                        train_job,
                        (job, device, False, threads, code),
                        callback=lambda _, job=job: done.put((job, None)),
                        error_callback=lambda err, job=job: done.put((job, err)),
                    )
                    running += 1
                if running == 0:
                    break
                job, err = done.get()
                running -= 1
                if err is not None:
                    failed.append((job, err))
                elif on_done is not None:
                    on_done(job)
            pool.close()  # all done: let the workers exit by themselves, not by a signal
            pool.join()
    _raise_failed(failed, len(jobs))
    return pending


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (what ``kill`` sends, and how a pool stops its workers) and SIGINT raise
    KeyboardInterrupt in this process, so that training stops as on Ctrl-C: every run is
    marked interrupted and resumes from its last checkpoint. A process started in the
    background of a non-interactive shell ignores SIGINT; this undoes that too.

    Only the first signal interrupts; later ones are ignored. Ctrl-C reaches the workers and
    the main process together, and the main process then terminates its pool, so a worker
    gets a SIGTERM while it is still marking its runs interrupted: a second KeyboardInterrupt
    there would leave the records saying ``running``."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def _raise_failed(failed: Sequence[tuple[PopulationJob, BaseException]], total: int) -> None:
    if failed:
        names = ", ".join(job.name for job, _ in failed)
        raise SweepError(
            f"{len(failed)} of {total} populations failed ({names}); the first error: "
            f"{failed[0][1]!r}"
        ) from failed[0][1]


def _run_on_ray(
    jobs: Sequence[PopulationJob],
    device: str | None,
    ray_address: str,
    cpus: float,
    gpus: float,
    on_done: Callable[[PopulationJob], object] | None,
) -> None:
    import ray  # an optional dependency: the `ray` extra

    started = not ray.is_initialized()
    if started and ray_address == "local":
        ray.init(address="local", include_dashboard=False)
    elif started:
        ray.init(address=ray_address)
    try:
        if ray_address == "local":
            _check_resources(ray.cluster_resources(), cpus, gpus)
        # No retries: a population retried after a crash would find its run folders taken.
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(train_job)
        pending = {task.remote(job, device): job for job in jobs}
        failed: list[tuple[PopulationJob, BaseException]] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                ray.get(done[0])
            except Exception as err:  # the task's error, or a crashed worker
                failed.append((job, err))
                continue
            if on_done is not None:
                on_done(job)
    finally:
        if started:
            ray.shutdown()
    _raise_failed(failed, len(jobs))


def _check_resources(resources: Mapping[str, float], cpus: float, gpus: float) -> None:
    """A task that asks for more than the machine has would wait forever: refuse it."""
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        have = resources.get(name, 0.0)
        if need > have:
            raise ValueError(
                f"a population asks for {need:g} {name}s, but this machine's Ray instance has "
                f"{have:g}: ask for fewer per population"
            )


__all__ = [
    "AXES",
    "MANIFEST_FILE",
    "METHODS",
    "POPULATIONS_DIR",
    "CodeChangedError",
    "Grid",
    "PopulationJob",
    "SweepError",
    "check_folder",
    "interrupt_on_sigterm",
    "local_workers",
    "plan",
    "planned_min_populations",
    "run_cost",
    "run_folder",
    "run_jobs",
    "run_status",
    "run_sweep",
    "train_job",
    "write_manifest",
]
