"""Every chapter executes headlessly with papermill at smoke parameters, as a reader's would.

The parameters below only shrink the work; the book build runs the chapters at their
defaults. A chapter in _toc.yml without an entry here fails, so none can be skipped.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import papermill
import pytest

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
    "performance": {},
    "results": {
        "run_dirs": [f"{FIXTURE}/minatar-1m"],
        "plan": f"{FIXTURE}/campaigns/tiny.json",
        "ablation_dir": f"{FIXTURE}/ablations-250k",
        "return_window": 200,
        "n_resamples": 200,
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


@pytest.mark.slow
@pytest.mark.parametrize("chapter", notebooks.chapters(), ids=lambda path: path.stem)
def test_chapter_executes_with_papermill(chapter, tmp_path):
    write_dataset(tmp_path / "data")
    papermill.execute_notebook(
        str(notebooks.notebook_path(chapter)),
        str(tmp_path / f"{chapter.stem}.ipynb"),
        parameters=with_run_folder(SMOKE_PARAMETERS[chapter.stem], tmp_path),
        kernel_name="python3",
        cwd=str(chapter.parent),
        progress_bar=False,
    )


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
