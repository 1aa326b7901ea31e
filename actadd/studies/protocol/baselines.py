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
:mod:`.compare` runs these baselines beside ActAdd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nnsight.modeling.transformers import TransformersModel
from transformers import DynamicCache, LogitsProcessor

from actadd import encode, model_info, transformers_model
from actadd.checks import real


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
        output = transformers_model(self.model)(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = output.past_key_values
        return output.logits[:, -1].float().log_softmax(dim=-1)
