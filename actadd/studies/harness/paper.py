"""What the paper reports, study by study, and the claims each study tests: the one place the
paper's text lives (Turner et al., arXiv 2308.10248, and its later versions).

Each study's claims are stated here before it runs (``Study.declare`` writes them to
``claims.json`` before any number is measured): the statement, the paper's value, the metric
measured here and a criterion on the 95% interval. A claim's statement and criterion, once
declared and run, stay as they are; an unresolved verdict is resolved by measuring better.
Some statements carry a study parameter (a margin, a batch size) and are built from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from actadd.studies.harness.claims import Claim, above, below, within
from actadd.studies.harness.formatting import Unit

# What the paper reports for each study, shown beside the study's results in the run report.
SUMMARIES: dict[str, str] = {
    "01_wedding_layers": (
        "GPT-2-XL (48 layers), p+ = ' weddings', p- = '', c = 1, 200 completions per layer: "
        "> 90% of completions mention weddings at the best layer vs about 2% unsteered; "
        "effective from layer 1, rising to about layer 6, then declining."
    ),
    "02_perplexity_relevance": (
        "GPT-2-XL on OpenWebText, wedding vector at layer 16, c = 1: the perplexity ratio "
        "(steered / unsteered) is about 1 for unrelated text and falls below 1 (the steered "
        "model predicts better) as wedding relevance grows."
    ),
    "03_factual_recall": (
        "GPT-2-XL on LAMA ConceptNet, P@K for K from 1 to 100 with and without the layer-16 "
        "wedding vector: negligible change."
    ),
    "04_sentiment": (
        "Later versions (LLaMA-3, OPT) on IMDb reviews cut to 32 tokens: negative-to-positive "
        "succeeds more often than positive-to-negative; ActAdd state of the art or close at "
        "similar fluency. (Exact table values were not available to us.)"
    ),
    "05_detox": (
        "Later versions (LLaMA-3, OPT) on RealToxicityPrompts, against PREADD, FUDGE, "
        "AirDecoding and SelfDebias: ActAdd state of the art or close at similar fluency. "
        "(Exact table values were not available to us.)"
    ),
    "06_overhead": (
        "Batch 32 x 64 random tokens, GPT-2 small to XL and OPT: the premium "
        "t_actadd / t_base - 1 is small (the original plot spans -0.05% to 0.4%) and "
        "falls with model size."
    ),
}

# The two directions of the sentiment study, by claim key.
SENTIMENT_DIRECTIONS = {"neg_to_pos": "negative→positive", "pos_to_neg": "positive→negative"}
# The two toxicity measures of the detoxification study: (name, unit, interval).
TOXICITY_MEASURES: dict[str, tuple[str, Unit, str]] = {
    "max_toxicity": ("expected maximum toxicity", "number", "bootstrap over prompts"),
    "any_toxic": ("toxicity probability", "points", "Newcombe paired interval"),
}
CONFIRMED = "(confirmation stream)"
# The methods that followed ActAdd: what the field says, for the claims that put them beside it.
MEAN_DIFFERENCE_PAPER = "(not in the paper; Im & Li 2025: the mean of differences is the best linear direction)"
PROMPTING_PAPER = "(not in the paper; AxBench, Wu et al. 2025: prompting ahead of every steering method)"
MEAN_DIFFERENCE_METRIC = "the mean difference of contrast pairs (mean over each text's tokens) added at every position"
BETTER_STEERING = "ActAdd or the mean difference, whichever did better on the selection"


def _quickstart(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("00.wedding_gain", "' weddings' - '' makes completions mention a wedding word more often",
              "> 90% vs about 2% (GPT-2-XL, c = 1)", "steered minus unsteered share at the grid's chosen setting, "
              f"fresh draws with the same seeds {CONFIRMED}; Newcombe paired interval", above(0.0), "points",
              arm="quickstart setting"),
    ]  # fmt: skip


def _wedding_layers(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("01.paper_best", "At the best layer with c = 1, more than 90% of completions mention a wedding word",
              "> 90% (GPT-2-XL, layer 6)", f"share of fresh completions {CONFIRMED} at the layer chosen on the "
              "selection stream; Wilson", above(0.9), "percent"),
        Claim("01.unsteered", "Unsteered, about 2% of completions mention a wedding word", "about 2%",
              f"share of fresh unsteered completions {CONFIRMED}; Wilson", below(0.05), "percent"),
        Claim("01.paper_gain", "Steering with c = 1 at the best layer raises that share", "+88 points (90% vs 2%)",
              f"steered minus unsteered on the same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.layer1", "Steering is effective from layer 1 (c = 1)", "effective from layer 1",
              f"steered at layer 1 minus unsteered, same seeds {CONFIRMED}; Newcombe paired interval", above(0.0),
              "points"),
        Claim("01.early_peak", "The best layer lies in the first quarter of the depth (c = 1)",
              "layer 6 of 48 (0.125)", "best layer / number of layers on the selection sweep; bootstrap of the argmax",
              below(0.25), "ratio"),
        Claim("01.tuned_best", "At a tuned strength, more than 90% of completions mention a wedding word",
              "> 90% (at c = 1)", f"share of fresh completions {CONFIRMED} at the tuned layer and coefficient; "
              "Wilson", above(0.9), "percent", arm="tuned arm"),
        Claim("01.meandiff", "At the tuned arm's layer and relative norm, ActAdd's vector mentions weddings about as "
              f"often as the mean-difference vector or more (at most {100 * p['margin']:g} points less)",
              MEAN_DIFFERENCE_PAPER, f"share with a wedding word, ActAdd minus {MEAN_DIFFERENCE_METRIC} (the tuned arm's "
              f"layer and relative norm); same seeds {CONFIRMED}; Newcombe paired interval", above(-p["margin"]),
              "points", arm="successors"),
        Claim("01.better_vs_prompting", "The better steering vector mentions weddings about as often as prompting or "
              f"more (at most {100 * p['margin']:g} points less)", PROMPTING_PAPER,
              f"share with a wedding word, the better tuned arm ({BETTER_STEERING} probe) minus prompting; same seeds "
              f"{CONFIRMED}; Newcombe paired interval", above(-p["margin"]), "points", arm="successors"),
    ]  # fmt: skip


def _perplexity_relevance(p: Mapping[str, Any]) -> list[Claim]:
    return [
        Claim("02.unrelated", "With c = 1, the perplexity ratio on text without a wedding word is about 1",
              "about 1", "exp(-mean(L_actadd - L_base)) over the 0% bin; BCa bootstrap over documents",
              within(0.95, 1.05), "ratio"),
        Claim("02.slope", "With c = 1, the steered model gains more the more a text is about weddings",
              "ratio falls as relevance grows", "slope of L_actadd - L_base (nats/token) per percentage point of "
              "wedding words, length and source as covariates; OLS, HC3", above(0.0)),
        Claim("02.related_below_1", "With c = 1, the ratio falls below 1 on the most wedding-dense kept bin",
              "below 1", "exp(-mean(L_actadd - L_base)) over the densest bin with enough documents; BCa bootstrap",
              below(1.0), "ratio"),
        Claim("02.tuned_unrelated", "At the tuned strength, the ratio on unrelated text is about 1",
              "about 1 (at c = 1)", "as 02.unrelated, at 01's tuned coefficient", within(0.95, 1.05), "ratio",
              arm="tuned arm"),
    ]  # fmt: skip


def _factual_recall(p: Mapping[str, Any]) -> list[Claim]:
    negligible = p["negligible"]
    return [
        Claim("03.negligible", "With c = 1, steering changes P@K negligibly", "negligible change",
              "mean over K of P@K steered - unsteered, paired per prompt; bootstrap over prompts",
              within(-negligible, negligible), "points"),
        Claim("03.tuned_negligible", "At the tuned strength, steering changes P@K negligibly",
              "negligible (at c = 1)", "as 03.negligible, at 01's tuned coefficient", within(-negligible, negligible),
              "points", arm="tuned arm"),
        Claim("03.vs_random", "At the tuned strength, the wedding direction costs more recall than random "
              "directions of the same norm", "(not in the paper)", "wedding minus mean random-direction change, per "
              "prompt; bootstrap over prompts", below(0.0), "points", arm="control"),
        Claim("03.vs_topics", "At the tuned strength, the wedding vector costs recall like other topics' vectors "
              "of the same relative norm", "(not in the paper)", "wedding minus mean other-topic change, per "
              "prompt; bootstrap over prompts", within(-negligible, negligible), "points", arm="control"),
    ]  # fmt: skip


def _sentiment(p: Mapping[str, Any]) -> list[Claim]:
    margin = p["margin"]
    paper = "ActAdd at or near the state of the art (later versions: LLaMA-3 and OPT on IMDb)"
    paired = "per prompt on the same seeds (evaluation stream), mean over prompts; bootstrap over prompts"
    claims = []
    for key, d in SENTIMENT_DIRECTIONS.items():
        claims.append(Claim(f"04.{key}.unsteered", f"{d}: ActAdd succeeds more often than the unsteered model", paper,
                            f"ActAdd minus unsteered success, {paired}", above(0.0), "points"))  # fmt: skip
        claims += [
            Claim(f"04.{key}.{baseline}", f"{d}: ActAdd succeeds about as often as {baseline} or more "
                  f"(at most {100 * margin:g} points less)", paper, f"ActAdd minus {baseline} success, {paired}",
                  above(-margin), "points")
            for baseline in ("prompting", "PREADD")
        ]  # fmt: skip
    for key, d in SENTIMENT_DIRECTIONS.items():
        claims += [
            Claim(f"04.{key}.meandiff", f"{d}: at ActAdd's layer and relative norm, ActAdd succeeds about as often as "
                  f"the mean-difference vector or more (at most {100 * margin:g} points less)", MEAN_DIFFERENCE_PAPER,
                  f"ActAdd minus {MEAN_DIFFERENCE_METRIC} at ActAdd's chosen layer and relative norm, success, "
                  f"{paired}", above(-margin), "points", arm="successors"),
            Claim(f"04.{key}.better_vs_prompting", f"{d}: the better steering method succeeds about as often as "
                  f"prompting or more (at most {100 * margin:g} points less)", PROMPTING_PAPER,
                  f"{BETTER_STEERING} prompts, minus prompting, success, {paired}", above(-margin), "points",
                  arm="successors"),
        ]  # fmt: skip
    claims.append(
        Claim("04.asymmetry", "Negative-to-positive steering succeeds more often than positive-to-negative",
              "negative-to-positive easier", "ActAdd success negative→positive minus positive→negative (different "
              "prompts); bootstrap over each direction's prompts (Newcombe when every prompt is 0/1)", above(0.0),
              "points")
    )  # fmt: skip
    return claims


def _detox(p: Mapping[str, Any]) -> list[Claim]:
    margin, tolerance = p["margin"], p["fluency_tolerance"]
    paper = "ActAdd at or near the state of the art (later versions: LLaMA-3 and OPT on RealToxicityPrompts)"
    paired = "per prompt on the same seeds (evaluation stream), mean over prompts"
    claims = []
    for key, (what, unit, interval) in TOXICITY_MEASURES.items():
        claims.append(Claim(f"05.{key}.unsteered", f"ActAdd lowers the {what} below the unsteered model's", paper,
                            f"ActAdd minus unsteered {what}, {paired}; {interval}", below(0.0), unit))  # fmt: skip
        claims += [
            Claim(f"05.{key}.{baseline}", f"ActAdd's {what} is about {baseline}'s or lower (at most {margin:g} above)",
                  paper, f"ActAdd minus {baseline} {what}, {paired}; {interval}", below(margin), unit)
            for baseline in ("prompting", "PREADD")
        ]  # fmt: skip
    claims += [
        Claim("05.max_toxicity.meandiff", "At ActAdd's layer and relative norm, ActAdd's expected maximum toxicity is "
              f"about the mean-difference vector's or lower (at most {margin:g} above)", MEAN_DIFFERENCE_PAPER,
              f"ActAdd minus {MEAN_DIFFERENCE_METRIC} at ActAdd's chosen layer and relative norm, expected maximum "
              f"toxicity, {paired}; bootstrap over prompts", below(margin), "number", arm="successors"),
        Claim("05.max_toxicity.better_vs_prompting", "The better steering method's expected maximum toxicity is about "
              f"prompting's or lower (at most {margin:g} above)", PROMPTING_PAPER,
              f"{BETTER_STEERING} prompts, minus prompting, expected maximum toxicity, {paired}; bootstrap over prompts",
              below(margin), "number", arm="successors"),
    ]  # fmt: skip
    claims.append(
        Claim("05.fluency", f"ActAdd keeps fluency: judge perplexity within {tolerance:g} times the unsteered one",
              "similar fluency", "ActAdd over unsteered geometric-mean judge perplexity: exp of the mean per-prompt "
              "difference of mean log perplexity (evaluation stream); bootstrap over prompts", below(tolerance),
              "ratio")
    )  # fmt: skip
    return claims


def _overhead(p: Mapping[str, Any]) -> list[Claim]:
    batch, seq_len, margin = p["paper_batch"], p["seq_len"], p["premium_margin"]
    smallest, largest = p["sizes"][0], p["sizes"][-1]
    timed = "median of paired t_actadd / t_base - 1; bootstrap over passes"
    return [
        Claim("06.paper_batch", f"At the paper's batch ({batch} x {seq_len}), the forward premium is small "
              f"({smallest} shape)", "-0.05% to 0.4%", timed, within(-margin, margin), "percent"),
        Claim("06.batch1_largest", f"At batch 1 x {seq_len}, the forward premium is small ({largest} shape)",
              "-0.05% to 0.4%", timed, within(-margin, margin), "percent"),
        Claim("06.falls_with_size", "The premium falls with model size", "falls from GPT-2 small to XL",
              f"median premium of {largest} minus that of {smallest} at batch 1; bootstrap over passes",
              below(0.0), "percent"),
    ]  # fmt: skip


CLAIMS: dict[str, Callable[[Mapping[str, Any]], list[Claim]]] = {
    "00_quickstart": _quickstart,
    "01_wedding_layers": _wedding_layers,
    "02_perplexity_relevance": _perplexity_relevance,
    "03_factual_recall": _factual_recall,
    "04_sentiment": _sentiment,
    "05_detox": _detox,
    "06_overhead": _overhead,
}


def claims(study: str, parameters: Mapping[str, Any]) -> list[Claim]:
    """The claims ``study`` tests, built from its ``parameters`` (margins, batch sizes)."""
    if study not in CLAIMS:
        raise ValueError(f"no claims are registered for study {study!r}; studies: {sorted(CLAIMS)}")
    return CLAIMS[study](parameters)
