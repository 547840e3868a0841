"""Every chapter executes headlessly with papermill at smoke parameters, as a reader's would.

The parameters below only shrink the work; the book build runs the chapters at their
defaults. A chapter in _toc.yml without an entry here fails, so none can be skipped.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import papermill
import pytest

from tests import synthetic_runs

ROOT = Path(__file__).resolve().parent.parent
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
    "results": {"run_dirs": [f"{FIXTURE}/minatar"], "return_window": 200, "n_resamples": 200},
    "ablations": {"ablation_dir": f"{FIXTURE}/ablations", "baseline_dir": f"{FIXTURE}/minatar"},
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


def write_dataset(root: Path) -> None:
    """The results grid in miniature (2 games x 2 methods x 2 replay ratios x 2 seeds) and two
    ablation variants, as synthetic run records."""
    for i, (env_id, redo, ratio, seed) in enumerate(
        itertools.product(synthetic_runs.GAMES, (False, True), synthetic_runs.RATIOS, (0, 1))
    ):
        synthetic_runs.write_synthetic_run(
            root / "minatar" / f"run{i:02d}", env_id, redo, ratio, seed
        )
    variants = {"step-keep": {"redo_step_mode": "keep"}, "reset-all": {"tau": 1e9}}
    for name, overrides in variants.items():
        for seed in (0, 1):
            synthetic_runs.write_synthetic_run(
                root / "ablations" / name / f"s{seed}", "MinAtar/Breakout-v1", True, 1.0, seed,
                **overrides,
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
