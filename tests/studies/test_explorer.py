"""The explorer: widgets with the right ranges and a callback that fills a table; plain fallback."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

import actadd
from actadd import studies
from actadd.studies import explorer
from actadd.studies.explorer import Explorer, completions_table, explore

SETTINGS = dict(prompt="I went up to my friend and said", p_plus=" Love", p_minus=" Hate", layer=1, coeff=4.0)


def test_fallback_without_ipywidgets_prints_and_returns_the_table(monkeypatch, capsys, gpt2_random):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    with pytest.raises(ImportError):
        import ipywidgets  # noqa: F401
    monkeypatch.setattr(explorer, "_in_kernel", lambda: True)  # even in a kernel: no widgets without the package
    table = explore(gpt2_random, **SETTINGS, n_samples=2, max_new_tokens=4, seed=5)
    assert isinstance(table, pd.DataFrame) and len(table) == 2
    steered = "steered: ' Love' - ' Hate', layer 1, c = 4"
    assert list(table.columns) == ["unsteered", steered]
    # The same seeds as generate(): the columns are the unsteered and the steered completions.
    vector = actadd.steering_vector(gpt2_random, " Love", " Hate", layer=1, coeff=4.0)
    kwargs = dict(max_new_tokens=4, seed=actadd.row_seeds(5, 2), progress=False)
    assert table["unsteered"].tolist() == actadd.generate(gpt2_random, [SETTINGS["prompt"]] * 2, None, **kwargs)
    assert table[steered].tolist() == actadd.generate(gpt2_random, [SETTINGS["prompt"]] * 2, vector, **kwargs)
    out = capsys.readouterr().out
    assert "prompt: 'I went up to my friend and said'" in out and table["unsteered"][0] in out
    with pytest.raises(ValueError, match="widgets=True needs ipywidgets"):
        explore(gpt2_random, **SETTINGS, widgets=True)


def test_outside_a_kernel_explore_falls_back(gpt2_random):
    """pytest has no Jupyter kernel: the default is the plain table, even with ipywidgets installed."""
    table = explore(gpt2_random, **SETTINGS, n_samples=1, max_new_tokens=2)
    assert isinstance(table, pd.DataFrame) and table.shape == (1, 2)


def test_widgets_ranges_and_callback(gpt2_random):
    ipywidgets = pytest.importorskip("ipywidgets")
    ex = Explorer(gpt2_random, **SETTINGS, n_samples=1, max_new_tokens=3, seed=0)
    layer, coeff = ex.controls["layer"], ex.controls["coeff"]
    assert isinstance(layer, ipywidgets.IntSlider) and (layer.min, layer.max, layer.value) == (0, 3, 1)
    assert isinstance(coeff, ipywidgets.FloatSlider) and coeff.min < 0 < coeff.max and coeff.value == 4.0
    assert not layer.continuous_update and not ex.controls["prompt"].continuous_update
    assert [ex.controls[k].value for k in ("prompt", "p_plus", "p_minus")] == [SETTINGS["prompt"], " Love", " Hate"]

    first = ex.refresh()
    assert first is ex.table and first.shape == (1, 2)
    assert first.equals(completions_table(gpt2_random, **SETTINGS, n_samples=1, max_new_tokens=3, seed=0))

    layer.value = 2  # a change recomputes through the observer
    assert ex.table.columns[1] == "steered: ' Love' - ' Hate', layer 2, c = 4"
    ex.controls["coeff"].value = 0.0  # c = 0 is the unsteered model
    assert ex.table.iloc[:, 0].tolist() == ex.table.iloc[:, 1].tolist()

    ex.controls["p_plus"].value = ""
    ex.controls["p_minus"].value = ""  # an empty pair: the error is shown, nothing raised
    assert ex.table is None


def test_explore_rejects_bad_layer(gpt2_random):
    with pytest.raises(ValueError, match=r"layer must be .*\[-4, 3\].*got 9"):
        explore(gpt2_random, layer=9)


def test_on_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert studies.on_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert studies.on_colab() is True
