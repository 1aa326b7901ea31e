"""Where a notebook runs: on Colab (or asked to act as if), a study takes its Colab branch, the
paper's models and datasets by hub id (``colab_parameters``, applied by ``Study.open``).

Light on purpose: the runner reads :data:`COLAB_ENV` without importing the studies' stack.
"""

from __future__ import annotations

import os
import sys

# Set to 1 (as ``python -m actadd run --colab`` does for its kernels) to take the Colab branch outside Colab.
COLAB_ENV = "ACTADD_COLAB"
# The parameter holding what a notebook changes on Colab: the paper's models and data by hub id.
COLAB_PARAMETERS = "colab_parameters"


def colab_requested() -> bool:
    """Whether :data:`COLAB_ENV` asks for the Colab branch (1, true or yes)."""
    return os.environ.get(COLAB_ENV, "").lower() in ("1", "true", "yes")


def on_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module is loaded there), or where
    :data:`COLAB_ENV` asks a notebook to take its Colab branch."""
    return "google.colab" in sys.modules or colab_requested()
