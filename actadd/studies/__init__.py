"""The studies layer: data, metrics, scorers, claims, the papermill runner, the report and the
explorer. It imports the :mod:`actadd` core; the core never imports it. Installed with
``pip install 'actadd[studies]'``.
"""

from actadd.studies.explorer import explore
from actadd.studies.harness.study import Results, on_colab

__all__ = ["Results", "explore", "on_colab"]
