"""The methods the comparison studies (04, 05) put side by side, as data, and how they are sampled.

- A method is data (:class:`Method`): its kind, layer, coefficient, relative norm, strength
  per steered position (:mod:`.strength`, one definition for every vector), PREADD strength and
  instruction are fields and table columns, never parsed out of its name.
- Equal search budgets: :func:`search_space` gives ActAdd, the mean-difference vector (CAA)
  and PREADD a grid each, of as many settings, each grid its own (a direction added at every
  position needs far gentler strengths than ActAdd's one addition to the prompt).
- :func:`sample` draws every method on the same prompts with the same per-(prompt, sample)
  seeds, as shared batches where the sampler allows (unsteered, prompting and ActAdd rows
  together; the mean-difference rows together, since they are added at every position; each
  PREADD setting in its own call, since its logits processor runs the prefixed rows), and
  returns one tidy row per completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from nnsight.modeling.transformers import TransformersModel
from tqdm.auto import tqdm

from actadd import (
    DirectionVector,
    Positions,
    SteeringVector,
    Vector,
    encode,
    generate,
    model_info,
    resolve_layer,
    row_seeds,
    steering_vector,
)
from actadd import mean_difference as actadd_mean_difference
from actadd.checks import integer, real, strings
from actadd.studies.evaluation.scorers import continuation_perplexity
from actadd.studies.evaluation.text_gate import TextGate
from actadd.studies.protocol.baselines import PrefixContrast, prompted
from actadd.studies.protocol.strength import Scale

Kind = Literal["unsteered", "prompting", "preadd", "actadd", "meandiff"]
KINDS: tuple[str, ...] = get_args(Kind)
SETTING_COLUMNS = ["layer", "coeff", "relative_norm", "position_norm", "strength"]
COLUMNS = ["method", "kind", *SETTING_COLUMNS, "prompt_id", "sample", "seed", "prompt", "completion", "completion_norm"]
# The methods an evaluation compares, by these names.
TREATMENT = "ActAdd"
BASELINES = ("unsteered", "prompting", "PREADD")
# The mean-difference vector, chosen on its own grid by the same rule.
MEAN_DIFFERENCE = "mean difference"
# How a kind is named in prose and figures.
KIND_LABELS = {"unsteered": "unsteered", "prompting": "prompting", "preadd": "PREADD", "actadd": "ActAdd",
               "meandiff": MEAN_DIFFERENCE}  # fmt: skip
KIND_COLOURS = {"unsteered": "black", "prompting": "C2", "preadd": "C1", "actadd": "C0", "meandiff": "C4"}
# Where each steered kind's vector is added (actadd.Positions).
POSITIONS: dict[str, Positions] = {"actadd": "front", "meandiff": "all"}


@dataclass(frozen=True)
class Method:
    """One way of decoding, as data.

    ``kind`` is ``unsteered`` (the plain prompt), ``prompting`` (``instruction`` put before the
    prompt), ``preadd`` (plain log-probs + ``strength`` x (log-probs behind the prefix
    ``instruction`` - plain ones), :class:`~actadd.studies.protocol.baselines.PrefixContrast`) or
    ``actadd`` (``steering`` added at ``layer`` with coefficient ``coeff``) or ``meandiff`` (a
    ``[d_model]`` mean difference of contrast pairs, :func:`actadd.mean_difference`, added at
    every position). A steered method's ``relative_norm`` is its vector's own (over the norm of
    the texts it was read from) and ``position_norm`` what it adds per steered position over the
    reference residual norm at its layer (:class:`~.strength.Scale`), the one strength every
    kind shares. Fields a kind does not use are None.
    """

    name: str
    kind: Kind
    layer: int | None = None
    coeff: float | None = None
    relative_norm: float | None = None
    position_norm: float | None = None
    strength: float | None = None
    instruction: str | None = None
    steering: SteeringVector | DirectionVector | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a method needs a non-empty name, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        needs = {
            "unsteered": (),
            "prompting": ("instruction",),
            "preadd": ("instruction", "strength"),
            "actadd": ("steering", "layer", "coeff", "relative_norm", "position_norm"),
            "meandiff": ("steering", "layer", "coeff", "relative_norm", "position_norm"),
        }[self.kind]
        for name in ("layer", "coeff", "relative_norm", "position_norm", "strength", "instruction", "steering"):
            given = getattr(self, name) is not None
            if given != (name in needs):
                what = "needs" if name in needs else "takes no"
                raise ValueError(
                    f"method {self.name!r} of kind {self.kind!r} {what} {name}, got {getattr(self, name)!r}"
                )

    def settings(self) -> dict[str, Any]:
        """The setting columns: layer, coeff, relative_norm, position_norm, strength (None where unused)."""
        return {name: getattr(self, name) for name in SETTING_COLUMNS}

    def describe(self) -> str:
        """The setting in words, for tables and prose: 'layer 10, c = 4.1 (0.5 of the residual norm per position)'."""
        if self.kind in POSITIONS:
            return (
                f"layer {self.layer}, c = {self.coeff:.3g} ({self.position_norm:.3g} of the residual norm per position)"
            )
        if self.kind == "preadd":
            return f"s = {self.strength:g}"
        return ""


def unsteered() -> Method:
    return Method("unsteered", "unsteered")


def prompting(instruction: str) -> Method:
    """The prompt behind ``instruction`` (end it with a newline, as PREADD's prefixes)."""
    prompted(["check"], instruction)  # the baseline's own check of the instruction
    return Method("prompting", "prompting", instruction=instruction)


def preadd(prefix: str, strength: float, name: str | None = None) -> Method:
    """PREADD-style decoding with ``prefix`` at ``strength`` (> 0 towards what the prefix elicits)."""
    strength = real(strength, "strength (> 0 towards the prefix, < 0 away)")
    if not isinstance(prefix, str) or not prefix.strip() or prefix[-1] in " \t":
        raise ValueError(f"prefix must be a non-empty string ending in a newline, got {prefix!r}")
    return Method(name or f"PREADD s = {strength:g}", "preadd", strength=strength, instruction=prefix)


def actadd(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    scale: Scale,
    *,
    layer: int | float,
    position_norm: float,
    name: str | None = None,
) -> Method:
    """ActAdd with the vector ``p_plus - p_minus`` at ``layer`` (a block index or a fraction of
    the depth), adding ``position_norm`` of the reference residual norm per steered position."""
    unit = steering_vector(model, p_plus, p_minus, layer=layer)
    return _steered("actadd", scale.at(unit, position_norm), scale, name)


def mean_difference(
    model: TransformersModel,
    pairs: Sequence[tuple[str, str]],
    scale: Scale,
    *,
    layer: int | float,
    position_norm: float,
    name: str | None = None,
    unit: DirectionVector | None = None,
) -> Method:
    """The mean-difference vector of ``pairs`` (positive, negative texts, each read over its
    tokens: :func:`actadd.mean_difference` with ``reduce="mean"``) at ``layer``, adding
    ``position_norm`` of the reference residual norm at every steered position; ``unit``, the
    same pairs' vector at that layer at any strength, saves reading the pairs again."""
    if unit is None:
        unit = actadd_mean_difference(model, pairs, layer=layer, reduce=READ)
    return _steered("meandiff", scale.at(unit, position_norm), scale, name)


# How a contrast pair's texts are read for the mean difference: over each text's tokens.
READ = "mean"


def _steered(kind: Kind, vector: Vector, scale: Scale, name: str | None) -> Method:
    """A steered method whose setting columns are its vector's."""
    position = scale.position_norm(vector)
    label = KIND_LABELS[kind]
    return Method(
        name or f"{label} layer {vector.layer}, strength {position:.3g}",
        kind,
        layer=vector.layer,
        coeff=vector.coeff,
        relative_norm=vector.relative_norm,
        position_norm=position,
        steering=vector,
    )


@dataclass(frozen=True)
class Grids:
    """What a selection tries, each method on a grid of its own and every grid of the same size
    (equal search budgets): ActAdd's and the mean difference's settings as (layer as a fraction of
    the depth, strength per steered position), PREADD's strengths."""

    actadd: Sequence[Sequence[float]]
    meandiff: Sequence[Sequence[float]]
    preadd: Sequence[float]

    def __post_init__(self) -> None:
        sizes = {"ActAdd": len(self.actadd), "mean difference": len(self.meandiff), "PREADD": len(self.preadd)}
        if len(set(sizes.values())) != 1 or not self.preadd:
            raise ValueError(f"equal search budgets: give every method as many settings (at least one), got {sizes}")
        for label, grid in (("ActAdd", self.actadd), ("mean difference", self.meandiff)):
            if any(len(setting) != 2 for setting in grid):
                raise ValueError(f"each {label} setting is (layer, strength per position), got {list(grid)!r}")


def search_space(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    prefix: str,
    grids: Grids,
    scale: Scale,
    pairs: Sequence[tuple[str, str]] | None = None,
    instruction: str | None = None,
) -> list[Method]:
    """The methods a selection samples: unsteered, prompting with ``instruction`` (on the
    frontier beside the others; nothing to choose), one ActAdd method per setting of its grid,
    one PREADD method per strength, and with contrast ``pairs`` one mean-difference method per
    setting of its grid."""
    steered = [actadd(model, p_plus, p_minus, scale, layer=layer, position_norm=norm) for layer, norm in grids.actadd]
    means = []
    if pairs is not None:
        units: dict[int, DirectionVector] = {}
        for depth, norm in grids.meandiff:
            layer = resolve_layer(depth, model_info(model))
            if layer not in units:
                units[layer] = actadd_mean_difference(model, pairs, layer=layer, reduce=READ)
            means.append(mean_difference(model, pairs, scale, layer=layer, position_norm=norm, unit=units[layer]))
    prompted_method = [] if instruction is None else [prompting(instruction)]
    return [unsteered(), *prompted_method, *steered, *means, *(preadd(prefix, s) for s in grids.preadd)]


def sample(
    model: TransformersModel,
    prompts: Sequence[str],
    methods: Sequence[Method],
    n_samples: int,
    *,
    seed: int,
    stream: int,
    batch_size: int = 64,
    progress: bool = True,
    scale: Scale | None = None,
    **sampling: Any,
) -> pd.DataFrame:
    """``n_samples`` completions of every prompt under every method, one row each (:data:`COLUMNS`).

    Sample ``s`` of prompt ``i`` gets the seed ``row_seeds(seed, n, stream=stream)[i * n_samples
    + s]`` under every method, so methods differ only by what they do to the logits. Unsteered,
    prompting and ActAdd rows share batches (ActAdd's through ``row_vectors``, at the front), the
    mean-difference rows theirs (at every position); each PREADD method is its own call with its
    processor. Every row gets the ``k - 1`` spaces after its start token that the longest ActAdd
    vector among ``methods`` needs (the original code's pad mode, applied to every method alike).
    ``prompt`` is always the plain prompt, also for prompting, whose model saw the instruction
    before it. With the study's ``scale``, ``completion_norm`` is what each row's vector added to
    it in all (:meth:`~.strength.Scale.completion_norm`; 0 unsteered). ``sampling`` goes to
    :func:`actadd.generate` (``max_new_tokens``, ``top_p``, ...).
    """
    prompts = strings(prompts, "prompts")
    n_samples = integer(n_samples, "n_samples", minimum=1)
    if not methods:
        raise ValueError("methods is empty: give at least one, e.g. [unsteered()]")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    grid = pd.DataFrame(
        [(i, s, p) for i, p in enumerate(prompts) for s in range(n_samples)], columns=["prompt_id", "sample", "prompt"]
    )
    grid["seed"] = row_seeds(seed, len(grid), stream=stream)
    # Every row padded like the ActAdd rows (the original's pad mode), so a method differs from
    # another only by what it does, never by the prompt it sees.
    spaces = max((m.steering.k - 1 for m in methods if isinstance(m.steering, SteeringVector)), default=0)
    front = [m for m in methods if m.kind in ("unsteered", "prompting", "actadd")]
    everywhere = [m for m in methods if m.kind == "meandiff"]
    calls = [c for c in (front, everywhere) if c] + [[m] for m in methods if m.kind == "preadd"]
    completions: dict[str, list[str]] = {}
    for call in tqdm(calls, desc="methods", disable=not progress or len(calls) < 2, leave=False):
        texts: list[str] = []
        for method in call:
            plain = grid["prompt"].tolist()
            texts += prompted(plain, method.instruction) if method.kind == "prompting" else plain
        first = call[0]
        processors = [PrefixContrast(model, first.instruction, first.strength)] if first.kind == "preadd" else []
        out = generate(
            model,
            texts,
            row_vectors=[m.steering for m in call for _ in range(len(grid))],
            seed=grid["seed"].tolist() * len(call),
            batch_size=batch_size,
            pad_prompts=spaces,
            logits_processors=processors,
            positions=POSITIONS.get(first.kind, "front"),
            progress=progress,
            **sampling,
        )
        for j, method in enumerate(call):
            completions[method.name] = out[j * len(grid) : (j + 1) * len(grid)]
    prompt_tokens = [len(encode(model, p)) - 1 + spaces for p in grid["prompt"]]
    frames = []
    for m in methods:
        texts = completions[m.name]
        norms = [0.0] * len(texts) if scale is None else scale.completion_norms(model, m.steering, prompt_tokens, texts)
        frames.append(grid.assign(method=m.name, kind=m.kind, **m.settings(), completion=texts, completion_norm=norms))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def text_check(frame: pd.DataFrame, gate: TextGate) -> pd.DataFrame:
    """``frame`` (a :func:`sample` table) with each completion's ``is_text`` and ``gate_reason``
    (:class:`~actadd.studies.evaluation.text_gate.TextGate`), every method's completions judged
    against the unsteered completions of the same prompts and seeds (the set-level check)."""
    references = frame[frame["kind"] == "unsteered"].set_index(["prompt_id", "sample"])["completion"]
    checked = []
    for _, group in frame.groupby("method", sort=False):
        refs = references.reindex(list(zip(group["prompt_id"], group["sample"]))).dropna().tolist()
        verdicts = gate.check(group["completion"].tolist(), references=refs or None)
        checked.append(pd.DataFrame({"is_text": verdicts["is_text"].to_numpy(),
                                     "gate_reason": verdicts["reason"].to_numpy()}, index=group.index))  # fmt: skip
    return frame.join(pd.concat(checked))


def score_unique(score: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
    """``score`` of each text, computing each distinct text once (methods on the same seeds often
    write the same completion)."""
    unique, index = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    if len(unique) == 0:
        return np.array([])
    return np.asarray(score(unique.tolist()), dtype=float)[index]


def judge_perplexity(
    judge: TransformersModel,
    frame: pd.DataFrame,
    *,
    first_sample_only: bool = False,
    n_prompts: int | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """The perplexity of each completion given its (plain) prompt under ``judge``
    (:func:`~actadd.studies.evaluation.scorers.continuation_perplexity`), per row of a :func:`sample`
    table; NaN for a blank completion, and with ``first_sample_only`` for every row but each
    prompt's first sample (a selection judges fluency on those only), with ``n_prompts`` for every
    prompt after the first ``n_prompts`` (where no claim rests on fluency and the judge's cost
    would crowd out prompts). Each distinct (prompt, completion) is scored once."""
    keep = frame["sample"] == 0 if first_sample_only else pd.Series(True, index=frame.index)
    if n_prompts is not None:
        keep &= frame["prompt_id"] < integer(n_prompts, "n_prompts", minimum=1)
    rows = frame.index[keep]
    pairs = frame.loc[rows, ["prompt", "completion"]].drop_duplicates()
    scored = continuation_perplexity(
        judge, pairs["prompt"].tolist(), pairs["completion"].tolist(), batch_size=batch_size
    )
    lookup = dict(zip(zip(pairs["prompt"], pairs["completion"]), scored))
    out = np.full(len(frame), np.nan)
    positions = frame.index.get_indexer(rows)
    out[positions] = [lookup[(p, c)] for p, c in zip(frame.loc[rows, "prompt"], frame.loc[rows, "completion"])]
    return out
