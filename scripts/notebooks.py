"""The book's chapters as notebooks: list them, convert them, keep the Colab copies in sync.

Chapters are MyST-markdown jupytext files under book/ (what people edit and review). Colab and
papermill need .ipynb files, so each chapter has a generated copy in book/notebooks/ without
outputs. `python scripts/notebooks.py sync` rewrites the copies; `check` fails when one is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "book" / "notebooks"
COLAB_PREFIX = (
    "https://colab.research.google.com/github/redo-book/redo-book/blob/main/book/notebooks/"
)


def chapters() -> list[Path]:
    """The chapter sources that are notebooks, in the order of _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]
    paths = [ROOT / f"{name}.md" for name in files]
    return [path for path in paths if "kernelspec:" in path.read_text()]  # notebooks only


def read_chapter(path: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook, with the python3 kernelspec papermill needs. Cell ids are
    the chapter's name and the cell's position, so a re-sync changes only what changed."""
    notebook = jupytext.read(path)
    notebook.metadata.pop("jupytext", None)
    for position, cell in enumerate(notebook.cells):
        cell["id"] = f"{path.stem}-{position}"
    return notebook


def notebook_path(chapter: Path) -> Path:
    return NOTEBOOK_DIR / f"{chapter.stem}.ipynb"


def colab_url(chapter: Path) -> str:
    return COLAB_PREFIX + notebook_path(chapter).name


def _cells(notebook: nbformat.NotebookNode, ids: bool = False) -> list[tuple[object, ...]]:
    return [
        (cell.cell_type, cell.source, tuple(cell.get("metadata", {}).get("tags", ())))
        + ((cell.get("id"),) if ids else ())
        for cell in notebook.cells
    ]


def stale(ids: bool = False) -> list[Path]:
    """Chapters whose generated notebook is missing or differs in any cell (and, with
    ``ids``, in a cell id)."""
    out = []
    for chapter in chapters():
        target = notebook_path(chapter)
        if not target.exists() or _cells(nbformat.read(target, as_version=4), ids) != _cells(
            read_chapter(chapter), ids
        ):
            out.append(chapter)
    return out


def sync() -> None:
    """Rewrite the notebooks that are stale (all of them would only churn the files)."""
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for chapter in stale(ids=True):
        nbformat.write(read_chapter(chapter), notebook_path(chapter))
        print(f"wrote {notebook_path(chapter).relative_to(ROOT)}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "sync":
        sync()
    elif command == "check":
        if stale_chapters := stale():
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale_chapters)
            sys.exit(f"out of sync: {names}; run `make notebooks`")
        print("notebooks in sync")
    else:
        sys.exit(f"unknown command {command!r}: use 'sync' or 'check'")
