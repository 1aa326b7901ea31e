"""The studies layer, in tiers that import one way: :mod:`.evaluation` (text, topic and recall
measures, statistics, scorers), :mod:`.data` (the packaged corpora and the paper's datasets by hub
id), :mod:`.harness` (a study, its claims, the methods it compares and how it chooses, judges,
formatting, prose and figures) and :mod:`.pipeline` (the runner, the report, the README, the
benchmark and the command line). It imports the :mod:`actadd` core; the core never imports it.
Installed with ``pip install 'actadd[studies]'``.
"""

from actadd.studies.explorer import explore
from actadd.studies.harness import plots
from actadd.studies.harness.prose import model_description
from actadd.studies.harness.study import Study, on_colab

__all__ = ["Study", "explore", "model_description", "on_colab", "plots"]
