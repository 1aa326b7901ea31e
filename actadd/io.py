"""Atomic file writes, the one cache folder, and the fast offline check before a hub download.

Nothing already computed is lost to a crash: every file is written beside its target and
renamed into place. Everything actadd caches (converted models, built datasets, scorer
features) lives under :func:`cache_dir`, never inside the installed package.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["atomic_write", "cache_dir", "hub_unreachable", "save_json"]

# Long enough for a reachable hub, short enough that an offline user learns at once.
HUB_TIMEOUT_S = 3.0


def cache_dir(*parts: str) -> Path:
    """The user's cache folder for actadd (``$ACTADD_CACHE`` or ``$XDG_CACHE_HOME/actadd``), created."""
    root = os.environ.get("ACTADD_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actadd"
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A reader never sees a half-written file and a failure leaves the old file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # not mkstemp's 0600: results are for collaborators too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_json_default)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def hub_unreachable(flags: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> str | None:
    """Why the Hugging Face hub cannot be used now (one of the offline ``flags`` set, or no
    connection within :data:`HUB_TIMEOUT_S`), or None when it answers. Saves the retries
    that a download would spend before failing offline."""
    for flag in flags:
        if os.environ.get(flag, "").lower() in ("1", "true", "yes"):
            return f"{flag} is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as error:
        return f"the hub ({endpoint.hostname}) is unreachable: {error}"
    return None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
