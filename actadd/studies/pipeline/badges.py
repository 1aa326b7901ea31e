"""The repository's address, kept once in ``pyproject.toml`` (``[project.urls] Repository``),
written into every notebook's Colab badge and install cell and into the README's badge.

    python -m actadd badges          # rewrite them from pyproject.toml
    python -m actadd badges --check  # list the files that disagree (exit 1 if any)
"""

from __future__ import annotations

import re
from pathlib import Path

from actadd.io import atomic_write
from actadd.studies.pipeline import REPO

_REPOSITORY = re.compile(r'^Repository\s*=\s*"(https://github\.com/[^/"]+/[^/"]+?)/?"\s*$', re.MULTILINE)
# A Colab link to a notebook of a GitHub repository, and a pip install from its git URL.
_COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/main/")
_GIT = re.compile(r"git\+https://github\.com/[^/\s\"'\\]+/[^/\s\"'\\]+?(?=[\"'\s@\\]|$)")


def read_repository(pyproject: Path) -> str:
    """The ``Repository`` URL of ``[project.urls]`` in ``pyproject``."""
    match = _REPOSITORY.search(pyproject.read_text())
    if match is None:
        raise ValueError(f'{pyproject} has no [project.urls] Repository = "https://github.com/OWNER/NAME" line')
    return match.group(1)


def repository(root: Path = REPO) -> str:
    """This checkout's repository address."""
    return read_repository(root / "pyproject.toml")


def _files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "notebooks").glob("*.ipynb"))]


def _rewritten(text: str, url: str) -> str:
    owner_name = url.removeprefix("https://github.com/")
    text = _COLAB.sub(f"https://colab.research.google.com/github/{owner_name}/blob/main/", text)
    return _GIT.sub(f"git+{url}", text)


def stale_files(root: Path = REPO) -> list[Path]:
    """The README and notebooks whose badge or install line names another address."""
    url = repository(root)
    return [path for path in _files(root) if path.exists() and _rewritten(path.read_text(), url) != path.read_text()]


def rewrite(root: Path = REPO) -> list[Path]:
    """Rewrite every stale badge and install line from ``pyproject.toml``; returns the files changed."""
    url = repository(root)
    changed = stale_files(root)
    for path in changed:
        _write_text(path, _rewritten(path.read_text(), url))
    return changed


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
