"""The synthetic runs the analysis tests read, and a clean figure state for every test."""

import itertools

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from redo.records.reader import load_runs
from tests.synthetic_runs import GAMES, RATIOS, SEEDS, write_synthetic_run


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """16 runs: 2 games x 2 methods x 2 replay ratios x 2 seeds, in folders whose names say
    nothing about the run, so the analysis must read the configs."""
    root = tmp_path_factory.mktemp("runs")
    grid = itertools.product(GAMES, (False, True), RATIOS, SEEDS)
    for i, (env_id, redo, rr, seed) in enumerate(grid):
        write_synthetic_run(root / f"batch{i % 3}" / f"run{i:02d}", env_id, redo, rr, seed)
    return load_runs(root)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")
