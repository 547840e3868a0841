"""The package's shape: sub-packages whose dependencies run one way, checked by importing each
one in a fresh interpreter and looking at what it pulled in."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import redo

#: What each part of the package may import from the others. The science (core) and the run
#: records need nothing of the rest; the benchmark is imported by nothing but the command line.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "records": set(),
    "agent": {"core", "records"},
    "population": {"core", "agent", "records"},
    "analysis": {"core", "agent", "records"},
    "supervised": {"core", "records"},
    "integrations": {"core"},
    "display": set(),
    "bench": {"core", "agent", "population", "records"},
}

#: Libraries that the core must not load: it is torch and numpy only.
NOT_IN_CORE = ("gymnasium", "stable_baselines3", "pandas", "matplotlib", "seaborn", "ray", "ale_py")

PACKAGE = Path(redo.__file__).parent


def modules_of(part: str) -> list[str]:
    """Every module of one part of the package (a sub-package's modules, or one module)."""
    if (PACKAGE / part).is_dir():
        return [f"redo.{part}"] + [
            f"redo.{part}.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE / part)])
        ]
    return [f"redo.{part}"]


def imported_after(modules: list[str]) -> dict[str, object]:
    """Import ``modules`` in a fresh interpreter: the redo parts and top-level libraries it
    loaded, and the seconds the imports took after torch was loaded."""
    code = f"""
import json, sys, time, importlib
import torch
start = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
seconds = time.perf_counter() - start
print(json.dumps({{"modules": sorted(sys.modules), "seconds": seconds}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_it_may(part):
    loaded = imported_after(modules_of(part))["modules"]
    parts = {name.split(".")[1] for name in loaded if name.startswith("redo.")}
    assert parts - {part} <= ALLOWED[part], f"redo.{part} pulled in {sorted(parts - {part})}"


@pytest.mark.slow
def test_nothing_but_the_command_line_imports_the_benchmark():
    for part in set(ALLOWED) - {"bench"}:
        assert "bench" not in ALLOWED[part]
    loaded = imported_after(["redo.population.campaign", "redo.analysis.claims"])["modules"]
    assert not any(name.startswith("redo.bench") for name in loaded)


@pytest.mark.slow
def test_the_core_is_torch_and_numpy_only_and_cheap():
    report = imported_after(["redo.core"])
    tops = {name.split(".")[0] for name in report["modules"]}
    assert not tops & set(NOT_IN_CORE), sorted(tops & set(NOT_IN_CORE))
    assert report["seconds"] < 0.3, f"import redo.core took {report['seconds']:.2f} s after torch"


@pytest.mark.slow
def test_the_command_line_loads_no_heavy_library_until_a_command_runs():
    loaded = set(imported_after(["redo.cli"])["modules"])
    heavy = {"gymnasium", "stable_baselines3", "pandas", "matplotlib", "ray", "redo.bench.runner"}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert not any(name.startswith("redo.population.lockstep") for name in loaded)
