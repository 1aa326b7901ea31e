"""02 · Perplexity by topic relevance: documents binned by the density of wedding words, scored
sentence by sentence under the steered and the unsteered model; the perplexity ratio per bin and
the relevance slope, at the paper's c = 1 and at 01's tuned strength.

The notebook's parameters are read through the study (``study["density_edges"]``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from nnsight.modeling.transformers import TransformersModel

from actadd.studies.data import web_text
from actadd.studies.evaluation.relevance import (
    density_bin,
    density_labels,
    ratio_by_bin,
    ratio_estimate,
    relevance_slope,
    sample_documents,
    score_documents,
)
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.lifecycle.claims import Claim, above, below, within
from actadd.studies.lifecycle.record import StudyRecord
from actadd.studies.lifecycle.study import Section, Study
from actadd.studies.presentation import plots
from actadd.studies.sections.wedding_layers import TUNED, WeddingArms, paper_label

PAPER_ARM = "at a third of the depth (the paper's layer 16 of 48)"


def claims(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("02.unrelated", "With c = 1, the perplexity ratio on text without a wedding word is about 1",
              "about 1", f"exp(-mean(L_actadd - L_base)) over the 0% bin, {PAPER_ARM}; BCa bootstrap over documents",
              within(0.95, 1.05), "ratio"),
        Claim("02.slope", "With c = 1, the steered model gains more the more a text is about weddings",
              "ratio falls as relevance grows", "slope of L_actadd - L_base (nats/token) per percentage point of "
              f"wedding words, length and source as covariates, {PAPER_ARM}; OLS, HC3", above(0.0)),
        Claim("02.related_below_1", "With c = 1, the ratio falls below 1 on the most wedding-dense kept bin",
              "below 1", f"exp(-mean(L_actadd - L_base)) over the densest bin with enough documents, {PAPER_ARM}; "
              "BCa bootstrap", below(1.0), "ratio"),
        Claim("02.tuned_unrelated", "At the tuned strength, the ratio on unrelated text is about 1",
              "about 1 (at c = 1)", "as 02.unrelated, at 01's tuned coefficient", within(0.95, 1.05), "ratio",
              arm="tuned arm"),
    ]  # fmt: skip


SECTION = Section(
    "02_perplexity_relevance",
    "GPT-2-XL on OpenWebText, wedding vector at layer 16, c = 1: the perplexity ratio (steered / unsteered) is "
    "about 1 for unrelated text and falls below 1 (the steered model predicts better) as wedding relevance grows.",
    claims,
)

FINDINGS = """The paper's arm at layer {layer:int}, a third of the depth as the paper's layer 16 of 48; the tuned arm
at layer {tuned_layer:int} ({source}); {n:int} documents of at most {max_words:int} words, half with a wedding word; the
first {masked:int} predictions of every sentence left out.

- **At the paper's c = 1** (relative norm {paper_rel:num}), the perplexity ratio on text without a wedding word is
  {unrelated:num}: the claim that it is about 1 **{v_unrelated:verdict}**. The relevance slope, length and source
  controlled, is {slope:num} nats/token per percentage point of wedding words (**{v_slope:verdict}**), and on the
  densest kept bin ({densest_bin}) the ratio is {related_below_1:num} (the claim that it falls below 1
  **{v_related_below_1:verdict}**).
- **At the tuned strength** (c = {tuned:num}, relative norm {tuned_rel:num}), the ratio on unrelated text is
  {tuned_unrelated:num} (**{v_tuned_unrelated:verdict}**): the push that steers generation reliably also changes how the
  model predicts text that has nothing to do with weddings.
- **Data.** The offline pool (Wikipedia lead sections, Brown, SpamAssassin ham, State of the Union; `data/README.md`)
  stands in for OpenWebText; the bins hold {bin_sizes}, where the paper's held over a thousand documents each.
"""


def masked_predictions(study: Study, arms: WeddingArms) -> int:
    """How many of each sentence's first predictions are left out: the vector's length ``k`` (the
    original code's ``mask_len``) or the study's ``mask_len``."""
    mask_len = study["mask_len"]
    return arms.tuned.k if mask_len == "k" else int(mask_len)


@dataclass(frozen=True)
class Documents:
    """The pool the documents are drawn from and the sample, each document with its density bin."""

    pool: pd.DataFrame
    sample: pd.DataFrame
    bins: list[str]  # the bins' labels, least dense first

    def __str__(self) -> str:
        return (f"pool: {len(self.pool)} documents, {int((self.pool.wedding_count > 0).sum())} with a wedding word; "
                f"sample: {len(self.sample)} documents")  # fmt: skip

    def by_source(self) -> pd.DataFrame:
        """Documents per source and bin."""
        return pd.crosstab(self.sample.source, pd.Categorical(self.sample.bin, self.bins), dropna=False)


def documents(study: Study) -> Documents:
    """The web-text pool (offline, or the hub source), cut into passages, and the sample: every
    wedding passage and as many others (``related_fraction``), binned by wedding-word density."""
    pool = web_text(study["data_source"], n=study["pool_size"] or None, seed=study["seed"], related_fraction=None,
                    passage_words=study["passage_words"]).to_pandas()  # fmt: skip
    sample = sample_documents(pool, study["n_docs"], related_fraction=study["related_fraction"],
                              max_words=study["max_doc_words"], seed=study["seed"])  # fmt: skip
    sample["bin"] = density_bin(sample.wedding_density, study["density_edges"])
    sample["density_pct"] = 100 * sample.wedding_density
    return Documents(pool, sample, density_labels(study["density_edges"]))


@dataclass(frozen=True)
class Scored:
    """Each document's mean token log-prob difference per arm, the ratio per bin, and the
    relevance slope per arm."""

    documents: pd.DataFrame
    by_bin: pd.DataFrame
    slopes: pd.DataFrame
    densest: str | None  # the densest kept bin above the first, in the paper's arm at c = 1

    def kept(self) -> pd.DataFrame:
        """The bins with enough documents."""
        return self.by_bin[self.by_bin.kept]


def score(study: Study, model: TransformersModel, arms: WeddingArms, docs: Documents) -> Scored:
    """Score every document unsteered and under each arm's vector, and record the claims. Saved
    as ``documents.csv``, ``relevance_slope.csv`` and ``ratio_by_bin.csv``."""
    seed, paper, first = study["seed"], paper_label(study["paper_coeff"]), docs.bins[0]
    with study.timed("scoring"):
        scored = score_documents(model, docs.sample, arms.vectors(), mask_len=masked_predictions(study, arms),
                                 batch_size=study["batch_size"])  # fmt: skip
    by_bin = ratio_by_bin(scored, min_docs=study["min_docs_per_bin"], order=docs.bins, seed=seed)
    slopes = {arm: relevance_slope(group) for arm, group in scored.groupby("arm", sort=False)}
    slope_table = pd.DataFrame([{"arm": arm, **e.as_dict()} for arm, e in slopes.items()])
    study.table(scored, "documents")
    study.table(slope_table, "relevance_slope")
    study.table(by_bin, "ratio_by_bin")

    def ratio(arm: str, name: str) -> Estimate:
        return ratio_estimate(scored[(scored.arm == arm) & (scored.bin == name)]["diff"], seed=seed)

    dense = by_bin[(by_bin.arm == paper) & by_bin.kept & (by_bin.bin != first)].bin.tolist()[-1:]
    study.record("02.unrelated", ratio(paper, first))
    study.record("02.slope", slopes[paper])
    if dense:
        study.record("02.related_below_1", ratio(paper, dense[0]), note=f"bin {dense[0]}")
    study.record("02.tuned_unrelated", ratio(TUNED, first))
    return Scored(scored, by_bin, slope_table, dense[0] if dense else None)


def figure(study: Study, arms: WeddingArms, scored: Scored) -> None:
    """The ratio by relevance per arm, and the relevance slope per arm."""
    kept = scored.kept().assign(strength=lambda t: [f"{a}: layer {layer}, rel. norm {r:.2f}" for a, layer, r in
                                                     zip(t.arm, t.layer, t.relative_norm)])  # fmt: skip
    fig, axes = plots.panels(2, title=f"{study['p_plus']!r} - {study['p_minus']!r} on {study['model_name']}, first "
                             f"{masked_predictions(study, arms)} predictions of each sentence left out",
                             panel=(6.8, 4.8))  # fmt: skip
    plots.by_setting(axes[0, 0], kept, "bin", "ratio", hue="strength", fmt="o-")
    axes[0, 0].axhline(1.0, color="black", ls="--", lw=1)
    axes[0, 0].set(xlabel="wedding-word density of the document",
                   ylabel="perplexity ratio exp(-mean(L_actadd - L_base))",
                   title=f"Ratio by relevance (BCa 95% CI; bins of >= {study['min_docs_per_bin']} documents)")  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    plots.by_setting(axes[0, 1], scored.slopes, "arm", "value", low="low", high="high", horizontal=True)
    axes[0, 1].axvline(0.0, color="black", ls="--", lw=1)
    axes[0, 1].set(xlabel="nats/token per point of wedding words",
                   title="Relevance slope, length and source controlled (OLS, HC3 95% CI)")  # fmt: skip
    study.figure(fig, "perplexity_by_relevance")


def finish(study: Study, arms: WeddingArms, docs: Documents, scored: Scored) -> StudyRecord:
    """The study's record and "What it shows"."""
    paper, masked = arms.paper[study["paper_coeff"]], masked_predictions(study, arms)
    kept = scored.kept()
    record = study.finish({
        "paper_layer": arms.paper_layer, "tuned_layer": arms.tuned.layer, "tuned_coeff": arms.tuned.coeff,
        "arms.source": arms.source, "mask_len": masked,
        "relative_norms": {arm: v.relative_norm for arm, v in arms.vectors().items()},
        "n_docs": len(docs.sample), "bins_kept": sorted(set(kept.bin), key=docs.bins.index),
        "densest_kept_bin": scored.densest,
    })  # fmt: skip
    at_paper = scored.by_bin[scored.by_bin.arm == paper_label(study["paper_coeff"])]
    bin_sizes = ", ".join(f"{b}: {n}" for b, n in zip(at_paper.bin, at_paper.n_docs))
    study.prose(FINDINGS, layer=arms.paper_layer, tuned_layer=arms.tuned.layer, source=arms.source,
                n=len(docs.sample), max_words=study["max_doc_words"], masked=masked, paper_rel=paper.relative_norm,
                densest_bin=scored.densest or "none", tuned=arms.tuned.coeff, bin_sizes=bin_sizes,
                tuned_rel=arms.tuned.relative_norm,
                **{"related_below_1": float("nan"), "v_related_below_1": study.verdict("02.related_below_1"),
                   **study.measured()})  # fmt: skip
    return record
