"""The check that no test leaves a global setting changed (tests/conftest.py) notices each kind of
setting, and puts it back."""

from __future__ import annotations

import os

import matplotlib
import torch

from tests.conftest import _changes, _global_settings, _restore


def test_a_changed_setting_is_named_and_put_back(tmp_path):
    before = _global_settings()
    try:
        torch.set_num_threads(before["threads"] + 1)
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        os.chdir(tmp_path)
        os.environ["ACTADD_COLAB"] = "changed"
        matplotlib.rcParams["font.size"] = 31.0
        changes = _changes(before, _global_settings())
    finally:
        _restore(before)
    assert [change.split(": ")[0] for change in changes] == [
        "threads", "default dtype", "grad enabled", "working directory", "os.environ['ACTADD_COLAB']",
        "matplotlib.rcParams['font.size']",
    ]  # fmt: skip
    assert _changes(before, _global_settings()) == []
