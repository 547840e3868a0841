"""Colab: the repository's files a chapter reads, fetched where the chapter expects them.

A local build runs the chapters in ``book/`` of a checkout, where ``data/`` (the stored runs
and benchmark reports) and ``../campaigns/`` (the campaign plans) are at hand. A chapter
opened in Colab has only its notebook and the installed package, so its first cell calls
:func:`fetch_book_data`, which there extracts those folders from the repository's archive
into the same layout around the working folder (``../book/data`` with ``data`` linked to
it, and ``../campaigns``), so that a plan's data folders and the chapter's paths agree; and
elsewhere does nothing.

Two environment variables let a test run the Colab path without a network or Colab:
``REDO_BOOK_COLAB=1`` behaves as in Colab, and ``REDO_BOOK_DATA_SOURCE`` names the archive
(a URL, or a local ``.tar.gz`` laid out like the repository's).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

#: The repository's archive on GitHub (the book's ``_config.yml`` names the repository).
ARCHIVE_URL = "https://github.com/redo-book/redo-book/archive/refs/heads/main.tar.gz"
#: Set to "1" to behave as in Colab (tests).
COLAB_VARIABLE = "REDO_BOOK_COLAB"
#: An archive to read instead of :data:`ARCHIVE_URL`: a URL or a local path (tests).
SOURCE_VARIABLE = "REDO_BOOK_DATA_SOURCE"
#: The repository's folders that chapters read, and where they go: the repository's layout
#: around a working folder that plays the part of ``book/``.
BOOK_FOLDERS: dict[str, str] = {"book/data": "../book/data", "campaigns": "../campaigns"}
#: The working folder's ``data``, as in ``book/``: a link to the fetched ``../book/data``.
DATA_LINK = "data"


def in_colab() -> bool:
    """Whether this runs in Colab (or a test says it does, with ``REDO_BOOK_COLAB=1``)."""
    return "google.colab" in sys.modules or os.environ.get(COLAB_VARIABLE) == "1"


def fetch_book_data(
    folders: Mapping[str, str] = BOOK_FOLDERS, source: str | None = None
) -> list[Path]:
    """In Colab, extract the repository's ``folders`` (repository path -> local path) from
    its archive; elsewhere, or for folders that already exist, do nothing. Returns the
    folders written.

    ``source`` (default: ``$REDO_BOOK_DATA_SOURCE``, else :data:`ARCHIVE_URL`) is the
    archive: a URL or a local ``.tar.gz`` whose single top folder holds the repository.
    """
    if not in_colab():
        return []
    wanted = {repo: Path(local) for repo, local in folders.items() if not Path(local).exists()}
    if "book/data" in folders and not Path(DATA_LINK).exists():
        Path(DATA_LINK).symlink_to(Path(folders["book/data"]), target_is_directory=True)
    if not wanted:
        return []
    source = source or os.environ.get(SOURCE_VARIABLE) or ARCHIVE_URL
    written: set[Path] = set()
    with _open_archive(source) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
                continue  # never write outside the target folders
            inside = PurePosixPath(*path.parts[1:])  # below the archive's top folder
            for repo, local in wanted.items():
                if inside.is_relative_to(repo):
                    target = local / inside.relative_to(repo)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.extractfile(member) as data, target.open("wb") as out:
                        shutil.copyfileobj(data, out)
                    written.add(local)
    missing = sorted(repo for repo, local in wanted.items() if local not in written)
    if missing:
        raise FileNotFoundError(f"the archive {source} holds no {missing}")
    return sorted(written)


def _open_archive(source: str) -> tarfile.TarFile:
    """The archive at a URL or a local path, opened for reading."""
    if "://" in source:
        with urllib.request.urlopen(source, timeout=120) as response:
            return tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:gz")
    return tarfile.open(source, mode="r:gz")


__all__ = [
    "ARCHIVE_URL",
    "BOOK_FOLDERS",
    "COLAB_VARIABLE",
    "DATA_LINK",
    "SOURCE_VARIABLE",
    "fetch_book_data",
    "in_colab",
]
