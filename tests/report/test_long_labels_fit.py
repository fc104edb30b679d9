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


def _one_optimizer_analysis():
    """A study of one optimizer (AdamRAG) with two seeds: its loss-curve figure has one narrow panel."""
    import optuna

    from sensitivity.report import analyze, load_trials
    from tests.helpers.toy_studies import add

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="one")
    study.set_user_attr("task", "toy-task")
    for seed in (0, 1):
        for lr in (1e-4, 1e-3, 1e-2, 1e-1):
            for beta1 in (0.8, 0.9):
                add(study, "adamrag", lr, beta1=beta1, beta2=0.999, gamma=0.5, seed=seed)
    data = load_trials(storage, "one")
    return analyze(data.trials, "val_loss"), data.curves


def test_the_title_of_a_narrow_figure_is_broken_to_fit_it_and_a_title_that_fits_is_kept_as_written():
    analysis, curves = _one_optimizer_analysis()
    narrow = figures.loss_curves_figure(analysis, curves)
    assert narrow.get_figwidth() < 6 and _inside(narrow)
    lines = narrow.get_suptitle().split("\n")
    assert lines[0] == "Loss curves per learning rate" and len(lines) == 3  # the long second line in two
    assert " ".join(lines[1:]) == "beta1 fixed at each optimizer's best; per lr: mean over 2 seeds"
    wide = figures.lr_sensitivity_figure(analysis)
    assert _inside(wide) and wide.get_suptitle() == ("Learning-rate sensitivity: final validation loss vs lr\n"
                                                    "each point: best over beta1, mean over 2 seeds; band: min-max over seeds")


def test_a_long_user_title_on_a_narrow_figure_stays_inside_it():
    analysis, curves = _one_optimizer_analysis()
    fig = figures.loss_curves_figure(analysis, curves, title="a-user-task-with-a-long-name: loss curves per learning "
                                                              "rate of the one optimizer this study swept, $5 of compute")
    assert _inside(fig) and "$5" in fig.get_suptitle().replace("\\", "")
