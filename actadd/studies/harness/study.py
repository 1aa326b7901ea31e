"""What every study notebook does with its outputs: tables, figures, headline numbers, wall time.

results = Results("01_wedding_layers", results_dir, figures_dir, parameters={...})
results.table(by_layer, "by_layer")          # CSV in the run folder
results.figure(fig, "wedding_by_layer")      # PNG in the run folder
results.finish({"best_layer": 6, ...})       # headline.json, with wall time and versions

Everything lands in ``results_dir``. The committed ``figures/`` is written only when a run is
published (``python -m actadd run --publish``, ``make study``), beside the README and the
``results/`` snapshot it goes with, so a run that stops half-way leaves all three as they were.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from actadd.io import atomic_write, save_json


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for package in ("actadd", "torch", "nnsight", "transformers", "datasets"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def setting_from_study(
    results_dir: str | Path, study: str, keys: tuple[str, ...], defaults: tuple[Any, ...]
) -> tuple[tuple[Any, ...], str]:
    """Values another study of the same run chose (``keys`` of its ``headline.json``), or the
    ``defaults`` when the run has no such result; with a sentence saying which, for the prose."""
    headline_file = Path(results_dir).parent / study / "headline.json"
    if headline_file.is_file():
        headline = json.loads(headline_file.read_text()).get("headline", {})
        if all(headline.get(k) is not None for k in keys):
            return tuple(headline[k] for k in keys), f"chosen by notebook {study} in this run"
    return defaults, f"this notebook's parameters (no {study} result in this run folder)"


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV (no index), atomically. Lines end in CRLF as RFC 4180 has it,
    which makes the csv writer quote a text holding a bare carriage return (tweets do): with
    "\n" endings it would not, and a reader would split that row in two."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\r\n"))


class Results:
    """Collects one study's outputs into ``results_dir``.

    ``figures_dir`` is taken and not used: the notebooks still pass their ``figures_dir``
    parameter (``"../figures"`` by hand), and figures now stay in ``results_dir`` until
    ``publish`` copies them into ``figures/``.
    """

    def __init__(
        self, study: str, results_dir: str | Path, figures_dir: str | Path | None, parameters: dict[str, Any]
    ) -> None:
        self.study = study
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parameters = parameters
        self.start = time.perf_counter()
        sns.set_theme(context="notebook", style="whitegrid")

    def table(self, table: pd.DataFrame, name: str) -> Path:
        """Save a results table as ``<name>.csv`` in the run folder."""
        return save_table(table, self.dir / f"{name}.csv")

    def figure(self, fig: plt.Figure, name: str) -> Path:
        """Save a figure as ``<name>.png`` in the run folder; returns its path."""
        fig.tight_layout()
        return atomic_write(self.dir / f"{name}.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png"))

    def prose(self, markdown: str, name: str = "what_it_shows") -> Path:
        """Save prose rendered from this run's numbers as ``<name>.md`` in the run folder."""
        return atomic_write(self.dir / f"{name}.md", lambda tmp: tmp.write_text(markdown))

    @property
    def wall_time_s(self) -> float:
        return time.perf_counter() - self.start

    def finish(self, headline: dict[str, Any]) -> dict[str, Any]:
        """Write ``headline.json``: the headline numbers, parameters, wall time and versions."""
        record = {
            "study": self.study,
            "headline": headline,
            "parameters": self.parameters,
            "wall_time_s": round(self.wall_time_s, 1),
            "versions": versions(),
        }
        save_json(record, self.dir / "headline.json")
        return record


def on_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module is loaded there)."""
    return "google.colab" in sys.modules
