"""Figures draw exactly the intervals of the tables beside them, with labels a reader can read."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from actadd.studies.presentation import plots
from actadd.studies.protocol import comparison, figures

TABLE = pd.DataFrame({
    "setting": ["unsteered", "layer 6, c = 2.5 (relative norm 3)", "layer 14, c = 4"],
    "norm": [0.5, 1.0, 2.0], "success": [0.1, 0.5, 0.9], "success_low": [0.0, 0.3, 0.7],
    "success_high": [0.3, 0.7, 1.0], "layer": [6, 6, 14],
})  # fmt: skip


def _horizontal_bars(ax) -> np.ndarray:
    """(y, low, high) of every horizontal error bar drawn on ``ax``."""
    rows = []
    for container in ax.containers:
        for segment in container.lines[2][0].get_segments():
            (x0, y0), (x1, _) = segment
            rows.append((y0, min(x0, x1), max(x0, x1)))
    return np.array(sorted(rows))


def _bars(ax) -> np.ndarray:
    """(x, low, high) of every error bar drawn on ``ax``."""
    rows = []
    for container in ax.containers:
        for segment in container.lines[2][0].get_segments():
            (x0, y0), (_, y1) = segment
            rows.append((x0, min(y0, y1), max(y0, y1)))
    return np.array(sorted(rows))


def test_by_setting_draws_the_tables_interval_at_each_setting():
    _, axes = plots.panels(2, title="t")
    plots.by_setting(axes[0, 0], TABLE, "norm", "success")
    np.testing.assert_allclose(_bars(axes[0, 0]), TABLE[["norm", "success_low", "success_high"]].to_numpy())
    positions = plots.by_setting(axes[0, 1], TABLE, "setting", "success", scale=100)
    assert positions == TABLE.setting.tolist()
    np.testing.assert_allclose(_bars(axes[0, 1])[:, 1:], 100 * TABLE[["success_low", "success_high"]].to_numpy())
    assert [t.get_text().replace("\n", " ") for t in axes[0, 1].get_xticklabels()] == TABLE.setting.tolist()
    assert max(len(line) for t in axes[0, 1].get_xticklabels() for line in t.get_text().split("\n")) <= 22


def test_a_hue_gives_one_labelled_series_each():
    _, axes = plots.panels(1, title="t")
    plots.by_setting(axes[0, 0], TABLE, "norm", "success", hue="layer", hue_format="layer {}")
    axes[0, 0].legend()
    assert [t.get_text() for t in axes[0, 0].get_legend().get_texts()] == ["layer 6", "layer 14"]
    assert len(axes[0, 0].containers) == 2


def test_category_positions_are_where_by_setting_draws_each_series():
    table = TABLE.assign(batch=[1, 32, 1])
    _, axes = plots.panels(1, title="t")
    plots.by_setting(axes[0, 0], table, "setting", "success", hue="batch")
    at = plots.category_positions(table, "setting", hue="batch")
    drawn = sorted(x for x, _, _ in _bars(axes[0, 0]))
    np.testing.assert_allclose(sorted(at), drawn)
    np.testing.assert_allclose(at, [-0.12, 1.12, 1.88])  # batch 1 left of its category, batch 32 right
    np.testing.assert_allclose(plots.category_positions(TABLE, "norm"), TABLE.norm)


def test_a_plain_log_axis_labels_only_the_given_values():
    _, axes = plots.panels(1, title="t")
    axes[0, 0].plot([0.5, 8.0], [1, 2])
    plots.plain_log_axis(axes[0, 0], [0.5, 1.0, 3.33848, 8.0])
    axes[0, 0].figure.canvas.draw()
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == ["0.5", "1", "3.34", "8"]
    assert not axes[0, 0].xaxis.get_minor_ticks() or not any(
        t.label1.get_text() for t in axes[0, 0].xaxis.get_minor_ticks()
    )


@pytest.mark.parametrize("share", [True, False])
def test_a_grid_heatmap_holds_every_cell(share):
    grid = pd.DataFrame({"layer": [2, 2, 6, 6], "norm": [1.0, 3.0, 1.0, 3.0], "value": [0.1, 0.2, 0.3, 0.4]})
    _, axes = plots.panels(1, title="t")
    plots.grid_heatmap(axes[0, 0], grid, index="layer", columns="norm", values="value", label="v", share=share)
    texts = sorted(t.get_text() for t in axes[0, 0].texts)
    assert texts == ["0.10", "0.20", "0.30", "0.40"]
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == ["1", "3"]


def test_paired_differences_draw_each_comparison_against_zero():
    table = pd.DataFrame({"comparison": ["ActAdd − unsteered", "ActAdd − prompting"], "value": [0.1, -0.05],
                          "low": [0.02, -0.1], "high": [0.2, 0.01], "group": ["a", "a"]})  # fmt: skip
    _, axes = plots.panels(1, title="t")
    plots.paired_differences(axes[0, 0], table, label="pts", title="d", scale=100)
    np.testing.assert_allclose(sorted(_horizontal_bars(axes[0, 0])[:, 1]), sorted(100 * table.low))
    assert any(np.allclose(line.get_xdata(), 0) for line in axes[0, 0].get_lines())  # the zero line
    assert [t.get_text() for t in axes[0, 0].get_yticklabels()] == ["ActAdd − unsteered", "ActAdd − prompting"]


def test_overlapping_tick_labels_are_found_and_a_horizontal_panel_has_none():
    names = [f"mean difference at setting {i} of a long grid" for i in range(8)]
    table = pd.DataFrame({"setting": names, "v": np.linspace(0, 1, 8), "v_low": 0.0, "v_high": 1.0})
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.errorbar(range(8), table.v, fmt="o")
    ax.set_xticks(range(8), names)  # eight long labels under one narrow panel: drawn over one another
    assert plots.overlapping_tick_labels(fig)
    fig, axes = plots.panels(1, title="t", panel=(6, 5))
    plots.by_setting(axes[0, 0], table, "setting", "v", horizontal=True)
    assert plots.overlapping_tick_labels(fig) == []
    assert axes[0, 0].get_yticklabels()[0].get_text().startswith("mean difference at")


@pytest.mark.usefixtures("plot_settings_restored")  # a Study sets seaborn's theme
def test_a_study_refuses_a_figure_with_overlapping_labels_when_strict(tmp_path, monkeypatch):
    from actadd.studies.lifecycle.study import STRICT_FIGURES, Study

    study = Study("x", {"results_dir": str(tmp_path), "seed": 0})
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_xticks(range(6), [f"a long tick label {i}" for i in range(6)])
    with pytest.warns(UserWarning, match="tick labels drawn over one another"):
        study.figure(fig, "crowded")
    monkeypatch.setenv(STRICT_FIGURES, "1")
    with pytest.raises(ValueError, match="wrap, rotate or turn the panel horizontal"):
        study.figure(fig, "crowded")


def test_steerability_figure_draws_the_same_jitter_each_time_and_leaves_numpys_generator_alone():
    table = pd.DataFrame({"unsteered": np.linspace(0, 1, 40), "ActAdd": np.linspace(1, 0, 40)})
    result = {"negative→positive": comparison.steerability(table)}
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    offsets = []
    for _ in range(2):
        fig = figures.steerability_figure(result, label="change", title="steerability")
        offsets.append(np.concatenate([c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())]))
        plt.close(fig)
    assert len(offsets[0]) == 40 and np.array_equal(offsets[0], offsets[1])
    assert np.ptp(offsets[0][:, 0]) > 0.1  # jittered, not all on the category's line
    assert np.array_equal(np.random.get_state()[1], before)
