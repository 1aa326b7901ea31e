"""The paper's sampler, seeded per row: temperature, OpenAI's frequency penalty and top-p.

Every row draws from its own generator, so a row's text depends on its seed, not on which
other rows share its batch; a sweep of many settings can then run as a few large batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from actadd.checks import integer

__all__ = ["RowSampler", "row_seeds"]


def row_seeds(seed: int, n: int, *, stream: int = 0) -> list[int]:
    """Independent per-row seeds: row ``r`` gets the same seed whatever ``n`` is.

    ``stream`` picks one of several disjoint sequences from the same ``seed``, so the draws a
    study chooses a setting on and the draws it reports that setting on never share a seed
    (stream 0 is the default; other streams use the spawn key ``(stream, r)``).
    """
    integer(n, "n", minimum=0)
    stream = integer(stream, "stream", minimum=0)
    if stream == 0:
        children = np.random.SeedSequence(seed).spawn(n)
    else:
        children = [np.random.SeedSequence(seed, spawn_key=(stream, r)) for r in range(n)]
    return [int(child.generate_state(1, np.uint64)[0]) for child in children]


# Top-p keeps a handful of tokens at the studies' top_p = 0.3, so the sampler ranks only the
# top NUCLEUS_WIDTH tokens; a row whose nucleus is wider sends its batch through the full sort.
NUCLEUS_WIDTH = 256


class RowSampler(LogitsProcessor):
    """Temperature, OpenAI frequency penalty and top-p, then one draw per row from its own generator.

    Returns scores that are 0 at the drawn token and -inf elsewhere, so the caller's greedy
    step picks exactly the draw. ``temperature == 0`` is greedy decoding (after the penalty).
    The frequency penalty subtracts ``freq_penalty * count`` from each token's logit, counting
    the token's occurrences in the completion so far (not the prompt), as OpenAI defines it;
    transformers' ``repetition_penalty`` is a different, multiplicative rule. With
    ``prompt_starts`` (where each row's tokens begin in the left-padded batch) the count
    includes the row's prompt and start token, as the original ActAdd code counted.

    Each step draws one uniform ``u`` per row from the row's generator and takes the token at
    which the nucleus's cumulative probability first exceeds ``u`` times the nucleus's mass
    (inverse CDF), so a row consumes one number per step whatever its batch holds.
    """

    def __init__(
        self,
        prompt_len: int,
        seeds: Sequence[int],
        *,
        temperature: float,
        top_p: float,
        freq_penalty: float,
        prompt_starts: Sequence[int] | None = None,
    ):
        self.prompt_len = prompt_len
        self.prompt_starts = None if prompt_starts is None else torch.tensor(list(prompt_starts))
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.freq_penalty = temperature, top_p, freq_penalty
        self._work: torch.Tensor | None = None  # reused across steps: a fresh [batch, vocab] buffer page-faults

    def __call__(self, input_ids: torch.LongTensor, logits: torch.FloatTensor) -> torch.FloatTensor:
        # Each full-vocabulary temporary costs page faults at large batches, so there are few.
        scores = logits.float()
        counted = input_ids if self.prompt_starts is not None else input_ids[:, self.prompt_len :]
        if self.freq_penalty and counted.shape[1]:
            penalty = torch.full(counted.shape, -float(self.freq_penalty), dtype=scores.dtype, device=scores.device)
            if self.prompt_starts is not None:  # not the left padding before each row's start token
                positions = torch.arange(counted.shape[1], device=scores.device)
                penalty = penalty * (positions[None, :] >= self.prompt_starts.to(scores.device)[:, None])
            scores = scores.scatter_add(1, counted, penalty)  # -penalty once per occurrence
        if self.temperature == 0:
            choice = scores.argmax(dim=-1)
        else:
            choice = self._sample(scores if self.temperature == 1 else scores / self.temperature)
        return torch.full_like(scores, -math.inf).scatter_(1, choice[:, None], 0.0)  # type: ignore[return-value]

    def _sample(self, scores: torch.Tensor) -> torch.Tensor:
        """One token per row of ``scores`` ``[batch, vocab]``: top-p, then the row's inverse-CDF draw."""
        top = scores.amax(dim=-1, keepdim=True)
        if self._work is None or self._work.shape != scores.shape:
            self._work = torch.empty_like(scores)
        log_norm = top + torch.sub(scores, top, out=self._work).exp_().sum(dim=-1, keepdim=True).log()
        if not log_norm.isfinite().all():
            row = int((~log_norm.isfinite()).nonzero()[0, 0])
            raise ValueError(
                f"row {row}'s logits hold a NaN or no finite value (log-normaliser {log_norm[row].item()}): "
                "the model's output is broken, often by a steering coefficient too large for its dtype"
            )
        order, probs = self._nucleus(scores, log_norm)
        cumulative = probs.cumsum(dim=-1)
        uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        uniform = uniform.to(scores.device)  # the generators live on the CPU
        target = uniform[:, None] * cumulative[:, -1:].double()
        # The first candidate whose cumulative probability exceeds the target; it has p > 0.
        rank = (cumulative.double() <= target).sum(dim=-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
        return rank.squeeze(1) if order is None else order.gather(1, rank).squeeze(1)

    def _nucleus(self, scores: torch.Tensor, log_norm: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Candidate tokens ``[batch, n]`` (None: the whole vocabulary in order) and their
        probabilities ``[batch, n]``, zero outside the top-p nucleus."""
        if self.top_p >= 1:  # the whole distribution: nothing to rank
            return None, (scores - log_norm).exp()
        vocab = scores.shape[-1]
        width = min(NUCLEUS_WIDTH, vocab)
        values, order = scores.topk(width, dim=-1)
        probs = (values - log_norm).exp()
        if width < vocab and (probs.cumsum(dim=-1)[:, -1] < self.top_p).any():
            # A nucleus reaches past the top `width`: rank the rest too. The first `width`
            # candidates stay as they were, so every other row draws exactly as it would alone.
            rest_values, rest_order = scores.scatter(1, order, -math.inf).sort(dim=-1, descending=True)
            order = torch.cat([order, rest_order[:, : vocab - width]], dim=-1)
            probs = torch.cat([probs, (rest_values[:, : vocab - width] - log_norm).exp()], dim=-1)
        # The smallest prefix whose mass reaches top_p (always the top token).
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p
        return order, probs * keep
