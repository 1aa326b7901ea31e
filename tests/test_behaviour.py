"""ActAdd steers the real embedded model: the wedding vector at the quickstart's setting."""

from __future__ import annotations

import ast

import nbformat
import pytest

import actadd
from actadd.studies.metrics import topic_success
from actadd.studies.runner import find_notebooks


def _quickstart_parameter(name: str):
    nb = nbformat.read(find_notebooks(["00"])[0], as_version=4)
    source = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
            values = node.value.elts if isinstance(node.value, ast.Tuple) and len(targets) > 1 else [node.value]
            for target, value in zip(targets, values):
                if target.id == name:
                    return ast.literal_eval(value)
    raise KeyError(name)


@pytest.mark.slow
def test_wedding_vector_steers_the_embedded_model(smol):
    layer, coeff = _quickstart_parameter("wedding_layer"), _quickstart_parameter("wedding_coeff")
    prompt = _quickstart_parameter("prompt")
    vector = actadd.steering_vector(smol, " weddings", "", layer=layer, coeff=coeff)
    unsteered, steered = actadd.generate_sweep(smol, prompt, [None, vector], 16, seed=0, progress=False)
    assert topic_success(steered) >= 0.6
    assert topic_success(unsteered) <= 0.1
