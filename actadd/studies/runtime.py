"""Where the code runs, so notebooks can pick defaults that fit (e.g. GPT-2-XL on Colab)."""

from __future__ import annotations

import sys


def on_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module is loaded there)."""
    return "google.colab" in sys.modules
