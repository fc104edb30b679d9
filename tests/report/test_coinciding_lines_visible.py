"""Where the lines of several optimizers lie exactly on each other, every one of them still shows.

Performance profiles are step functions whose values are shares k / T of the tasks: with two tasks,
AdamRAG's step lay exactly under Adam's and could not be seen. Every figure with one line per
optimizer gives each optimizer its own dash pattern (style.optimizer_lines), the solid one lowest, so
that a line under one or two others shows in their gaps; the profiles, where any number coincide by
construction, draw the lines side by side (style.side_by_side). Checked on the rendered image: each
optimizer's own colour must be on screen in the panel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analyze, compare_figures, figures, style
from tests.helpers.trial_frames import trials_frame

OPTIMIZERS = ["adamrag", "adam", "nag", "lion", "adamw", "sgd"]


def _pixels(fig, ax, color) -> int:
    """How many pixels inside ``ax`` have ``color`` (within a small tolerance), at the saved resolution."""
    fig.set_dpi(style.DPI)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    x0, y0, x1, y1 = (int(round(v)) for v in ax.bbox.extents)
    height = image.shape[0]
    panel = image[height - y1:height - y0, x0:x1]
    return int((np.abs(panel - np.asarray(color[:3])).max(axis=-1) < 0.04).sum())


def _same_profiles(n: int) -> dict[str, pd.DataFrame]:
    """Two figures of merit on which ``n`` optimizers have the same profile: 1/3 of the tasks at tau 1,
    2/3 from 1.5, all from 3 (every step of every optimizer lies on the others')."""
    tau = np.geomspace(1.0, 6.0, 200)
    rho = np.where(tau >= 3, 1.0, np.where(tau >= 1.5, 2 / 3, 1 / 3))
    same = pd.DataFrame({name: rho for name in OPTIMIZERS[:n]}, index=pd.Index(tau, name="tau"))
    return {"tolerance_width_decades": same, "lr_sensitivity": same}


def _shown(fig, ax, names) -> dict[str, float]:
    """Each optimizer's pixels in ``ax`` as a share of the most any optimizer has there."""
    colors = style.optimizer_colors(names)
    counts = {name: _pixels(fig, ax, colors[name]) for name in names}
    return {name: c / max(counts.values()) for name, c in counts.items()}


@pytest.mark.parametrize("n", [2, 4, 6])
def test_every_step_of_a_performance_profile_shows_where_all_coincide(n):
    names = OPTIMIZERS[:n]
    fig = compare_figures.performance_profile_figure(_same_profiles(n))
    for ax in fig.axes[:2]:
        shown = _shown(fig, ax, names)
        # each as visible as a dotted line is next to a solid one (0.4), not hidden under the others (0)
        assert min(shown.values()) > 0.25, shown
    # the legend tells them apart by pattern as well as colour; the title says the lines are moved
    handles = fig.legends[0].legend_handles
    assert len({(h.get_linestyle(), tuple(h._dash_pattern[1] or ())) for h in handles}) == n
    assert "side by side" in fig.get_suptitle()
    # and still read as the profile: the axes span every tau, each line drawn within its shift of the data
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert low <= 1.0 and high >= 6.0
    for line in ax.get_lines():
        drawn = line.get_transform().transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        exact = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        shift = (n - 1) / 2 * compare_figures.PROFILE_SPACING / 72 * fig.dpi
        assert np.abs(drawn - exact).max() <= shift + 1e-6


def test_every_optimizer_line_figure_shows_lines_that_coincide():
    """Adam and AdamW with the same result at every point: each line figure shows both."""
    points = [{"lr": lr, "beta1": b1} for lr in np.logspace(-4, -1, 4) for b1 in (0.8, 0.9)]
    values = [0.3 + 0.2 * abs(i // 2 - 1.5) + 0.01 * (i % 2) for i in range(len(points))]
    trials = pd.concat([trials_frame(points, values, optimizer=name, initial=2.3) for name in ("adam", "adamw")],
                       ignore_index=True)
    analysis = analyze(trials, "val_loss", uncertainty=False)
    made = {
        "lr sensitivity": figures.lr_sensitivity_figure(analysis, show_tolerance=False),
        "relative performance": figures.relative_performance_figure(analysis),
        "expected best": figures.expected_best_figure(analysis.expected_best, "val_loss"),
        "lr curves of every task": compare_figures.lr_curve_grid_figure([("a", analysis), ("b", analysis)]),
    }
    for what, fig in made.items():
        shown = _shown(fig, fig.axes[0], ["adam", "adamw"])
        assert min(shown.values()) > 0.25, (what, shown)
