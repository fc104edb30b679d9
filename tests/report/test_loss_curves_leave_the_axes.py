"""The loss curves are drawn unclipped on an axis cut at 1.5 x the initial value: where a curve rises
past the cut, a triangle under the top edge marks the epoch it leaves, and the report's words say so.
The cut stays where the learning curves are readable, however far one curve explodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analyze, figures, prose
from tests.helpers.trial_frames import trials_frame
from tests.report.test_labels_inside_saved_figure import _outside

L0 = 2.3
LRS = [1e-4, 1e-3, 1e-2, 1e-1]


def _panel(per_lr: dict[float, tuple[list[float], list[float]]]):
    """One optimizer (Adam, beta1 0.9): at each lr a run with these validation and training losses
    over epochs 0..n (training loss NaN at epoch 0, the initialised model)."""
    points = [{"lr": lr, "beta1": 0.9} for lr in per_lr]
    finals = [val[-1] for val, _ in per_lr.values()]
    trials = trials_frame(points, finals, optimizer="adam", initial=L0)
    rows = [{"trial": trial, "epoch": epoch, "val_loss": v, "train_loss": t}
            for trial, (val, train) in enumerate(per_lr.values())
            for epoch, (v, t) in enumerate(zip(val, [math.nan, *train]))]
    analysis = analyze(trials, "val_loss", uncertainty=False)
    return figures.loss_curves_figure(analysis, pd.DataFrame(rows)), analysis


def _marks(ax) -> list[float]:
    """The epochs of the triangles drawn in ``ax``."""
    return sorted(float(x) for c in ax.collections if c.get_paths() and _is_triangle(c)
                  for x in c.get_offsets()[:, 0])


def _is_triangle(collection) -> bool:
    from matplotlib.markers import MarkerStyle

    up = MarkerStyle("^").get_path().transformed(MarkerStyle("^").get_transform())
    drawn = collection.get_paths()[0].vertices
    return drawn.shape == up.vertices.shape and np.allclose(drawn, up.vertices)


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_curve_that_rises_above_the_axis_is_marked_where_it_leaves():
    fig, _ = _panel({
        1e-4: ([L0, 1.5, 0.8, 0.5], [1.6, 0.9, 0.4]),          # learns
        1e-3: ([L0, 0.6, 0.3, 0.2], [0.5, 0.1, 0.01]),         # learns fast; training loss to 0.01
        1e-2: ([L0, 0.9, L0 * 1.5 ** 3, 40.0], [0.8, 2.0, 30.0]),  # explodes at epoch 2
        1e-1: ([L0, 2.0, 1e6, 1e9], [1e3, 1e6, 1e9]),          # training loss starts above, validation leaves in epoch 1..2
    })
    ax = fig.axes[0]
    low, top = ax.get_ylim()
    assert top == pytest.approx(1.5 * L0)  # one exploding curve does not stretch the axis
    assert low <= 0.01 / 1.2  # the learning curves keep the rest of the range
    # validation at 1e-2: from 0.9 (epoch 1) to 1.5^3 L0 (epoch 2): crosses 1.5 L0 a third of the way in log y
    crossing = 1 + (math.log(1.5 * L0) - math.log(0.9)) / (math.log(L0 * 1.5 ** 3) - math.log(0.9))
    # training at 1e-2: from 2.0 (epoch 2) to 30 (epoch 3); at 1e-1 validation from 2.0 (1) to 1e6 (2),
    # and training above from its first point (epoch 1)
    train = 2 + (math.log(1.5 * L0) - math.log(2.0)) / (math.log(30.0) - math.log(2.0))
    fast = 1 + (math.log(1.5 * L0) - math.log(2.0)) / (math.log(1e6) - math.log(2.0))
    assert _marks(ax) == pytest.approx(sorted([crossing, train, fast, 1.0]))
    assert figures.LEFT_THE_AXES in _legend(fig)
    assert _outside(fig) == []  # its legend entry, the fourth, folds the legend of one panel into rows


def test_no_curve_leaves_no_mark_and_no_legend_entry():
    fig, _ = _panel({1e-4: ([L0, 1.5, 0.8], [1.6, 0.9]), 1e-3: ([L0, 0.6, 0.3], [0.5, 0.1])})
    assert _marks(fig.axes[0]) == [] and figures.LEFT_THE_AXES not in _legend(fig)


def test_the_reports_words_say_what_the_loss_figure_draws():
    """"Drawn unclipped" stays true with a cut axis only because the cut is marked: the report's
    definition names the cut and the mark the legend names."""
    assert "1.5 x the initial value" in figures.LEFT_THE_AXES
    words = prose.BAD_RUNS
    assert "drawn unclipped" in words and "1.5 x the initial value" in words and "triangle" in words
