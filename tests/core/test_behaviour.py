"""ActAdd steers the real embedded model: the wedding vector at a strength known to move SmolLM2."""

from __future__ import annotations

import pytest

import actadd
from actadd.studies.evaluation.metrics import topic_success

PROMPT = "I went up to my friend and said"


@pytest.mark.slow
def test_wedding_vector_steers_the_embedded_model(smol):
    # Layer 14 at c = 3 (relative norm about 3.6) steered over 90% of completions in earlier runs
    # of notebook 01; the thresholds leave room for sampling noise over 16 draws.
    vector = actadd.steering_vector(smol, " weddings", "", layer=14, coeff=3.0)
    unsteered, steered = actadd.generate_sweep(smol, PROMPT, [None, vector], 16, seed=0, progress=False)
    assert topic_success(steered) >= 0.6
    assert topic_success(unsteered) <= 0.1
