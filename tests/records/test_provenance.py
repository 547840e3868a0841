"""Provenance: where and with which code a run was made, as the record stores it."""

import os
import platform
import re
import subprocess

import pytest
import torch

from redo.records import provenance
from redo.records.provenance import collect_provenance
from redo.records.reader import load_run
from tests.records.runs import write_run


def check_provenance(prov):
    assert prov["torch_version"] == torch.__version__
    assert prov["python_version"] == platform.python_version()
    assert prov["platform"] == platform.platform()
    assert prov["device"] == "cpu"
    assert prov["hardware"]["logical_cores"] == os.cpu_count()
    assert prov["hardware"]["torch_threads"] == torch.get_num_threads()
    assert prov["hardware"]["gpu"] is None
    assert isinstance(prov["hardware"]["cpu"], str) and prov["hardware"]["cpu"]
    assert isinstance(prov["package_version"], str) and prov["package_version"]
    git = prov["git"]
    assert git is None or (
        re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    )


def test_collect_provenance():
    check_provenance(collect_provenance("cpu"))
    check_provenance(collect_provenance(torch.device("cpu")))


def test_the_record_and_its_segments_carry_the_provenance(tmp_path):
    record = load_run(write_run(tmp_path / "run")).record
    check_provenance(record["provenance"])
    assert record["segments"][-1]["provenance"] == record["provenance"]


@pytest.mark.parametrize("device", ["gpu0", 3.5])
def test_a_bad_device_is_refused(device):
    with pytest.raises(ValueError, match="torch device"):
        collect_provenance(device)


def test_git_state_outside_a_checkout_is_none(tmp_path):
    (tmp_path / "__init__.py").touch()
    assert provenance._git_state(tmp_path) is None


class Repository:
    """A git repository in ``folder`` (the test is skipped where git is missing)."""

    GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@t")

    def __init__(self, folder):
        self.folder = folder
        try:
            self.git("init", "-q")
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("git is not available")

    def git(self, *args):
        subprocess.run([*self.GIT, *args], cwd=self.folder, check=True)

    def commit(self, *paths):
        self.git("add", *paths)
        self.git("commit", "-q", "-m", "c")


def test_git_state_of_a_checkout(tmp_path):
    repo = Repository(tmp_path)
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "mod.py").write_text("a = 1\n")
    repo.commit(".")
    state = provenance._git_state(tmp_path)
    assert state["dirty"] is False and re.fullmatch(r"[0-9a-f]{40}", state["commit"])
    (tmp_path / "untracked.csv").write_text("x\n")  # run folders in the checkout are not edits
    assert provenance._git_state(tmp_path)["dirty"] is False
    (tmp_path / "mod.py").write_text("a = 2\n")
    assert provenance._git_state(tmp_path)["dirty"] is True


def test_the_code_fingerprint_follows_the_package_folder_only(tmp_path):
    repo = Repository(tmp_path)
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("a = 1\n")
    (tmp_path / "chapter.md").write_text("text\n")
    repo.commit(".")
    first = provenance.code_fingerprint(package)
    assert first is not None and provenance.code_fingerprint(package) == first
    (tmp_path / "chapter.md").write_text("edited\n")  # outside the package: the same code
    (package / "run.csv").write_text("x\n")  # untracked
    assert provenance.code_fingerprint(package) == first
    repo.commit("chapter.md")  # a commit that leaves the package's files as they were
    assert provenance.code_fingerprint(package) == first
    (package / "mod.py").write_text("a = 2\n")  # an uncommitted edit of the code
    edited = provenance.code_fingerprint(package)
    assert edited != first
    (package / "mod.py").write_text("a = 3\n")
    assert provenance.code_fingerprint(package) not in (first, edited)
    repo.commit("pkg/mod.py")
    assert provenance.code_fingerprint(package) not in (first, edited)
    assert provenance.code_fingerprint(tmp_path / "elsewhere") is None


def test_a_package_copy_inside_another_repository_borrows_no_commit(tmp_path):
    """An untracked ``__init__.py`` (a copy installed into a venv inside some repository)."""
    Repository(tmp_path)
    package = tmp_path / "venv" / "redo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert provenance._git_state(package) is None


def test_git_that_hangs_or_is_missing_gives_none(monkeypatch, tmp_path):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired("git", provenance.GIT_TIMEOUT_S)

    monkeypatch.setattr(subprocess, "run", hang)
    assert provenance._git(["status"], tmp_path) is None

    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert provenance._git(["status"], tmp_path) is None
