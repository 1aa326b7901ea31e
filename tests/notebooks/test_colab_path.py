"""Every study notebook's Colab branch end to end, offline, in the smoke profile.

``run_notebooks(..., colab=True)`` makes ``on_colab()`` true in the kernels, so each notebook's
``Study.open`` applies its ``colab_parameters``: the paper's models and datasets by hub id. A session fixture serves those ids from a
Hugging Face cache built in a temporary folder (tests/hub_cache.py: tiny random models under the
ids the notebooks' colab_parameters name, tiny datasets in their real layouts under the ids the loaders
name), with the hub switched off. A renamed id, column or split, or a loader that reaches for the
network, fails here.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

from actadd.studies.data import prompts
from actadd.studies.lifecycle.colab import COLAB_PARAMETERS
from actadd.studies.pipeline.runner import NotebookRun, find_notebooks, run_notebooks
from tests import hub_cache

NOTEBOOKS = find_notebooks()
# The parameters colab_parameters sets to a hub model (CONTRIBUTING: model_name, and the judge).
MODEL_PARAMETERS = ("model_name", "judge_name")
DATA_PARAMETER = "data_source"
HUB_DATASETS = {**prompts.WEB_TEXT_HUB, **prompts.FACTUAL_CLOZE_HUB, **prompts.SENTIMENT_HUB, **prompts.TOXICITY_HUB}


def colab_settings(notebook: Path) -> dict[str, Any]:
    """What the notebook's parameters cell asks for on Colab (its ``colab_parameters``, which
    ``Study.open`` applies there): name -> value."""
    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == COLAB_PARAMETERS for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{notebook.name}'s parameters cell sets no {COLAB_PARAMETERS}")


SETTINGS = {notebook.stem: colab_settings(notebook) for notebook in NOTEBOOKS}
HUB_MODELS = list(dict.fromkeys(s[p] for s in SETTINGS.values() for p in MODEL_PARAMETERS if p in s))


def test_every_colab_id_is_one_the_cache_serves():
    """Quick: each hub model a Colab cell names has a tiny architecture here, and each data
    source is a hub id of some loader, so the end-to-end run below tests what Colab would load."""
    assert HUB_MODELS, "no Colab cell names a hub model"
    for repo_id in HUB_MODELS:
        assert hub_cache.tiny_model(repo_id, vocab_size=50257, eos_token_id=50256).config.vocab_size == 50257
    for study, settings in SETTINGS.items():
        if DATA_PARAMETER in settings:
            assert settings[DATA_PARAMETER] in HUB_DATASETS, (study, settings[DATA_PARAMETER])


@pytest.fixture(scope="session")
def colab_run(tmp_path_factory) -> tuple[Path, dict[str, NotebookRun]]:
    """Every study notebook's Colab branch, smoke profile, against the built cache, hub off."""
    home = tmp_path_factory.mktemp("huggingface")
    hub_cache.build_datasets(home / "hub")
    hub_cache.build_models(home / "hub", HUB_MODELS)
    out = tmp_path_factory.mktemp("colab_run")
    environment = {
        "HF_HOME": home,
        "HF_HUB_CACHE": home / "hub",
        "HF_DATASETS_CACHE": home / "datasets",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, str(value))  # the kernels inherit it
        runs = run_notebooks(NOTEBOOKS, profile="smoke", colab=True, out=out)
    return out, {run.notebook: run for run in runs}


def _tables_naming(results: Path, source: str) -> list[str]:
    """The result tables with a ``source`` or ``origin`` column whose every value names ``source``."""
    named = []
    for path in sorted(results.glob("*.csv")):
        table = pd.read_csv(path)
        for column in ("source", "origin"):
            values = table[column].dropna().astype(str) if column in table else pd.Series(dtype=str)
            if len(values) and (values.str.startswith(source)).all():
                named.append(f"{path.name}:{column}")
    return named


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("study", list(SETTINGS))
def test_colab_branch_runs_on_the_hub_models_and_data(colab_run, study):
    out, runs = colab_run
    assert json.loads((out / "run.json").read_text())["colab"] is True
    run = runs[study]
    assert run.status == "ok", run.error
    settings = SETTINGS[study]
    recorded = json.loads((out / study / "headline.json").read_text())["parameters"]
    for parameter in MODEL_PARAMETERS:
        if parameter in settings:
            assert recorded[parameter] == settings[parameter], (
                f"{study} did not run {parameter}={settings[parameter]!r}"
            )
    if DATA_PARAMETER in settings:
        source = settings[DATA_PARAMETER]
        assert recorded[DATA_PARAMETER] == source
        assert _tables_naming(out / study, source), f"no table of {study} has a source or origin naming {source!r}"
