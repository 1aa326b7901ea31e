"""The studies layer, in tiers that import one way: :mod:`.evaluation` (text, topic and recall
measures, statistics, scorers), :mod:`.data` (the packaged corpora and the paper's datasets by hub
id), :mod:`.presentation` (numbers as text, prose and figures), :mod:`.lifecycle` (a study: its
parameters, claims, outputs and the record it leaves), :mod:`.protocol` (the methods a comparison
puts side by side, how each is chosen and compared, the judges it trusts), :mod:`.sections` (one
module per study) and :mod:`.pipeline` (the runner, the report, the README, the benchmark and the
command line). It imports the :mod:`actadd` core, through its public names only; the core never
imports it. Installed with ``pip install 'actadd[studies]'``.

As in :mod:`actadd`, the exported names are imported on first use (PEP 562): ``python -m
actadd`` reaches :mod:`actadd.studies.pipeline.cli` through this package, and its argument
errors should not wait for torch, nnsight and pandas.
"""

from typing import TYPE_CHECKING

from actadd.lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and editors see; at run time _EXPORTS imports these on first use
    from actadd.studies.explorer import explore
    from actadd.studies.lifecycle.colab import on_colab
    from actadd.studies.lifecycle.study import Study
    from actadd.studies.presentation.prose import model_description

# Every exported name and the module that defines it: the one table __getattr__ imports from.
_EXPORTS: dict[str, str] = {
    "explore": "actadd.studies.explorer",
    "model_description": "actadd.studies.presentation.prose",
    "Study": "actadd.studies.lifecycle.study",
    "on_colab": "actadd.studies.lifecycle.colab",
}

__all__ = ["Study", "explore", "model_description", "on_colab"]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute (a typo) as Any
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, globals())
