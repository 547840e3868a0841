"""Where and with which code a run was made: package version, git commit, torch, hardware."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

#: git runs once per run start; a hung git (network file system, lock) must not hang training.
GIT_TIMEOUT_S = 5.0


def collect_provenance(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Everything needed to tell later where and with which code a run was made."""
    dev = _parse_device(device)
    return {
        "package_version": _package_version(),
        "git": _git_state(Path(__file__).resolve().parent.parent),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "hardware": _hardware(dev),
    }


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch device string such as 'cpu' or 'cuda:0', got {device!r}"
        ) from err


def _package_version() -> str:
    """The installed distribution's version; a bare source tree falls back to ``__version__``."""
    try:
        return metadata.version("redo-book")
    except metadata.PackageNotFoundError:
        import redo

        return str(getattr(redo, "__version__", "unknown"))


def _git(args: Sequence[str], cwd: Path) -> str | None:
    """stdout of a git command, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_state(source_dir: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout the package runs from; None outside a checkout.

    The package's own ``__init__.py`` must be tracked, so that a copy installed into a virtual
    environment that happens to sit inside some repository does not borrow that repository's
    commit. Untracked files do not count as dirty: run folders written into the checkout
    (``book/data``) would otherwise mark every later run dirty.
    """
    if _git(["ls-files", "--error-unmatch", "--", "__init__.py"], source_dir) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], source_dir)
    changes = _git(["status", "--porcelain", "--untracked-files=no"], source_dir)
    if commit is None or changes is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(changes.strip())}


def code_fingerprint(source_dir: Path | None = None) -> str | None:
    """What the package's code is, as git sees it: the tree of the package's folder at HEAD
    and a digest of its uncommitted changes; None outside a checkout.

    Equal fingerprints mean the same code, whatever else changed in the repository (a
    chapter, the data): a long sweep compares it at each population's start, because a worker
    imports the code it has not used yet from the checkout as it is *then*, and the record
    names the commit of *then* (:func:`collect_provenance`). ``source_dir``: the package's
    folder (default: this package's)."""
    source_dir = source_dir or Path(__file__).resolve().parent.parent
    if _git(["ls-files", "--error-unmatch", "--", "__init__.py"], source_dir) is None:
        return None
    tree = _git(["rev-parse", "HEAD:./"], source_dir)
    changes = _git(["diff", "HEAD", "--", "."], source_dir)
    if tree is None or changes is None:
        return None
    return f"{tree.strip()}+{hashlib.sha256(changes.encode()).hexdigest()[:16]}"


def _hardware(dev: torch.device) -> dict[str, Any]:
    """CPU, core and thread counts and GPU: what timings in the book depend on."""
    cuda = dev.type == "cuda" and torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(dev) if cuda else None,
    }


def _cpu_model() -> str:
    """The marketing name from /proc/cpuinfo (Linux); ``platform.processor()`` is often empty."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


__all__ = ["code_fingerprint", "collect_provenance"]
