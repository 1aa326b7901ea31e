"""One definition of strength for every kind of vector, so that methods are compared at strengths
that mean the same: the norm a vector adds per steered position, over the residual norm at its
layer on a fixed reference sample of text (:class:`Scale`); and the norm it adds to one
completion in all, in the same unit.

A vector's own ``relative_norm`` divides by the norm of the texts it was read from, which
differs between kinds (ActAdd's pair, with its padding row; the mean difference's contrast
texts): two vectors of equal ``relative_norm`` can differ several times in what they add.
Here every vector is measured against the same texts.

    scale = Scale.measure(model)                       # the reference sample's residual norm per layer
    scale.position_norm(vector)                        # per steered position, in that unit
    vector = scale.at(unit_vector, 0.5)                # rescaled to 0.5 of it
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nnsight.modeling.transformers import TransformersModel

from actadd import DirectionVector, SteeringVector, Vector, model_info, residual_norms
from actadd.checks import real
from actadd.studies.data import web_text

# The reference sample: the first passages of a seeded draw of the offline web text, whatever
# the study's own data (a fixed sample, so a strength means the same in every study).
REFERENCE_TEXTS = 64
REFERENCE_SEED = 0
REFERENCE_WORDS = 100


@dataclass(frozen=True)
class Scale:
    """The residual norm at each block's input on the reference sample (``norms[layer]``), and the
    model it was measured on."""

    model_name: str
    norms: tuple[float, ...]

    @classmethod
    def measure(cls, model: TransformersModel) -> Scale:
        """The model's residual norms on :data:`REFERENCE_TEXTS` offline web-text passages of up to
        :data:`REFERENCE_WORDS` words (drawn with :data:`REFERENCE_SEED`)."""
        texts = web_text(n=REFERENCE_TEXTS, seed=REFERENCE_SEED, related_fraction=None,
                         passage_words=REFERENCE_WORDS)["text"]  # fmt: skip
        return cls(model_info(model).name, tuple(float(x) for x in residual_norms(model, list(texts))))

    def position_norm(self, vector: Vector) -> float:
        """What ``vector`` adds per steered position, over the reference residual norm at its layer."""
        self._check(vector)
        return vector.added_norm / self.norms[vector.layer]

    def completion_norm(self, vector: Vector, steered_positions: float) -> float:
        """What ``vector`` adds to one completion in all, in the same unit: an ActAdd vector its
        every row once; a direction its norm at each of ``steered_positions`` (the prompt's tokens
        after the start token and the completion's tokens)."""
        self._check(vector)
        if isinstance(vector, SteeringVector):
            return vector.total_added_norm / self.norms[vector.layer]
        return self.position_norm(vector) * steered_positions

    def completion_norms(
        self,
        model: TransformersModel,
        steering: object,
        prompt_tokens: Sequence[int],
        completions: Sequence[str],
    ) -> list[float]:
        """Each completion's :meth:`completion_norm` under ``steering``: a direction counts its
        prompt's ``prompt_tokens`` (after the start token) and every generated token but the last,
        which is sampled and never fed back through the model; an ActAdd vector adds its rows once;
        anything else (unsteered, prompting, a decoding-time method) adds nothing."""
        if isinstance(steering, DirectionVector):
            tokenizer = model.tokenizer
            return [
                self.completion_norm(steering, p + max(len(tokenizer(t, add_special_tokens=False).input_ids) - 1, 0))
                for p, t in zip(prompt_tokens, completions, strict=True)
            ]
        if isinstance(steering, SteeringVector):
            return [self.completion_norm(steering, 0)] * len(completions)
        return [0.0] * len(completions)

    def at(self, vector: Vector, position_norm: float) -> Vector:
        """``vector`` rescaled so that it adds ``position_norm`` per steered position (the sign of
        its coefficient kept)."""
        target = real(position_norm, "position_norm", minimum=0)
        now = self.position_norm(vector)
        if now == 0:
            raise ValueError(f"{vector.label} adds nothing: no scale gives it a strength of {target:g}")
        return vector * (target / now)

    def _check(self, vector: Vector) -> None:
        if vector.model_name != self.model_name:
            raise ValueError(
                f"{vector.label} was made on {vector.model_name!r}, but this scale was measured on "
                f"{self.model_name!r}: measure the scale on the vector's model"
            )
