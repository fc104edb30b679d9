"""A long metric label or title (a user task's metric, cartpole's 'mean evaluation return
(reward/episode)') is wrapped so that it stays inside the figure instead of running off its edge."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sensitivity.records import Metric, declare_metrics
from sensitivity.report import figures, style
from sensitivity.report.expected_best import expected_best_table


def _inside(fig) -> bool:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [fig._suptitle] + [ax.yaxis.label for ax in fig.axes] + [ax.xaxis.label for ax in fig.axes]
    for text in texts:
        if text is None or not text.get_text():
            continue
        ext = text.get_window_extent(renderer)
        if ext.x0 < box.x0 - 1 or ext.x1 > box.x1 + 1 or ext.y0 < box.y0 - 1 or ext.y1 > box.y1 + 1:
            return False
    return True


def test_a_long_metric_label_and_title_stay_inside_the_expected_best_figure():
    declare_metrics((Metric("long_return", "maximize", "reward/episode",
                            "final mean evaluation return over ten greedy episodes of the policy"),))
    rng = np.random.default_rng(0)
    values = pd.Series(rng.uniform(20, 500, 40))
    groups = pd.Series(["adam"] * 20 + ["lion"] * 20)
    table = expected_best_table(values, groups, higher_is_better=True)
    fig = figures.expected_best_figure(
        table, "long_return",
        title="a-user-task-with-a-long-name: expected best final mean evaluation return after n configurations "
              "(Dodge et al. 2019)")
    assert _inside(fig)


def test_wrapped_keeps_short_lines_and_existing_breaks():
    assert style.wrapped("short\nlines", 40) == "short\nlines"
    long = "word " * 30
    assert all(len(line) <= 40 for line in style.wrapped(long, 40).split("\n"))
