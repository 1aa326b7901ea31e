"""The studies layer, in tiers that import one way: :mod:`.evaluation` (text, topic and recall
measures, statistics, scorers), :mod:`.data` (the packaged corpora and the paper's datasets by hub
id), :mod:`.harness` (a study, its claims, the methods it compares and how it chooses, judges,
formatting, prose and figures) and :mod:`.pipeline` (the runner, the report, the README, the
benchmark and the command line). It imports the :mod:`actadd` core; the core never imports it.
Installed with ``pip install 'actadd[studies]'``.

As in :mod:`actadd`, the exported names are imported on first use (PEP 562): ``python -m
actadd`` reaches :mod:`actadd.studies.pipeline.cli` through this package, and its argument
errors should not wait for torch, nnsight and pandas.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and editors see; at run time _EXPORTS imports these on first use
    from actadd.studies.explorer import explore
    from actadd.studies.harness.colab import on_colab
    from actadd.studies.harness.prose import model_description
    from actadd.studies.harness.study import Study

# Every exported name and the module that defines it: the one table __getattr__ imports from.
_EXPORTS: dict[str, str] = {
    "explore": "actadd.studies.explorer",
    "model_description": "actadd.studies.harness.prose",
    "Study": "actadd.studies.harness.study",
    "on_colab": "actadd.studies.harness.colab",
}

__all__ = ["Study", "explore", "model_description", "on_colab"]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute (a typo) as Any

    def __getattr__(name: str) -> Any:
        """An exported name, imported from its module the first time it is asked for."""
        if name not in _EXPORTS:
            raise AttributeError(f"module 'actadd.studies' has no attribute {name!r}")
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups find it without calling __getattr__
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
