"""Exported names imported on first use (PEP 562), for ``actadd`` and ``actadd.studies``: a package
lists each name with the module that defines it, and pays for torch, nnsight or pandas only when
a name that needs them is touched."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], names: Sequence[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` (an exported name, imported from its module the first
    time it is asked for, then kept in ``namespace``) and ``__dir__``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        namespace[name] = value  # later lookups find it without calling __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
