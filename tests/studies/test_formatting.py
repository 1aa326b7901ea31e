"""One way of writing numbers: tables and prose agree, intervals never collapse in print."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from actadd.studies.evaluation.stats import Estimate
from actadd.studies.presentation import formatting
from actadd.studies.presentation.prose import render

GAIN = Estimate(0.052, 0.011, 0.094, 100, "bootstrap")


def test_a_difference_of_shares_reads_as_points_in_tables_and_in_prose():
    assert formatting.interval(GAIN, "points") == "+5.2 [+1.1, +9.4] pts"
    assert formatting.interval(GAIN, "points", words=True) == "+5.2 points [+1.1, +9.4]"
    assert render("{g:pts}", g=GAIN) == formatting.interval(GAIN, "points", words=True)


def test_a_share_reads_as_a_percent_and_is_never_rounded_to_all_or_none():
    share = Estimate(0.997, 0.98, 0.9995, 300, "wilson")
    assert formatting.interval(share, "percent") == "99.7% [98%, 99.95%]"
    assert render("{s:pct}", s=share) == "99.7% [98, 99.95]"
    assert formatting.value(0.0004, "percent") == "0.04%" and formatting.value(1.0, "percent") == "100%"


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_missing_number_is_a_dash_in_a_table_and_na_in_a_sentence(missing):
    assert formatting.value(missing, "ratio") == "-"
    assert formatting.value(missing, "ratio", words=True) == "n/a"


def test_half_widths_say_what_precision_a_sample_bought():
    assert formatting.half_width(GAIN, "points") == "±4.2 pts"
    assert formatting.half_width(Estimate(1.0, 0.9, 1.1, 5, "x")) == "±0.1"


def test_a_markdown_table_escapes_pipes_and_folds_lines():
    table = pd.DataFrame({"claim": ["a | b", "c\nd"], "value": [0.123456, None]})
    assert formatting.markdown_table(table).splitlines() == [
        "| claim | value |", "|---|---|", "| a \\| b | 0.1235 |", "| c d | - |"]  # fmt: skip
    with pytest.raises(ValueError, match="header"):
        formatting.markdown_table([["x"]])
