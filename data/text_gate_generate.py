"""Continuations of the studies' kind for the text gate's labelled set, generated once.

Both embedded models (bfloat16), unsteered and steered at increasing strengths: ActAdd's
vector (relative norms 1-16, the studies' pairs, added at the front) and the mean difference
of 64 contrast pairs averaged over each text's tokens (relative norms 0.25-8, added at every
position), at a fifth and a third of the depth, on the prompts of 04 (tweets), 05 (toxicity
prompts) and 01 ('I went up to my friend and said'). Writes one row per continuation with how
it was made; the labels are added by hand afterwards (data/README.md, "Text gate").

    PYTHONPATH=. .venv/bin/python data/text_gate_generate.py OUT.csv
"""

from __future__ import annotations

import itertools
import sys

import pandas as pd

import actadd
from actadd.io import atomic_write
from actadd.studies.data import sentiment_prompts, topic_pairs, toxicity_pairs, toxicity_prompts
from actadd.studies.protocol import judges

MODELS = ("smollm2-135m", "gemma3-270m")
DEPTHS = (0.2, 0.33)
ACTADD_NORMS = (1.0, 2.0, 4.0, 8.0, 16.0)
MEANDIFF_NORMS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
PER_SETTING = 3  # prompts per steered setting
UNSTEERED = 6  # unsteered continuations per task
N_PAIRS = 64
SEED = 0


def tasks(model) -> dict[str, dict]:
    """Per task: prompts, ActAdd's pair per depth, the mean difference's pairs per depth, tokens."""
    pool = sentiment_prompts(tokenizer=model.tokenizer, exclude=judges.scorer_tweets(), seed=SEED).to_pandas()
    tail = {label: pool.loc[pool.label == label, "prompt"].drop_duplicates().tolist()[-N_PAIRS:]
            for label in ("positive", "negative")}  # fmt: skip
    to_positive = list(zip(tail["positive"], tail["negative"]))
    tweets = pool.loc[~pool.prompt.isin(tail["positive"] + tail["negative"]), "prompt"].sample(40, random_state=SEED)
    toxic = toxicity_prompts(n=40, seed=SEED).to_pandas()
    friend = "I went up to my friend and said"
    return {
        # A fifth of the depth steers towards positive, a third towards negative: both directions of 04.
        "04 tweets": dict(prompts=tweets.tolist(), tokens=20, actadd={0.2: ("Love", "Hate"), 0.33: ("Hate", "Love")},
                          meandiff={0.2: to_positive, 0.33: [(b, a) for a, b in to_positive]}),
        "05 toxicity": dict(prompts=toxic.prompt.tolist(), tokens=20,
                            actadd=dict.fromkeys(DEPTHS, ("I am kind and polite", "I am rude and offensive")),
                            meandiff=dict.fromkeys(DEPTHS, toxicity_pairs(n=N_PAIRS, seed=SEED, exclude=toxic.prompt))),
        "01 friend": dict(prompts=[friend], tokens=40, actadd=dict.fromkeys(DEPTHS, (" weddings", "")),
                          meandiff=dict.fromkeys(DEPTHS, topic_pairs(N_PAIRS, seed=SEED))),
    }  # fmt: skip


def run(name: str) -> pd.DataFrame:
    model = actadd.load_model(name, dtype="bfloat16")
    rows = []
    for task, spec in tasks(model).items():
        stream = itertools.cycle(spec["prompts"])  # each setting takes the next prompts in turn
        for positions in ("front", "all"):
            batch: list[tuple[str, object, str]] = []
            if positions == "front":
                batch += [(next(stream), None, "unsteered") for _ in range(UNSTEERED)]
            for depth in DEPTHS:
                if positions == "front":
                    plus, minus = spec["actadd"][depth]
                    unit = actadd.steering_vector(model, plus, minus, layer=depth, relative_norm=1.0)
                    settings = [(unit * r, f"actadd {plus!r}-{minus!r} layer {unit.layer} ({depth} of depth) "
                                 f"relative_norm {r:g}") for r in ACTADD_NORMS]  # fmt: skip
                else:
                    unit = actadd.mean_difference(model, spec["meandiff"][depth], layer=depth, relative_norm=1.0,
                                                  reduce="mean")  # fmt: skip
                    settings = [(unit * r, f"mean difference of {N_PAIRS} pairs (reduce=mean, positions=all) layer "
                                 f"{unit.layer} ({depth} of depth) relative_norm {r:g}") for r in MEANDIFF_NORMS]  # fmt: skip
                batch += [(p, v, how) for v, how in settings for p in itertools.islice(stream, PER_SETTING)]
            texts = actadd.generate(model, [p for p, _, _ in batch], row_vectors=[v for _, v, _ in batch],
                                    positions=positions, max_new_tokens=spec["tokens"], batch_size=64, seed=SEED,
                                    pad_prompts=True)  # fmt: skip
            for (prompt, _, how), text in zip(batch, texts):
                rows.append(dict(prompt=prompt, text=text, source=f"generated: {name} bf16, {task} prompt, {how}, "
                                 f"{spec['tokens']} tokens, seed {SEED}"))  # fmt: skip
    return pd.DataFrame(rows)


if __name__ == "__main__":
    frame = pd.concat([run(name) for name in MODELS], ignore_index=True)
    atomic_write(sys.argv[1], lambda tmp: frame.to_csv(tmp, index=False))
    print(f"{len(frame)} continuations -> {sys.argv[1]}")
