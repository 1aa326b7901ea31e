"""One module per study, each the one home of its study: its claims (a :class:`Section`), the
template of its "What it shows", its analysis and figure helpers, and its typed records. A
notebook imports its module and reads as a section of a paper: the question, its parameters,
calls with names that say what they do, figures, the claims and what it shows.

:func:`section` finds a study's :class:`Section` by notebook name, importing its module only then
(the report and the README need the paper's summaries without loading every study's stack).
"""

from __future__ import annotations

from importlib import import_module

from actadd.studies.lifecycle.study import Section

# Each notebook's module, by the notebook's name.
MODULES: dict[str, str] = {
    "00_quickstart": "quickstart",
    "01_wedding_layers": "wedding_layers",
    "02_perplexity_relevance": "perplexity_relevance",
    "03_factual_recall": "factual_recall",
    "04_sentiment": "sentiment",
    "05_detox": "detox",
    "06_overhead": "overhead",
}


def section(name: str) -> Section:
    """The :class:`Section` of the notebook ``name`` (``"01_wedding_layers"``)."""
    if name not in MODULES:
        raise ValueError(f"no study is named {name!r}; studies: {sorted(MODULES)}")
    found: Section = import_module(f"{__name__}.{MODULES[name]}").SECTION
    return found
