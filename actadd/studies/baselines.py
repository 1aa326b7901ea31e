"""Baselines ActAdd is compared with: prompting and PREADD-style prefix-contrastive decoding.

PREADD (Pei et al. 2023) runs the model twice per step, on the plain prompt and on the prompt
behind a prefix that elicits a property, and shifts the plain next-token log-probs by
``strength`` times their difference:

    scores = log p(x | prompt) + strength * (log p(x | prefix + prompt) - log p(x | prompt))

``strength > 0`` moves towards what the prefix elicits (a positive prefix for sentiment),
``strength < 0`` away from it (a toxic prefix for detoxification); 0 is plain decoding.
:class:`PrefixContrast` does this as a transformers ``LogitsProcessor`` that keeps its own KV
cache for the prefixed rows; pass it to ``actadd.generate(..., logits_processors=[...])``, which
runs it before the seeded ``RowSampler``, so every method samples with the same seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from nnsight.modeling.transformers import TransformersModel
from transformers import DynamicCache, LogitsProcessor

from actadd import Steerable, Steering, encode, generate, model_info, row_seeds, steering_vector
from actadd.checks import integer, real
from actadd.studies.stats import Estimate, bootstrap_ci, paired_difference


def prompted(prompts: Sequence[str], instruction: str) -> list[str]:
    """The prompting baseline: each prompt behind ``instruction`` (end it with a newline, as PREADD's prefixes)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    return [instruction + prompt for prompt in prompts]


class PrefixContrast(LogitsProcessor):
    """PREADD-style prefix-contrastive decoding as a logits processor (see the module docstring).

    The processor reads each row's plain prompt from the ``input_ids`` it is given (the start
    token and left padding stripped), builds ``[start] + prefix + prompt`` for it, and runs those
    rows through the model with their own KV cache: one full pass when a batch starts, then one
    token per step (the token the sampler drew for the plain row). A call whose ``input_ids``
    do not extend the previous call's by one token starts a new batch, so one instance serves
    every batch of an ``actadd.generate`` call. Not steered: the prefixed rows run on the plain
    HF module.
    """

    def __init__(self, model: TransformersModel, prefix: str, strength: float):
        """``prefix`` ends with a newline so that its tokens and the prompt's do not merge."""
        if not isinstance(prefix, str) or not prefix.strip():
            raise ValueError(f"prefix must be a non-empty string that elicits the property, got {prefix!r}")
        if prefix[-1] in " \t":
            # "...: " + "The" tokenises as ":", " The" but "...: " alone ends in a bare space token.
            raise ValueError(
                f"prefix {prefix!r} ends in a space, which would tokenise differently from prefix + prompt; end it with a newline"
            )
        self.model, self.prefix = model, prefix
        self.strength = real(strength, "strength (> 0 towards the prefix, < 0 away)")
        self.info = model_info(model)
        self.prefix_ids = encode(model, prefix, start=False)
        self._last_input_ids: torch.Tensor | None = None
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._continues(input_ids):
            prefixed = self._step(input_ids[:, -1:])
        else:
            prefixed = self._start(input_ids)
        self._last_input_ids = input_ids.clone()
        plain = scores.float().log_softmax(dim=-1)
        return plain + self.strength * (prefixed - plain)  # type: ignore[return-value]

    def prefixed_ids(self, input_ids: torch.Tensor) -> list[list[int]]:
        """``[start] + prefix + prompt`` for each row of left-padded ``input_ids`` (start token first)."""
        start, pad = self.info.start_token_id, self.info.pad_token_id
        rows = []
        for row in input_ids.tolist():
            n_pad = next((i for i, t in enumerate(row) if t != pad), len(row))
            # When pad and start are one token (GPT-2), the start is the last of the leading run.
            first = n_pad - 1 if pad == start else n_pad
            if first < 0 or first >= len(row) or row[first] != start:
                raise ValueError(
                    "a row of input_ids has no start token: generate with actadd.generate, which puts it first"
                )
            rows.append([start, *self.prefix_ids, *row[first + 1 :]])
        return rows

    def _continues(self, input_ids: torch.Tensor) -> bool:
        last = self._last_input_ids
        return (
            last is not None
            and input_ids.shape[0] == last.shape[0]
            and input_ids.shape[1] == last.shape[1] + 1
            and torch.equal(input_ids[:, :-1], last)
        )

    @torch.no_grad()
    def _start(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.prefixed_ids(input_ids)
        width = max(len(r) for r in rows)
        device = input_ids.device
        ids = torch.tensor([[self.info.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
        self._mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        # Positions count real tokens only, as HF generate does for the left-padded plain rows.
        positions = (self._mask.cumsum(dim=-1) - 1).clamp(min=0)
        self._cache = DynamicCache()
        logits = self._forward(ids, positions)
        self._positions = positions[:, -1:]
        return logits

    @torch.no_grad()
    def _step(self, new_tokens: torch.Tensor) -> torch.Tensor:
        assert self._mask is not None and self._positions is not None, "_start runs first"
        self._mask = torch.cat([self._mask, torch.ones_like(new_tokens)], dim=1)
        self._positions = self._positions + 1
        return self._forward(new_tokens, self._positions)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        output = self.model._module(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = output.past_key_values
        return output.logits[:, -1].float().log_softmax(dim=-1)


@dataclass(frozen=True)
class Method:
    """One way of controlling generation: a prompting ``instruction``, a PREADD ``prefix`` with
    its ``strength``, an ActAdd ``steering``, or none of them (unsteered)."""

    instruction: str | None = None
    prefix: str | None = None
    strength: float = 0.0
    steering: Steerable | None = None


def sample_methods(
    model: TransformersModel,
    prompts: Sequence[str],
    methods: Mapping[str, Method],
    n_samples: int,
    *,
    seed: int = 0,
    stream: int = 0,
    batch_size: int = 64,
    **sampling,
) -> pd.DataFrame:
    """``n_samples`` completions of every prompt under every method, one row each.

    Sample ``s`` of prompt ``i`` gets the same seed (of seed stream ``stream``) under every
    method, so methods differ only
    by what they do to the logits. Methods without a PREADD prefix share batches (ActAdd rows
    via ``row_vectors``); each PREADD method runs as its own call with its processor.
    Columns: method, prompt_id, sample, prompt, completion.
    """
    integer(n_samples, "n_samples", minimum=1)
    if not methods:
        raise ValueError("methods is empty: give at least one, e.g. {'unsteered': Method()}")
    grid = pd.DataFrame(
        [(i, s, p) for i, p in enumerate(prompts) for s in range(n_samples)], columns=["prompt_id", "sample", "prompt"]
    )
    seeds = row_seeds(seed, len(grid), stream=stream)
    shared = [name for name, m in methods.items() if m.prefix is None]
    calls = ([shared] if shared else []) + [[name] for name, m in methods.items() if m.prefix is not None]
    frames = []
    for names in calls:
        texts: list[str] = []
        rows: list[Steerable | None] = []
        for name in names:
            method = methods[name]
            shown = (
                grid["prompt"].tolist() if method.instruction is None else prompted(grid["prompt"], method.instruction)
            )
            texts += shown
            rows += [method.steering] * len(grid)
        first = methods[names[0]]
        processors = [] if first.prefix is None else [PrefixContrast(model, first.prefix, first.strength)]
        completions = generate(
            model,
            texts,
            row_vectors=rows,
            seed=seeds * len(names),
            batch_size=batch_size,
            pad_prompts=True,
            logits_processors=processors,
            **sampling,
        )
        for j, name in enumerate(names):
            frames.append(grid.assign(method=name, completion=completions[j * len(grid) : (j + 1) * len(grid)]))
    return pd.concat(frames, ignore_index=True)[["method", "prompt_id", "sample", "prompt", "completion"]]


def actadd_grid(
    model: TransformersModel, pairs: Sequence[Sequence[str]], layers: Sequence[int], coeffs: Sequence[float]
) -> dict[tuple[int, float], Steerable]:
    """ActAdd steerings for every (layer, coefficient): the vectors of all ``pairs`` (p+, p-) added at that layer."""
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"pairs must be a non-empty list of (p_plus, p_minus), got {pairs!r}")
    grid: dict[tuple[int, float], Steerable] = {}
    for layer in layers:
        unit = [steering_vector(model, plus, minus, layer=layer) for plus, minus in pairs]
        for coeff in coeffs:
            grid[(layer, coeff)] = Steering(tuple(vector * coeff for vector in unit))
    return grid


def paired_by_prompt(
    frame: pd.DataFrame, metric: str, method: str, baseline: str, *, by: str = "prompt_id", seed: int = 0
) -> Estimate:
    """``method`` minus ``baseline`` on ``metric``, averaged per prompt first (several samples per
    prompt share its seeds across methods), then over prompts with a bootstrap over prompts."""
    means = frame.groupby(["method", by])[metric].mean().unstack("method")
    missing = {method, baseline} - set(means.columns)
    if missing:
        raise ValueError(f"no rows for method(s) {sorted(missing)}; methods present: {sorted(means.columns)}")
    paired = means[[method, baseline]].dropna()
    return paired_difference(paired[method].to_numpy(), paired[baseline].to_numpy(), seed=seed)


def mean_ci(frame: pd.DataFrame, by: str | list[str], metrics: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Mean of each metric per group with a 95% bootstrap interval: columns METRIC, METRIC_low, METRIC_high, n.

    NaN values (an unscorable empty continuation) are left out of that metric's mean.
    """
    rows = []
    for key, group in frame.groupby(by, sort=False):
        row = dict(zip([by] if isinstance(by, str) else by, key if isinstance(key, tuple) else (key,)))
        for metric in metrics:
            values = group[metric].dropna().to_numpy(dtype=float)
            if len(values) >= 2:
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_ci(values, seed=seed)
            else:
                row[metric] = row[f"{metric}_low"] = row[f"{metric}_high"] = float(values[0]) if len(values) else np.nan
        row["n"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def select_setting(
    summary: pd.DataFrame, objective: str, *, maximize: bool, perplexity_limit: float, perplexity: str = "perplexity"
) -> pd.Series:
    """The row of ``summary`` with the best ``objective`` among those whose ``perplexity`` is within the limit.

    When no row is within the limit, the most fluent row (lowest ``perplexity``): the notebook
    reports ``within_limit`` so a reader sees that the fluency budget could not be met.
    """
    if summary.empty:
        raise ValueError("summary is empty: sweep at least one setting")
    allowed = summary[summary[perplexity] <= perplexity_limit]
    if allowed.empty:
        return _with(summary.loc[summary[perplexity].idxmin()], False)
    best = allowed[objective].idxmax() if maximize else allowed[objective].idxmin()
    return _with(summary.loc[best], True)


def _with(row: pd.Series, within_limit: bool) -> pd.Series:
    row = row.copy()
    row["within_limit"] = within_limit
    return row
