"""The comparison studies' protocol (04, 05): selection on its own prompts and seeds, every method
chosen by one rule (the text gate, then the fluency limit, then the objective), the chosen methods
evaluated on others, every difference recorded as its claim, and a comparison with a method that
was not chosen left without a number.

End to end on the tiny random GPT-2 with greedy decoding, so that every method's completions can
be written again independently (from vectors built here with ``actadd`` at the strengths the grids
state) and scored by their text: a method that is not what its name says, or a claim that compares
the wrong methods, moves a number. The random model writes no text, so the run's gate is a stub
that rejects completions holding a given word (:class:`WordGate`). The hand-built runs check which
methods each recorded claim compares, and what is recorded when a method was not chosen."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

import actadd
from actadd.studies.evaluation.text_gate import TextGate
from actadd.studies.lifecycle.claims import Claim, above
from actadd.studies.lifecycle.study import Study
from actadd.studies.protocol import methods, tasks
from actadd.studies.protocol.baselines import PrefixContrast
from actadd.studies.protocol.methods import MEAN_DIFFERENCE, Grids
from actadd.studies.protocol.selection import Choice, Selection, select
from actadd.studies.protocol.strength import Scale

PREFIX = "Be kind:\n"
TASK = dict(p_plus=" kind", p_minus=" rude", instruction=PREFIX, preadd_prefix=PREFIX)
GRIDS = Grids([[0.25, 1.0], [0.5, 2.0]], [[0.25, 0.1], [0.5, 0.2]], [1.0, 2.0])


def _task(select=("The day was", "My friend"), evaluate=("The food was", "Our trip")) -> tasks.SteeringTask:
    return tasks.SteeringTask("t", "towards kind", list(select), list(evaluate), **TASK)


def test_a_task_refuses_prompts_shared_by_selection_and_evaluation():
    with pytest.raises(ValueError, match="share 1 prompts"):
        _task(select=("The day was", "Our trip"))


@pytest.mark.parametrize("field_name, value", [("n_select_samples", 0), ("n_eval_samples", 1.5),
                                               ("fluency_tolerance", 0.5)])  # fmt: skip
def test_a_search_space_refuses_bad_sizes(field_name, value):
    sizes = {"n_select_samples": 1, "n_eval_samples": 2, "fluency_tolerance": 1.5, field_name: value}
    with pytest.raises(ValueError, match=field_name):
        tasks.SearchSpace(GRIDS, **sizes)


def test_a_search_space_gates_with_the_validated_text_gate_unless_told():
    assert tasks.SearchSpace(GRIDS, 1, 2, 1.5).gate == TextGate()


# ---------------------------------------------------------------------------------------
# Which methods each recorded claim compares, on hand-built evaluation values

BASELINE_CLAIMS = ("unsteered", "prompting", "PREADD")
SUCCESSOR_CLAIMS = ("vs_meandiff", "better_vs_prompting")
# Per method, each evaluation prompt's two samples: every method has its own mean.
VALUES = {
    "unsteered": [[0.1, 0.1], [0.2, 0.2], [0.1, 0.1], [0.2, 0.2]],  # mean 0.15
    "prompting": [[0.5, 0.5], [0.4, 0.4], [0.6, 0.6], [0.5, 0.5]],  # 0.5
    "PREADD": [[0.3, 0.3], [0.3, 0.3], [0.4, 0.4], [0.2, 0.2]],  # 0.3
    "ActAdd": [[0.9, 0.9], [0.8, 0.8], [0.7, 0.6], [0.6, 0.6]],  # 0.7375
    MEAN_DIFFERENCE: [[0.8, 0.8], [0.9, 0.9], [0.9, 0.9], [0.7, 0.7]],  # 0.825
}
# The evaluation name of each kind a selection chooses, and why one was not chosen.
NAMES = {"actadd": "ActAdd", "preadd": "PREADD", "meandiff": MEAN_DIFFERENCE}
WHY = {kind: f"no {name} setting passed" for kind, name in NAMES.items()}


def _mean(method: str) -> float:
    return float(np.mean(VALUES[method]))


def _steered(name: str, kind: str, layer: int, norm: float) -> methods.Method:
    return methods.Method(name, kind, layer=layer, coeff=2 * norm, relative_norm=norm, position_norm=norm / 4,
                          steering=f"vector-{name}")  # fmt: skip


CHOICES = {
    "actadd": Choice(_steered("ActAdd layer 2", "actadd", 2, 4.0), 0.6, 9.0, 1.0),
    "preadd": Choice(methods.preadd(PREFIX, 2.0), 0.4, 9.5, 0.9),
    "meandiff": Choice(_steered("md layer 3", "meandiff", 3, 8.0), 0.7, 9.5, 0.8),
}


def _hand_run(unchosen: tuple[str, ...] = (), maximize: bool = True) -> tasks.TaskRun:
    """A task run with VALUES as its evaluation, whose selection chose every kind but ``unchosen``
    (their methods are then not in the evaluation, as :meth:`Selection.evaluation_methods` leaves
    them out). ActAdd's choice scored 0.6 on the selection, the mean difference's 0.7."""
    evaluated = {"unsteered", "prompting", *(NAMES[kind] for kind in NAMES if kind not in unchosen)}
    completions = pd.DataFrame(
        [{"method": m, "kind": "x", "prompt_id": p, "sample": s, "success": v}
         for m, prompts in VALUES.items() if m in evaluated for p, samples in enumerate(prompts)
         for s, v in enumerate(samples)]
    )  # fmt: skip
    selection = Selection(pd.DataFrame(), {k: c for k, c in CHOICES.items() if k not in unchosen},
                          {k: WHY[k] for k in unchosen}, 10.0, "success", maximize)  # fmt: skip
    task = tasks.SteeringTask("t", "towards kind", ["The day was", "My friend"], ["a", "b", "c", "d"], **TASK)
    return tasks.TaskRun(task, selection, pd.DataFrame(), completions)


def _study(tmp_path, claim_ids) -> Study:
    """A study to record claims in (call it under ``plot_settings_restored``)."""
    study = Study("x", {"results_dir": str(tmp_path), "seed": 0, "model_name": "gpt2-random"})
    study.declare([Claim(f"x.t.{c}", c, "-", "-", above(0.0), "points") for c in claim_ids])
    return study


def _notes(study: Study) -> dict[str, str]:
    return {c["id"]: c["note"] for c in study.claims.as_dict()["claims"]}


def _not_compared(study: Study, claim_id: str, estimate) -> bool:
    """The estimate is the comparison that has no number, and the recorded claim has no verdict."""
    recorded = study.estimate(claim_id)
    return (
        estimate is tasks.NOT_COMPARED
        and math.isnan(recorded.value) and math.isnan(recorded.low) and recorded.n == 0
        and study.verdict(claim_id) == "unresolved"
    )  # fmt: skip


@pytest.mark.usefixtures("plot_settings_restored")
def test_compare_records_actadd_minus_each_baseline_and_no_note_when_every_method_was_chosen(tmp_path):
    study = _study(tmp_path, BASELINE_CLAIMS)
    differences = tasks.compare(study, _hand_run(), "success", claims="x.t")
    for baseline in BASELINE_CLAIMS:
        assert differences[baseline].value == pytest.approx(_mean("ActAdd") - _mean(baseline))
        assert differences[baseline].n == 4  # paired per prompt, not per completion
        assert study.estimate(f"x.t.{baseline}") == differences[baseline]
    assert _notes(study) == {f"x.t.{b}": "" for b in BASELINE_CLAIMS}


@pytest.mark.usefixtures("plot_settings_restored")
def test_a_baseline_that_was_not_chosen_is_not_compared_and_says_why(tmp_path):
    study = _study(tmp_path, BASELINE_CLAIMS)
    differences = tasks.compare(study, _hand_run(unchosen=("preadd",)), "success", claims="x.t")
    assert _not_compared(study, "x.t.PREADD", differences["PREADD"])
    for baseline in ("unsteered", "prompting"):
        assert differences[baseline].value == pytest.approx(_mean("ActAdd") - _mean(baseline))
    assert _notes(study) == {"x.t.unsteered": "", "x.t.prompting": "", "x.t.PREADD": WHY["preadd"]}


@pytest.mark.usefixtures("plot_settings_restored")
def test_without_actadd_chosen_no_baseline_is_compared(tmp_path):
    study = _study(tmp_path, BASELINE_CLAIMS)
    differences = tasks.compare(study, _hand_run(unchosen=("actadd", "preadd")), "success", claims="x.t")
    for baseline in BASELINE_CLAIMS:
        assert _not_compared(study, f"x.t.{baseline}", differences[baseline])
    # Every note says ActAdd was not chosen; PREADD's says so of PREADD too.
    assert _notes(study) == {"x.t.unsteered": WHY["actadd"], "x.t.prompting": WHY["actadd"],
                             "x.t.PREADD": f"{WHY['actadd']}; {WHY['preadd']}"}  # fmt: skip


@pytest.mark.usefixtures("plot_settings_restored")
@pytest.mark.parametrize("maximize, better", [(True, MEAN_DIFFERENCE), (False, "ActAdd")])
def test_successor_comparisons_put_each_method_at_its_own_choice_and_the_better_against_prompting(
    tmp_path, maximize, better
):
    study = _study(tmp_path, SUCCESSOR_CLAIMS)
    compared = tasks.successor_comparisons(study, _hand_run(maximize=maximize), "success", claims="x.t")
    # ActAdd against the mean difference's own choice; the better on the selection (the mean
    # difference's 0.7 against ActAdd's 0.6, or the reverse when lower is better) against prompting.
    assert compared["vs_meandiff"].value == pytest.approx(_mean("ActAdd") - _mean(MEAN_DIFFERENCE))
    assert compared["better_vs_prompting"].value == pytest.approx(_mean(better) - _mean("prompting"))
    assert compared["vs_meandiff"].n == compared["better_vs_prompting"].n == 4
    assert study.estimate("x.t.vs_meandiff") == compared["vs_meandiff"]
    assert study.estimate("x.t.better_vs_prompting") == compared["better_vs_prompting"]
    assert _notes(study) == {"x.t.vs_meandiff": "", "x.t.better_vs_prompting": ""}


@pytest.mark.usefixtures("plot_settings_restored")
@pytest.mark.parametrize(
    "unchosen, better",
    [(("meandiff",), "ActAdd"), (("actadd",), MEAN_DIFFERENCE), (("actadd", "meandiff"), None)],
)
def test_successor_comparisons_with_a_steering_method_not_chosen(tmp_path, unchosen, better):
    study = _study(tmp_path, SUCCESSOR_CLAIMS)
    compared = tasks.successor_comparisons(study, _hand_run(unchosen), "success", claims="x.t")
    why = "; ".join(WHY[kind] for kind in ("actadd", "meandiff") if kind in unchosen)
    assert _not_compared(study, "x.t.vs_meandiff", compared["vs_meandiff"])
    if better is None:  # neither steering method chosen: nothing to put against prompting
        assert _not_compared(study, "x.t.better_vs_prompting", compared["better_vs_prompting"])
        assert _notes(study) == {"x.t.vs_meandiff": why, "x.t.better_vs_prompting": why}
    else:  # the one chosen is the better, even though the mean difference scored higher
        assert compared["better_vs_prompting"].value == pytest.approx(_mean(better) - _mean("prompting"))
        assert _notes(study) == {"x.t.vs_meandiff": why, "x.t.better_vs_prompting": ""}


# ---------------------------------------------------------------------------------------
# End to end on the random GPT-2

# ActAdd's pair (every method's rows are padded by its k - 1 = 3 spaces), and contrast pairs of
# other words, so that ActAdd and the mean difference write different texts.
P_PLUS, P_MINUS = " kind and warm", " rude and cold"
PAIRS = [(" what a lovely day", " what an awful day"), (" so happy", " so sad")]
SELECT_PROMPTS = ["She wrote", "I think"]
EVAL_PROMPTS = ["The food was", "He said", "Last night"]
# Greedy (the penalty keeps the random model from repeating one token, so settings write
# different texts): every completion is a function of its method and prompt alone.
SAMPLING = dict(max_new_tokens=3, temperature=0, freq_penalty=1.0)
# The unit of strength: the random model's residual norm at each layer on these texts.
REFERENCE = ["The weather was mild and the roads were quiet.", "She opened the door and smiled at her neighbour."]
# Each method's grid (layers as fractions of the 4 blocks), chosen by the texts' fingerprints, the
# objective, lower being better: ActAdd's best setting (layer 2 at 4) writes "certs", which the
# gate rejects; the mean difference's best (layer 1 at 0.1) costs the judge more perplexity than
# unsteered decoding, and at tolerance 1 the limit excludes it. Prompting writes "Bristitial" in
# the evaluation, which the gate rejects there.
REJECTED = ("certs", "Bristitial")
SEARCH_GRIDS = Grids([[0.25, 4.0], [0.5, 4.0], [0.5, 16.0]], [[0.25, 0.1], [0.5, 0.3], [0.5, 1.0]], [0.5, 1.0, 3.0])


@dataclass(frozen=True)
class WordGate(TextGate):
    """A stub text gate: a completion is text unless it holds one of ``words``. It records each
    call's completions and references."""

    words: tuple[str, ...] = ()
    calls: list[tuple[list[str], list[str] | None]] = field(default_factory=list, compare=False)

    def check(self, completions, references=None) -> pd.DataFrame:
        texts = list(completions)
        self.calls.append((texts, None if references is None else list(references)))
        held = [[w for w in self.words if w in t] for t in texts]
        return pd.DataFrame({"text": texts, "is_text": [not h for h in held],
                             "reason": [f"holds {h}" if h else "" for h in held]})  # fmt: skip


def _fingerprint(text: str) -> float:
    """A number in [0, 1) that tells two texts apart."""
    return zlib.crc32(text.encode()) % 1000 / 1000


def _score(frame: pd.DataFrame) -> pd.DataFrame:
    """The objective: a fixed, arbitrary score of each completion's text, so that any two methods
    that write different texts score differently. The gate has judged every completion first."""
    assert frame["is_text"].notna().all() and "gate_reason" in frame
    return frame.assign(fingerprint=[_fingerprint(c) for c in frame.completion])


@pytest.fixture(scope="module")
def scale(gpt2_random) -> Scale:
    return Scale("gpt2-random", tuple(float(x) for x in actadd.residual_norms(gpt2_random, REFERENCE)))


@pytest.fixture(scope="module")
def run(gpt2_random, scale, tmp_path_factory) -> Iterator[tuple[Study, tasks.TaskRun, WordGate]]:
    task = tasks.SteeringTask("t", "towards kind", SELECT_PROMPTS, EVAL_PROMPTS, P_PLUS, P_MINUS, PREFIX, PREFIX,
                              pairs=PAIRS)  # fmt: skip
    gate = WordGate(words=REJECTED)
    search = tasks.SearchSpace(SEARCH_GRIDS, 1, 2, fluency_tolerance=1.0, gate=gate)
    with matplotlib.rc_context():  # the Study's theme, for this module's tests only
        study = Study("x", {"results_dir": str(tmp_path_factory.mktemp("run")), "seed": 3, "model_name": "gpt2-random"})
        yield study, tasks.run_task(study, gpt2_random, gpt2_random, task, _score, search, scale,
                                    objective="fingerprint", maximize=False, progress=False, **SAMPLING), gate  # fmt: skip


def test_run_task_selects_on_its_prompts_and_evaluates_the_chosen_methods_on_others(run):
    study, task_run, gate = run
    chosen_on, evaluated = task_run.selection_frame, task_run.completions
    assert set(chosen_on.prompt) == set(SELECT_PROMPTS) and set(evaluated.prompt) == set(EVAL_PROMPTS)
    assert not set(chosen_on.seed) & set(evaluated.seed)
    assert evaluated.method.unique().tolist() == ["unsteered", "prompting", "ActAdd", "PREADD", MEAN_DIFFERENCE]
    assert evaluated.groupby("method").seed.apply(tuple).nunique() == 1  # the same seeds for every method
    assert (evaluated.groupby(["method", "prompt_id"]).size() == 2).all()
    assert evaluated.perplexity.notna().sum() == 5 * 3  # each prompt's first sample is judged
    assert set(study.phases) == {"vectors", "generation", "scoring", "judging"}
    # Each kind is searched on its own grid: the layers and strengths the grids state.
    tried = task_run.selection.table
    for kind, grid in (("actadd", SEARCH_GRIDS.actadd), ("meandiff", SEARCH_GRIDS.meandiff)):
        rows = tried[tried.kind == kind]
        assert rows.layer.tolist() == [int(4 * depth) for depth, _ in grid], kind
        assert rows.position_norm.tolist() == pytest.approx([strength for _, strength in grid], rel=1e-6), kind
    assert tried[tried.kind == "preadd"].strength.tolist() == list(SEARCH_GRIDS.preadd)
    # The gate judged every method's completions, once per method in the selection and in the
    # evaluation, against the unsteered completions of the same prompts and seeds.
    expected_calls = [(group.completion.tolist(), frame[frame.method == "unsteered"].completion.tolist())
                      for frame in (chosen_on, evaluated) for _, group in frame.groupby("method", sort=False)]  # fmt: skip
    assert gate.calls == expected_calls and len(gate.calls) == len(tried) + 5
    # Every row carries the gate's verdict on its own completion, in the evaluation too.
    for frame in (chosen_on, evaluated):
        assert frame.is_text.tolist() == [not any(w in c for w in REJECTED) for c in frame.completion]
    assert not evaluated[evaluated.method == "prompting"].is_text.all()
    assert evaluated[evaluated.method != "prompting"].is_text.all()  # the chosen methods wrote text
    table = tasks.save_runs(study, [task_run], objective_label="fingerprint", figure="selection")
    results = Path(study["results_dir"])
    assert (results / "selection.png").is_file() and (results / "completions.csv").is_file()
    assert table.chosen.sum() == 3 and set(table.direction) == {"towards kind"}
    prompts = tasks.prompts_table([task_run.task], pd.DataFrame({"prompt": ["He said"], "source": ["s"]}))
    assert prompts.part.tolist() == ["select"] * 2 + ["eval"] * 3 and prompts.source.notna().sum() == 1


def _rule(frame: pd.DataFrame, tolerance: float, text=lambda f: f.is_text) -> dict[str, str]:
    """The selection rule worked out from the selection sample: per kind, among the methods at
    least 80% of whose completions are ``text`` and whose geometric-mean perplexity is at most
    ``tolerance`` times the unsteered one, the lowest mean fingerprint (the first on a tie)."""
    per = frame.assign(text=text(frame)).groupby("method", sort=False).agg(
        kind=("kind", "first"), text=("text", "mean"), objective=("fingerprint", "mean"),
        perplexity=("perplexity", lambda p: float(np.exp(np.log(p.dropna()).mean()))),
    )  # fmt: skip
    limit = tolerance * per.loc["unsteered", "perplexity"]
    allowed = per[(per.text >= 0.8) & (per.perplexity <= limit)]
    return {kind: str(rows.objective.idxmin()) for kind, rows in allowed.groupby("kind")
            if kind in ("actadd", "meandiff", "preadd")}  # fmt: skip


def _chosen(selection: Selection) -> dict[str, str]:
    return {kind: c.method.name for kind, c in selection.choices.items()}


def test_each_kind_is_chosen_by_the_one_rule(run):
    _, task_run, _ = run
    frame = task_run.selection_frame
    assert _chosen(task_run.selection) == _rule(frame, 1.0)
    assert set(task_run.selection.choices) == {"actadd", "meandiff", "preadd"} and not task_run.selection.unchosen
    assert task_run.selection.better_steering() == "meandiff"  # the lower selection fingerprint
    # The choices are what the table says was chosen.
    tried = task_run.selection.table
    assert sorted(tried[tried.chosen].method) == sorted(_chosen(task_run.selection).values())


def _tried_methods(task_run: tasks.TaskRun) -> list[methods.Method]:
    """The methods the selection tried, rebuilt from its table (only their names and kinds matter
    to a new selection)."""
    rows = task_run.selection.table
    out = []
    for row in rows.itertuples():
        if row.kind in ("actadd", "meandiff"):
            out.append(methods.Method(row.method, row.kind, layer=int(row.layer), coeff=row.coeff,
                                      relative_norm=row.relative_norm, position_norm=row.position_norm,
                                      steering="vector"))  # fmt: skip
        elif row.kind == "preadd":
            out.append(methods.preadd(PREFIX, row.strength, name=row.method))
        elif row.kind == "prompting":
            out.append(methods.prompting(PREFIX))
        else:
            out.append(methods.unsteered())
    return out


def test_the_gate_binds_the_choice(run):
    _, task_run, _ = run
    picked, frame = task_run.selection, task_run.selection_frame
    tried = picked.table.set_index("method")
    actadd_rows = tried[tried.kind == "actadd"]
    # ActAdd's best setting within the fluency limit writes what the gate rejects: it is not chosen.
    fluent = actadd_rows[actadd_rows.within_limit]
    best = fluent.fingerprint.idxmin()
    assert not fluent.loc[best, "passes_gate"] and fluent.passes_gate.sum() >= 1
    rejected = frame[frame.method == best]
    assert (~rejected.is_text).any() and rejected.gate_reason.str.contains("certs").any()
    assert picked.choices["actadd"].method.name == fluent[fluent.passes_gate].fingerprint.idxmin() != best
    assert picked.choices["actadd"].text_share == 1.0
    # Had every completion passed, the rejected setting would have been chosen.
    every = select(frame.assign(is_text=True), "fingerprint", maximize=False, fluency_tolerance=1.0,
                   methods=_tried_methods(task_run))  # fmt: skip
    assert every.choices["actadd"].method.name == best == _rule(frame, 1.0, text=lambda f: True)["actadd"]


def test_the_fluency_limit_binds_the_choice(run):
    _, task_run, _ = run
    picked, frame = task_run.selection, task_run.selection_frame
    tried = picked.table.set_index("method")
    assert picked.fluency_limit == pytest.approx(1.0 * tried.loc["unsteered", "perplexity"])
    # The mean difference's best setting that passes the gate is beyond the limit; the best one
    # within it is taken.
    md_rows = tried[(tried.kind == "meandiff") & tried.passes_gate]
    allowed = md_rows[md_rows.perplexity <= picked.fluency_limit]
    assert 0 < len(allowed) < len(md_rows) and (allowed.within_limit).all()
    assert md_rows.fingerprint.min() < allowed.fingerprint.min()
    choice = picked.choices["meandiff"]
    assert choice.method.name == allowed.fingerprint.idxmin() and choice.perplexity <= picked.fluency_limit
    unlimited = select(frame, "fingerprint", maximize=False, fluency_tolerance=100, methods=_tried_methods(task_run))
    assert unlimited.choices["meandiff"].method.name == md_rows.fingerprint.idxmin() == _rule(frame, 100)["meandiff"]
    # The evaluation's mean difference is the choice made within the limit.
    evaluated = task_run.completions[task_run.completions.method == MEAN_DIFFERENCE].iloc[0]
    assert (evaluated.layer, evaluated.position_norm) == (choice.method.layer, choice.method.position_norm)


def _at(unit, position_norm: float, scale: Scale, rows: slice) -> float:
    """The coefficient that gives ``unit`` (a coefficient-1 vector) ``position_norm`` of the scale's
    residual norm per steered position: its rows' mean norm (ActAdd's rows after the start token's,
    a direction's one row) over the norm at its layer."""
    per_position = unit.vector[rows].float().reshape(-1, unit.vector.shape[-1]).norm(dim=-1).mean()
    return position_norm * scale.norms[unit.layer] / float(per_position)


@pytest.fixture(scope="module")
def vectors(run, scale, gpt2_random) -> dict[str, actadd.Vector]:
    """ActAdd's vector and the mean difference (each text read over its tokens) at the layer and
    strength per position of each kind's choice, built here from the pair and the contrast pairs."""
    model, choices = gpt2_random, run[1].selection.choices
    a, m = choices["actadd"].method, choices["meandiff"].method
    unit_a = actadd.steering_vector(model, P_PLUS, P_MINUS, layer=a.layer)
    unit_m = actadd.mean_difference(model, PAIRS, layer=m.layer, reduce="mean")
    return {
        "ActAdd": actadd.steering_vector(model, P_PLUS, P_MINUS, layer=a.layer,
                                         coeff=_at(unit_a, a.position_norm, scale, slice(1, None))),
        MEAN_DIFFERENCE: actadd.mean_difference(model, PAIRS, layer=m.layer, reduce="mean",
                                                coeff=_at(unit_m, m.position_norm, scale, slice(None))),
    }  # fmt: skip


@pytest.fixture(scope="module")
def expected(run, vectors, gpt2_random) -> dict[str, list[str]]:
    """Each evaluated method's completions of the evaluation prompts, written again with
    ``actadd.generate`` from the vectors built here, every row padded by the ActAdd vector's k - 1
    spaces as the original's experiments; one call per way of adding (``row_vectors``)."""
    model, choices, n = gpt2_random, run[1].selection.choices, len(EVAL_PROMPTS)
    steering, direction = vectors["ActAdd"], vectors[MEAN_DIFFERENCE]

    def written(prompts: list[str], rows: list, **kwargs) -> list[list[str]]:
        texts = actadd.generate(model, prompts, row_vectors=rows, pad_prompts=steering.k - 1, progress=False,
                                **SAMPLING, **kwargs)  # fmt: skip
        return [texts[i : i + n] for i in range(0, len(texts), n)]

    unsteered, prompting, steered = written(EVAL_PROMPTS + [PREFIX + p for p in EVAL_PROMPTS] + EVAL_PROMPTS,
                                            [None] * 2 * n + [steering] * n)  # fmt: skip
    (md,) = written(EVAL_PROMPTS, [direction] * n, positions="all")
    (preadd,) = written(EVAL_PROMPTS, [None] * n,
                        logits_processors=[PrefixContrast(model, PREFIX, choices["preadd"].method.strength)])  # fmt: skip
    return {"unsteered": unsteered, "prompting": prompting, "PREADD": preadd, "ActAdd": steered, MEAN_DIFFERENCE: md}


def test_each_evaluated_method_writes_what_its_setting_writes(run, expected, vectors):
    _, task_run, _ = run
    first = task_run.completions[task_run.completions["sample"] == 0].sort_values("prompt_id")
    for method, texts in expected.items():
        assert first[first.method == method].completion.tolist() == texts, method
    # The methods write different texts, so a method swapped for another would show.
    assert len({tuple(texts) for texts in expected.values()}) == len(expected)
    # The vectors themselves: ActAdd's pair and the mean difference of the pairs, each at its
    # choice's layer and strength per position.
    evaluated = {m.name: m for m in task_run.selection.evaluation_methods(PREFIX)}
    for name, vector in vectors.items():
        steering = evaluated[name].steering
        assert (steering.layer, steering.coeff) == pytest.approx((vector.layer, vector.coeff), rel=1e-5), name
        torch.testing.assert_close(steering.vector, vector.vector, rtol=1e-5, atol=1e-6)


def test_each_choice_is_at_the_strength_its_grid_states(run, scale, vectors):
    _, task_run, _ = run
    for kind, grid in (("actadd", SEARCH_GRIDS.actadd), ("meandiff", SEARCH_GRIDS.meandiff)):
        method = task_run.selection.choices[kind].method
        assert (method.layer / 4, method.position_norm) in [tuple(pytest.approx(s) for s in g) for g in grid]
        assert scale.position_norm(method.steering) == pytest.approx(method.position_norm)
    # The stated strength is what the vector adds per steered position, over the norm at its layer.
    direction = vectors[MEAN_DIFFERENCE]
    md = task_run.selection.choices["meandiff"].method
    assert float(direction.vector.norm()) / scale.norms[md.layer] == pytest.approx(md.position_norm, rel=1e-5)


def test_the_mean_difference_is_averaged_over_each_texts_tokens(run, scale, gpt2_random):
    _, task_run, _ = run
    evaluated = {m.name: m for m in task_run.selection.evaluation_methods(PREFIX)}
    vector = evaluated[MEAN_DIFFERENCE].steering
    assert vector.source.reduce == "mean"
    reference = scale.at(actadd.mean_difference(gpt2_random, PAIRS, layer=vector.layer, reduce="mean"),
                         evaluated[MEAN_DIFFERENCE].position_norm)  # fmt: skip
    torch.testing.assert_close(vector.vector, reference.vector)
    # Read at each text's last token instead, the direction differs: the comparison can tell.
    last = scale.at(actadd.mean_difference(gpt2_random, PAIRS, layer=vector.layer, reduce="last"),
                    evaluated[MEAN_DIFFERENCE].position_norm)  # fmt: skip
    assert not torch.allclose(vector.vector, last.vector, rtol=1e-2, atol=1e-4)


def test_completion_norm_is_what_each_vector_adds_to_a_completion(run, scale, vectors, gpt2_random):
    """ActAdd adds each row of its vector once, whatever the completion; the mean difference its
    norm at every steered position: the prompt's tokens after the start token, the pad spaces and
    the completion's tokens but the last, which is sampled and never fed back."""
    _, task_run, _ = run
    tokens = gpt2_random.tokenizer
    frame = task_run.completions
    steering = vectors["ActAdd"]
    actadd_rows = frame[frame.method == "ActAdd"]
    total = float(steering.vector.float().norm(dim=-1).sum()) / scale.norms[steering.layer]
    np.testing.assert_allclose(actadd_rows.completion_norm, total, rtol=1e-5)
    md = frame[frame.method == MEAN_DIFFERENCE]
    positions = [len(tokens(p).input_ids) + steering.k - 1 + max(len(tokens(c).input_ids) - 1, 0)
                 for p, c in zip(md.prompt, md.completion)]  # fmt: skip
    assert min(positions) != max(positions)  # prompts of different lengths: a per-row count
    expected = md.position_norm.astype(float) * np.array(positions)
    np.testing.assert_allclose(md.completion_norm.astype(float), expected, rtol=1e-9)
    for name in ("unsteered", "prompting", "PREADD"):
        assert (frame[frame.method == name].completion_norm == 0).all(), name
    # In the selection sample too, every steered setting's rows carry theirs.
    chosen_on = task_run.selection_frame
    assert (chosen_on[chosen_on.kind.isin(["actadd", "meandiff"])].completion_norm > 0).all()


@pytest.mark.usefixtures("plot_settings_restored")
def test_recorded_comparisons_are_differences_of_the_methods_texts(run, expected, tmp_path):
    _, task_run, _ = run
    study = _study(tmp_path, BASELINE_CLAIMS + SUCCESSOR_CLAIMS)
    score = {method: np.mean([_fingerprint(t) for t in texts]) for method, texts in expected.items()}
    differences = tasks.compare(study, task_run, "fingerprint", claims="x.t")
    for baseline in BASELINE_CLAIMS:
        assert differences[baseline].value == pytest.approx(score["ActAdd"] - score[baseline])
    compared = tasks.successor_comparisons(study, task_run, "fingerprint", claims="x.t")
    assert compared["vs_meandiff"].value == pytest.approx(score["ActAdd"] - score[MEAN_DIFFERENCE])
    better = {"actadd": "ActAdd", "meandiff": MEAN_DIFFERENCE}[task_run.selection.better_steering()]
    assert compared["better_vs_prompting"].value == pytest.approx(score[better] - score["prompting"])
    # Against unsteered instead the number would differ: the comparison can tell them apart.
    assert abs(score[MEAN_DIFFERENCE] - score["unsteered"]) > 0.01
    assert study.estimate("x.t.vs_meandiff") == compared["vs_meandiff"]
    assert set(_notes(study).values()) == {""}


@pytest.mark.usefixtures("plot_settings_restored")
def test_a_kind_the_gate_rejects_everywhere_is_not_chosen_nor_compared(run, tmp_path):
    """The same selection sample with every mean-difference completion judged not text: the mean
    difference is not chosen, not evaluated, and its comparison has no number but a note."""
    _, task_run, _ = run
    frame = task_run.selection_frame
    judged = frame.assign(is_text=frame.is_text & (frame.kind != "meandiff"))
    picked = select(judged, "fingerprint", maximize=False, fluency_tolerance=1.0, methods=_tried_methods(task_run))
    assert "meandiff" not in picked.choices and picked.unchosen["meandiff"].startswith("no mean difference setting")
    assert picked.better_steering() == "actadd"
    assert MEAN_DIFFERENCE not in [m.name for m in picked.evaluation_methods(PREFIX)]
    rerun = replace(task_run, selection=picked,
                    completions=task_run.completions[task_run.completions.method != MEAN_DIFFERENCE])  # fmt: skip
    study = _study(tmp_path, SUCCESSOR_CLAIMS)
    compared = tasks.successor_comparisons(study, rerun, "fingerprint", claims="x.t")
    assert _not_compared(study, "x.t.vs_meandiff", compared["vs_meandiff"])
    assert _notes(study) == {"x.t.vs_meandiff": picked.unchosen["meandiff"], "x.t.better_vs_prompting": ""}
    table = rerun.per_prompt("fingerprint")
    assert compared["better_vs_prompting"].value == pytest.approx((table["ActAdd"] - table["prompting"]).mean())
