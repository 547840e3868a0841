"""Every chapter's Colab notebook executes under ``pytest --nbmake`` at smoke parameters, as a
reader's notebook would run; papermill re-executes a chapter with new parameters; and the
chapters that read stored runs also run as in Colab, from a folder without the data.

The parameters below only shrink the work; the book build runs the chapters at their
defaults. A chapter in _toc.yml without an entry here fails, so none can be skipped.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from redo.colab import COLAB_VARIABLE, SOURCE_VARIABLE
from tests import synthetic_runs

ROOT = Path(__file__).resolve().parents[2]  # the repository
_spec = importlib.util.spec_from_file_location("notebooks", ROOT / "scripts" / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)

RUN_FOLDER = "<the test's temporary folder>"
FIXTURE = "<the synthetic dataset>"  # replaced by a folder of synthetic_runs
SMOKE_PARAMETERS: dict[str, dict[str, object]] = {
    "index": {"batch_size": 8},
    "score": {"n_states": 32, "mlp_train_steps": 20},
    "recycle": {"train_steps": 30, "follow_steps": 20, "n_seeds": 1},
    "phenomenon": {
        "n_seeds": 1,
        "epochs": 4,
        "shuffle_every": 2,
        "dqn_steps": 2_500,
        "learning_starts": 500,
        "out_dir": RUN_FOLDER,
    },
    "performance": {"bench_dir": str(ROOT / "book" / "data" / "bench")},
    "results": {
        "run_dirs": [f"{FIXTURE}/minatar-1m"],
        "plan": f"{FIXTURE}/campaigns/tiny.json",
        "ablation_dir": f"{FIXTURE}/ablations-250k",
        "return_window": 200,
        "n_resamples": 200,
        "supervised_dir": RUN_FOLDER,
        "supervised_seeds": [0],
        "supervised_epochs": 4,
        "supervised_shuffle_every": 2,
    },
    "ablations": {
        "ablation_dir": f"{FIXTURE}/ablations-250k",
        "plan": f"{FIXTURE}/campaigns/tiny.json",
    },
    "own_agent": {
        "total_steps": 2_000,
        "learning_starts": 500,
        "period": 200,
        "out_dir": RUN_FOLDER,
    },
    "training": {
        "total_steps": 1_500,
        "learning_starts": 500,
        "epsilon_decay_steps": 500,
        "log_interval": 50,
        "out_dir": RUN_FOLDER,
    },
}


def with_run_folder(parameters: dict[str, object], tmp_path: Path) -> dict[str, object]:
    """Runs written by a smoke execution go to the test's temporary folder; chapters that
    read stored runs read the synthetic dataset there."""

    def resolve(value: object) -> object:
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if value == RUN_FOLDER:
            return str(tmp_path / "runs")
        if isinstance(value, str) and value.startswith(FIXTURE):
            return str(tmp_path / "data") + value.removeprefix(FIXTURE)
        return value

    return {k: resolve(v) for k, v in parameters.items()}


#: The tiny campaign of the synthetic dataset: stage 1 plans a seed (2) that is not in, and
#: the ablations a block (period-250) none of whose runs is in, as a campaign under way would.
TINY_SETTINGS = {
    "total_steps": synthetic_runs.TOTAL,
    "learning_starts": synthetic_runs.LEARNING_STARTS,
}
ABLATIONS: dict[str, tuple[tuple[str, ...], dict[str, object], tuple[int, ...]]] = {
    # block: methods, ReDo settings, seeds written
    "baseline": (("dqn", "redo"), {}, (0, 1)),
    "selection-random": (("redo",), {"redo_selection": "random"}, (0, 1)),
    "step-zero_all": (("redo",), {"redo_step_mode": "zero_all"}, (0,)),
    "reset-all-500": (("redo",), {"redo_selection": "all", "redo_period": 500}, (0, 1)),
    "period-250": (("redo",), {"redo_period": 250}, ()),
}


def write_plan(root: Path) -> Path:
    """``root/campaigns/tiny.json``: a plan whose blocks write into ``root`` (a plan's data
    folders are resolved against the folder above its own)."""
    games = list(synthetic_runs.GAMES)
    blocks = [
        {
            "name": "stage1",
            "data": "minatar-1m",
            "envs": games,
            "methods": ["dqn", "redo"],
            "replay_ratios": list(synthetic_runs.RATIOS),
            "seeds": [0, 1, 2],
            "settings": TINY_SETTINGS,
        }
    ] + [
        {
            "name": f"ablations/{name}",
            "data": f"ablations-250k/{name}",
            "envs": games,
            "methods": list(methods),
            "replay_ratios": [1.0],
            "seeds": [0, 1, 2],
            "settings": TINY_SETTINGS | overrides,
        }
        for name, (methods, overrides, _) in ABLATIONS.items()
    ]
    path = root / "campaigns" / "tiny.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": "tiny", "blocks": blocks}, indent=1))
    return path


def write_dataset(root: Path) -> None:
    """The results grid in miniature (2 games x 2 methods x 2 replay ratios x seeds 0 and 1)
    under ``minatar-1m``, ablation blocks under ``ablations-250k`` (one of them empty), all
    synthetic run records, and the plan that lists them with a seed more."""
    write_plan(root)
    grid = itertools.product(synthetic_runs.GAMES, (False, True), synthetic_runs.RATIOS, (0, 1))
    for env_id, redo, ratio, seed in grid:
        folder = root / "minatar-1m" / env_id / f"{'redo' if redo else 'dqn'}-rr{ratio:g}-s{seed}"
        synthetic_runs.write_synthetic_run(folder, env_id, redo, ratio, seed)
    for name, (methods, overrides, seeds) in ABLATIONS.items():
        for env_id, method, seed in itertools.product(synthetic_runs.GAMES, methods, seeds):
            synthetic_runs.write_synthetic_run(
                root / "ablations-250k" / name / env_id / f"{method}-rr1-s{seed}",
                env_id, method == "redo", 1.0, seed, **overrides,
            )  # fmt: skip


def test_every_chapter_has_smoke_parameters():
    assert sorted(SMOKE_PARAMETERS) == sorted(c.stem for c in notebooks.chapters())


def test_colab_notebooks_are_in_sync_with_the_chapters():
    assert notebooks.stale() == [], "run `make notebooks` to regenerate book/notebooks/"


@pytest.mark.parametrize("chapter", notebooks.chapters(), ids=lambda path: path.stem)
def test_chapter_links_to_its_colab_notebook(chapter):
    assert notebooks.colab_url(chapter) in chapter.read_text()


@pytest.mark.parametrize("chapter", notebooks.chapters(), ids=lambda path: path.stem)
def test_chapter_has_a_parameters_cell(chapter):
    cells = notebooks.read_chapter(chapter).cells
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "papermill needs exactly one cell tagged 'parameters'"


def smoke_notebook(chapter: Path, folder: Path, parameters: dict[str, object]) -> Path:
    """The chapter's Colab notebook with ``parameters`` injected (as papermill injects
    them), written into ``folder``."""
    notebook = load_notebook_node(str(notebooks.notebook_path(chapter)))  # with cell tags
    notebook = parameterize_notebook(notebook, parameters)
    path = folder / f"{chapter.stem}.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("chapter", notebooks.chapters(), ids=lambda path: path.stem)
def test_chapter_notebook_runs_under_nbmake(chapter, tmp_path):
    write_dataset(tmp_path / "data")
    folder = tmp_path / "book"
    folder.mkdir()
    path = smoke_notebook(
        chapter, folder, with_run_folder(SMOKE_PARAMETERS[chapter.stem], tmp_path)
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=900", "-p",
         "no:cacheprovider", "-q", str(path)],
        cwd=folder, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_papermill_reexecutes_a_chapter_with_new_parameters(tmp_path):
    chapter = notebooks.ROOT / "book" / "index.md"
    out = tmp_path / "index.ipynb"
    papermill.execute_notebook(
        str(notebooks.notebook_path(chapter)), str(out), parameters={"seed": 3, "batch_size": 8},
        kernel_name="python3", cwd=str(chapter.parent), progress_bar=False,
    )  # fmt: skip
    injected = [
        c
        for c in nbformat.read(out, as_version=4).cells
        if "injected-parameters" in c.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and "seed = 3" in injected[0].source


#: The chapters that read the repository's files, and the parameters that name them (which
#: the Colab run leaves at their defaults).
DATA_CHAPTERS = {
    "results": ("run_dirs", "plan", "ablation_dir"),
    "ablations": ("ablation_dir", "plan"),
    "performance": ("bench_dir",),
}


def repository_archive(path: Path, staging: Path) -> Path:
    """A ``.tar.gz`` laid out like the repository's archive on GitHub, holding the synthetic
    dataset as ``book/data``, the bench reports, and the tiny plan as
    ``campaigns/evidence.json`` (the chapters' default plan)."""
    data = staging / "book" / "data"
    write_dataset(data)
    shutil.copytree(ROOT / "book" / "data" / "bench", data / "bench")
    plan = json.loads((data / "campaigns" / "tiny.json").read_text())
    for block in plan["blocks"]:
        block["data"] = f"book/data/{block['data']}"  # the plan's root is the repository
    (staging / "campaigns").mkdir()
    (staging / "campaigns" / "evidence.json").write_text(json.dumps(plan))
    with tarfile.open(path, "w:gz") as archive:
        for folder in ("book", "campaigns"):
            archive.add(staging / folder, arcname=f"redo-book-main/{folder}")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", DATA_CHAPTERS)
def test_data_chapter_runs_as_in_colab_without_the_data(name, tmp_path, monkeypatch):
    """Colab simulated: an empty working folder with the notebook only, the repository's
    archive a local copy; the chapter's first cell fetches what it reads."""
    archive = repository_archive(tmp_path / "repo.tar.gz", tmp_path / "staging")
    content = tmp_path / "colab" / "content"
    content.mkdir(parents=True)
    parameters = {
        key: value
        for key, value in with_run_folder(SMOKE_PARAMETERS[name], tmp_path).items()
        if key not in DATA_CHAPTERS[name]
    }
    path = smoke_notebook(notebooks.ROOT / "book" / f"{name}.md", content, parameters)
    monkeypatch.setenv(COLAB_VARIABLE, "1")
    monkeypatch.setenv(SOURCE_VARIABLE, str(archive))
    papermill.execute_notebook(
        str(path), str(tmp_path / "out.ipynb"), kernel_name="python3", cwd=str(content),
        progress_bar=False,
    )  # fmt: skip
    assert (content / "data").is_symlink() and (tmp_path / "colab" / "campaigns").is_dir()
    assert (tmp_path / "colab" / "book" / "data" / "bench").is_dir()


@pytest.mark.slow
def test_results_executes_before_any_run_is_in(tmp_path):
    """The Results chapter on a campaign that has just started: the plan, empty data folders."""
    write_plan(tmp_path / "data")
    for folder in ("minatar-1m", "ablations-250k"):
        (tmp_path / "data" / folder).mkdir()
    chapter = notebooks.ROOT / "book" / "results.md"
    out = tmp_path / "results.ipynb"
    papermill.execute_notebook(
        str(notebooks.notebook_path(chapter)),
        str(out),
        parameters=with_run_folder(SMOKE_PARAMETERS["results"], tmp_path),
        kernel_name="python3",
        cwd=str(chapter.parent),
        progress_bar=False,
    )
    text = out.read_text()
    assert "0 of 24 planned stage-1 runs are in" in text
    assert "no runs yet" in text
