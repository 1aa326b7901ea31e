"""The methods the comparison studies (04, 05) put side by side, as data, and how they are sampled.

- A method is data (:class:`Method`): its kind, layer, coefficient, relative norm, PREADD
  strength and instruction are fields and table columns, never parsed out of its name.
- Equal search budgets: :func:`search_space` gives ActAdd as many settings as PREADD, and the
  mean-difference vector (CAA) the same (layer, relative norm) settings as ActAdd.
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

from actadd import DirectionVector, Positions, SteeringVector, generate, row_seeds, steering_vector
from actadd import mean_difference as actadd_mean_difference
from actadd.checks import integer, real, strings
from actadd.studies.evaluation.scorers import continuation_perplexity
from actadd.studies.protocol.baselines import PrefixContrast, prompted

Kind = Literal["unsteered", "prompting", "preadd", "actadd", "meandiff"]
KINDS: tuple[str, ...] = get_args(Kind)
SETTING_COLUMNS = ["layer", "coeff", "relative_norm", "strength"]
COLUMNS = ["method", "kind", *SETTING_COLUMNS, "prompt_id", "sample", "seed", "prompt", "completion"]
# The methods an evaluation compares, by these names.
TREATMENT = "ActAdd"
BASELINES = ("unsteered", "prompting", "PREADD")
# The mean-difference vector chosen on its own, and read at ActAdd's chosen layer and relative norm.
MEAN_DIFFERENCE = "mean difference"
MEAN_DIFFERENCE_AT_ACTADD = "mean difference at ActAdd's setting"
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
    ``actadd`` (``steering`` added at ``layer`` with coefficient ``coeff``; ``relative_norm`` is
    its norm over the residual norm at that layer) or ``meandiff`` (a ``[d_model]`` mean
    difference of contrast pairs, :func:`actadd.mean_difference`, added at every position).
    Fields a kind does not use are None.
    """

    name: str
    kind: Kind
    layer: int | None = None
    coeff: float | None = None
    relative_norm: float | None = None
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
            "actadd": ("steering", "layer", "coeff", "relative_norm"),
            "meandiff": ("steering", "layer", "coeff", "relative_norm"),
        }[self.kind]
        for name in ("layer", "coeff", "relative_norm", "strength", "instruction", "steering"):
            given = getattr(self, name) is not None
            if given != (name in needs):
                what = "needs" if name in needs else "takes no"
                raise ValueError(
                    f"method {self.name!r} of kind {self.kind!r} {what} {name}, got {getattr(self, name)!r}"
                )

    def settings(self) -> dict[str, Any]:
        """The setting columns: layer, coeff, relative_norm, strength (None where unused)."""
        return {name: getattr(self, name) for name in SETTING_COLUMNS}

    def describe(self) -> str:
        """The setting in words, for tables and prose: 'layer 10, c = 4.1 (relative norm 4)'."""
        if self.kind in POSITIONS:
            return f"layer {self.layer}, c = {self.coeff:.3g} (relative norm {self.relative_norm:.3g})"
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
    *,
    layer: int | float,
    relative_norm: float | None = None,
    coeff: float | None = None,
    name: str | None = None,
) -> Method:
    """ActAdd with the vector ``p_plus - p_minus`` at ``layer`` (a block index or a fraction of
    the depth), its strength given as a ``relative_norm`` (which transfers between models) or a
    ``coeff``; both are recorded."""
    vector = steering_vector(model, p_plus, p_minus, layer=layer, coeff=coeff, relative_norm=relative_norm)
    return _steered("actadd", vector, name or f"ActAdd layer {vector.layer}, norm {vector.relative_norm:.3g}")


def _steered(kind: Kind, vector: SteeringVector | DirectionVector, name: str) -> Method:
    """A steered method whose setting columns are its vector's."""
    return Method(
        name, kind, layer=vector.layer, coeff=vector.coeff, relative_norm=vector.relative_norm, steering=vector
    )


def mean_difference(
    model: TransformersModel,
    pairs: Sequence[tuple[str, str]],
    *,
    layer: int | float,
    relative_norm: float,
    name: str | None = None,
    unit: DirectionVector | None = None,
) -> Method:
    """The mean-difference vector of ``pairs`` (positive, negative texts) at ``layer``, at
    ``relative_norm`` (:func:`actadd.mean_difference`); ``unit``, the same pairs' vector at that
    layer at any strength, saves reading the pairs again."""
    if unit is None:
        unit = actadd_mean_difference(model, pairs, layer=layer)
    if not unit.relative_norm:
        raise ValueError(f"the pairs give a zero mean difference at layer {unit.layer}: no strength reaches a norm")
    vector = unit * (real(relative_norm, "relative_norm", minimum=0) / unit.relative_norm)
    assert vector.relative_norm is not None  # a vector read from pairs has one
    return _steered(
        "meandiff", vector, name or f"mean difference layer {vector.layer}, norm {vector.relative_norm:.3g}"
    )


def search_space(
    model: TransformersModel,
    p_plus: str,
    p_minus: str,
    actadd_settings: Sequence[Sequence[float]],
    prefix: str,
    preadd_strengths: Sequence[float],
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[Method]:
    """The methods a selection compares: unsteered, one ActAdd method per (layer, relative norm)
    of ``actadd_settings``, one PREADD method per strength, and with contrast ``pairs`` one
    mean-difference method per ActAdd setting. Equal budgets: ActAdd and PREADD must try the
    same number of settings, and the mean difference tries ActAdd's."""
    if len(actadd_settings) != len(preadd_strengths) or not preadd_strengths:
        raise ValueError(
            f"equal search budgets: give as many ActAdd settings as PREADD strengths (at least one), got "
            f"{len(actadd_settings)} ActAdd settings {list(actadd_settings)!r} and {len(preadd_strengths)} "
            f"PREADD strengths {list(preadd_strengths)!r}"
        )
    if any(len(setting) != 2 for setting in actadd_settings):
        raise ValueError(f"each ActAdd setting is (layer, relative norm), got {list(actadd_settings)!r}")
    steered = [actadd(model, p_plus, p_minus, layer=layer, relative_norm=norm) for layer, norm in actadd_settings]
    means = []
    if pairs is not None:
        layers = [m.steering.layer for m in steered if m.steering is not None]
        units = {layer: actadd_mean_difference(model, pairs, layer=layer) for layer in layers}
        means = [mean_difference(model, pairs, layer=layer, relative_norm=norm, unit=units[layer])
                 for layer, (_, norm) in zip(layers, actadd_settings)]  # fmt: skip
    return [unsteered(), *steered, *means, *(preadd(prefix, s) for s in preadd_strengths)]


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
    before it. ``sampling`` goes to :func:`actadd.generate` (``max_new_tokens``, ``top_p``, ...).
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
    frames = [grid.assign(method=m.name, kind=m.kind, **m.settings(), completion=completions[m.name]) for m in methods]
    return pd.concat(frames, ignore_index=True)[COLUMNS]


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
