"""The paper's sampler, seeded per row: temperature, OpenAI's frequency penalty and top-p.

Every row draws from its own generator, so a row's text depends on its seed, not on which
other rows share its batch; a sweep of many settings can then run as a few large batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
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
# CANDIDATES highest tokens of the NUCLEUS_BLOCKS blocks of BLOCK consecutive tokens with the
# highest logits, where they hold the nucleus; a row where they do not ranks the top
# NUCLEUS_WIDTH tokens, and a row whose nucleus is wider still sends its batch through the full sort.
BLOCK = 64
NUCLEUS_BLOCKS = 16
CANDIDATES = 64
NUCLEUS_WIDTH = 256


class RowSampler(LogitsProcessor):
    """Temperature, OpenAI frequency penalty and top-p, then one draw per row from its own generator.

    :meth:`draw` returns each row's token; called as a transformers logits processor it returns
    scores that are 0 at the drawn token and -inf elsewhere, so the caller's greedy step picks
    exactly the draw. ``temperature == 0`` is greedy decoding (after the penalty).
    The frequency penalty subtracts ``freq_penalty * count`` from each token's logit, counting
    the token's occurrences in the completion so far (not the prompt), as OpenAI defines it;
    transformers' ``repetition_penalty`` is a different, multiplicative rule. With
    ``prompt_starts`` (where each row's tokens begin in the left-padded batch) the count
    includes the row's prompt and start token, as the original ActAdd code counted.

    Each step draws one uniform ``u`` per row from the row's generator and takes the token at
    which the nucleus's cumulative probability first exceeds ``u`` times the nucleus's mass
    (inverse CDF), so a row consumes one number per step whatever its batch holds. The nucleus
    ranks tokens by logit, equal logits in increasing token id.
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
        """As a transformers logits processor: scores 0 at each row's draw and -inf elsewhere."""
        choice = self.draw(input_ids, logits.to(torch.float32, copy=True))
        return torch.full_like(logits, -math.inf, dtype=torch.float32).scatter_(1, choice[:, None], 0.0)  # type: ignore[return-value]

    def draw(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """One token per row ``[batch]`` from float32 logits ``scores`` ``[batch, vocab]``, which it
        overwrites (the penalty is subtracted in place); ``input_ids`` ``[batch, length]`` are the
        tokens so far, the prompt's ``prompt_len`` columns first."""
        counted = input_ids if self.prompt_starts is not None else input_ids[:, self.prompt_len :]
        if self.freq_penalty and counted.shape[1]:
            penalty = torch.full(counted.shape, -float(self.freq_penalty), dtype=scores.dtype, device=scores.device)
            if self.prompt_starts is not None:  # not the left padding before each row's start token
                positions = torch.arange(counted.shape[1], device=scores.device)
                penalty = penalty * (positions[None, :] >= self.prompt_starts.to(scores.device)[:, None])
            scores.scatter_add_(1, counted, penalty)  # -penalty once per occurrence
        if self.temperature == 0:
            return scores.argmax(dim=-1)
        return self._sample(scores if self.temperature == 1 else scores.div_(self.temperature))

    def _sample(self, scores: torch.Tensor) -> torch.Tensor:
        """One token per row of ``scores`` ``[batch, vocab]``: top-p, then the row's inverse-CDF draw."""
        by_blocks = self.top_p < 1 and -(-scores.shape[1] // BLOCK) > NUCLEUS_BLOCKS
        maxima = _block_maxima(scores) if by_blocks else None
        top = (scores if maxima is None else maxima).amax(dim=-1, keepdim=True)
        if self._work is None or self._work.shape != scores.shape:
            self._work = torch.empty_like(scores)
        log_norm = top + torch.sub(scores, top, out=self._work).exp_().sum(dim=-1, keepdim=True).log()
        if not log_norm.isfinite().all():
            row = int((~log_norm.isfinite()).nonzero()[0, 0])
            raise ValueError(
                f"row {row}'s logits hold a NaN or no finite value (log-normaliser {log_norm[row].item()}): "
                "the model's output is broken, often by a steering coefficient too large for its dtype"
            )
        if self.top_p >= 1:  # the whole distribution, in vocabulary order: nothing to rank
            order, probs = None, (scores - log_norm).exp()
        elif maxima is None:
            order, probs = self._ranked(scores, log_norm)
        else:
            order, probs = self._nucleus(scores, log_norm, maxima)
        cumulative = probs.cumsum(dim=-1)
        uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        uniform = uniform.to(scores.device)  # the generators live on the CPU
        target = uniform[:, None] * cumulative[:, -1:].double()
        # The first candidate whose cumulative probability exceeds the target; it has p > 0.
        rank = (cumulative.double() <= target).sum(dim=-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
        return rank.squeeze(1) if order is None else order.gather(1, rank).squeeze(1)

    def _nucleus(
        self, scores: torch.Tensor, log_norm: torch.Tensor, maxima: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate tokens ``[batch, n]`` in descending order of logit and their probabilities
        ``[batch, n]``, zero outside the top-p nucleus; ``maxima`` are :func:`_block_maxima`.

        Ranking the whole vocabulary costs more than the rest of a step's sampling (a ``topk``
        over 49k tokens took 40 ms for 128 rows), so the candidates are the tokens of the
        ``NUCLEUS_BLOCKS`` blocks with the highest maxima: every token above the next block's
        maximum is among them, so where those tokens hold ``top_p`` of the mass within the
        ``CANDIDATES`` highest, the nucleus is among those, ranked as in the whole vocabulary. A
        row where they do not (a flat distribution) is ranked by :meth:`_ranked`. A row's
        candidates depend on its own logits only, and candidates past its nucleus get probability
        0, so its draw is the one the full ranking gives, whatever the batch holds."""
        vocab = scores.shape[1]
        maxima, chosen = maxima.topk(NUCLEUS_BLOCKS + 1, dim=-1)
        tokens = (chosen[:, :NUCLEUS_BLOCKS, None] * BLOCK + torch.arange(BLOCK, device=scores.device)).flatten(1)
        values = scores.gather(1, tokens.clamp(max=vocab - 1)).masked_fill_(tokens >= vocab, -math.inf)
        values, order = _top(values, tokens, CANDIDATES)
        probs = (values - log_norm).exp()
        covered = (probs * (values > maxima[:, -1:])).sum(dim=-1) >= self.top_p
        probs = self._kept(probs)
        if not covered.all():
            flat = (~covered).nonzero().squeeze(1)
            flat_order, flat_probs = self._ranked(scores[flat], log_norm[flat])
            width = max(order.shape[1], flat_order.shape[1])
            order, probs = F.pad(order, (0, width - order.shape[1])), F.pad(probs, (0, width - probs.shape[1]))
            order[flat] = F.pad(flat_order, (0, width - flat_order.shape[1]))
            probs[flat] = F.pad(flat_probs, (0, width - flat_probs.shape[1]))
        return order, probs

    def _ranked(self, scores: torch.Tensor, log_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`_nucleus`, by ranking the top ``NUCLEUS_WIDTH`` tokens, then the rest where a
        nucleus reaches past them."""
        vocab = scores.shape[-1]
        width = min(NUCLEUS_WIDTH, vocab)
        values, order = _top(scores, torch.arange(vocab, device=scores.device).expand_as(scores), width)
        probs = (values - log_norm).exp()
        if width < vocab and (probs.cumsum(dim=-1)[:, -1] < self.top_p).any():
            # A nucleus reaches past the top `width`: rank the rest too. The first `width`
            # candidates stay as they were, so every other row draws exactly as it would alone.
            rest = scores.scatter(1, order, -math.inf)
            rest_values, rest_order = rest.sort(dim=-1, descending=True, stable=True)
            order = torch.cat([order, rest_order[:, : vocab - width]], dim=-1)
            probs = torch.cat([probs, (rest_values[:, : vocab - width] - log_norm).exp()], dim=-1)
        return order, self._kept(probs)

    def _kept(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities in descending order, zero after the smallest prefix whose mass reaches
        top_p (which always holds the top token)."""
        keep = (probs.cumsum(dim=-1) - probs) < self.top_p
        return probs * keep


def _block_maxima(scores: torch.Tensor) -> torch.Tensor:
    """The highest logit of each block of ``BLOCK`` consecutive tokens: ``[batch, ceil(vocab / BLOCK)]``."""
    batch, vocab = scores.shape
    whole = vocab // BLOCK * BLOCK
    maxima = scores[:, :whole].view(batch, -1, BLOCK).amax(dim=-1)
    return maxima if whole == vocab else torch.cat([maxima, scores[:, whole:].amax(dim=-1, keepdim=True)], dim=1)


def _top(values: torch.Tensor, tokens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest float32 ``values`` of each row and their ``tokens``, highest first and equal
    values in increasing token order, as a stable sort ranks them (``topk`` leaves ties in no set
    order, and bfloat16 logits tie often): each value's bits as an integer that orders as the
    value does, shifted past the token id."""
    bits = (values + 0.0).view(torch.int32).long()  # + 0.0 makes -0.0 equal to 0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    at = ((ordered << 31) - tokens).topk(k, dim=-1).indices
    return values.gather(1, at), tokens.gather(1, at)
