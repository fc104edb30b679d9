"""Every axis label, title and legend of a figure lies inside the image as saved, on every lr axis
and for any number of optimizers, and the title says what each point of the lr curve is on that axis.

Constrained layout makes room for an x label's height, not its width: the effective axis's two-line
label ("effective learning rate\\n(steady-state step: ...)"), wider than its axes, ran past the left
edge of lr_sensitivity.png. Extents are measured with the figure's renderer at the resolution the
report saves at (style.DPI).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analyze, compare_figures, figures, heatmaps, importance_figure, metrics, prose, style
from sensitivity.report.effective_lr import LR_AXES
from tests.helpers.trial_frames import trials_frame

OPTIMIZERS = ["adamrag", "adam", "nag", "lion", "adamw", "sgd"]  # catalog order
DISPLAY = {"adamrag": "AdamRAG", "adam": "Adam", "nag": "NAG", "lion": "Lion", "adamw": "AdamW", "sgd": "SGD"}


def _study(n: int) -> pd.DataFrame:
    """The first ``n`` optimizers on 6 lrs x beta1 in {0.8, 0.9, 0.95} (AdamRAG at gamma 0.5): a bowl in log lr."""
    frames = []
    for name in OPTIMIZERS[:n]:
        points, values = [], []
        for lr in np.logspace(-5, 0, 6):
            for beta1 in (0.8, 0.9, 0.95):
                points.append({"lr": lr, "beta1": beta1, **({"gamma": 0.5} if name == "adamrag" else {})})
                values.append(0.2 + 0.3 * (math.log10(lr) + 2.5) ** 2 + (beta1 - 0.9) ** 2)
        frame = trials_frame(points, values, optimizer=name, initial=2.3)
        frames.append(frame.assign(optimizer_display=DISPLAY[name]))
    return pd.concat(frames, ignore_index=True)


def _curves(trials: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch losses of every trial: from L0 at epoch 0 to its final value at epoch 3."""
    rows = []
    for t in trials.itertuples(index=False):
        for epoch in range(4):
            val = 2.3 + (t.final_val_loss - 2.3) * epoch / 3
            rows.append({"trial": t.trial, "epoch": epoch, "val_loss": val,
                         "train_loss": math.nan if epoch == 0 else 0.8 * val})
    return pd.DataFrame(rows)


def _profiles(n: int) -> dict[str, pd.DataFrame]:
    """Performance profiles of ``n`` optimizers on three tasks, two figures of merit."""
    rng = np.random.default_rng(n)
    table = pd.DataFrame(rng.uniform(0.2, 2.0, (n, 3)), index=OPTIMIZERS[:n], columns=["a", "b", "c"])
    return {"tolerance_width_decades": metrics.performance_profile(table, higher_is_better=True),
            "lr_sensitivity": metrics.performance_profile(table, higher_is_better=False)}


def _outside(fig) -> list[str]:
    """What of ``fig`` the saved image would cut: every visible axes with all it draws (ticks, labels,
    titles, its legend), each figure legend and the title, measured at the saved resolution; and every
    x label or centred axes title wider than its axes (constrained layout does not make room for that)."""
    fig.set_dpi(style.DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    items = [(f"axes {ax.get_title()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes if ax.get_visible()]
    items += [("figure legend", legend.get_window_extent(renderer)) for legend in fig.legends]
    items += [("title", fig._suptitle.get_window_extent(renderer))] if fig._suptitle is not None else []
    bad = [f"{name} at {np.round(e.extents)} in {np.round(box.extents)}" for name, e in items
           if e is not None and (e.x0 < box.x0 - 0.5 or e.x1 > box.x1 + 0.5 or e.y0 < box.y0 - 0.5 or e.y1 > box.y1 + 0.5)]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for text in (ax.xaxis.label, ax.title):
            width = text.get_window_extent(renderer).width if text.get_text() else 0.0
            if width > ax.bbox.width + 0.5:
                bad.append(f"{text.get_text()!r} ({width:.0f} px) wider than its axes ({ax.bbox.width:.0f} px)")
    return bad


@pytest.fixture(scope="module")
def analyses():
    """(lr axis, number of optimizers) -> the analysis, for 1, 4 and 6 optimizers on every lr axis."""
    return {(axis, n): analyze(_study(n), "val_loss", lr_axis=axis, uncertainty=False)
            for axis in LR_AXES for n in (1, 4, 6)}


@pytest.mark.parametrize("n", [1, 4, 6])
@pytest.mark.parametrize("axis", sorted(LR_AXES))
def test_the_lr_sensitivity_figure_keeps_its_labels_inside_on_every_lr_axis(analyses, axis, n):
    fig = figures.lr_sensitivity_figure(analyses[axis, n], lr_label=LR_AXES[axis],
                                        title="digits-mlp: learning-rate sensitivity (final validation loss)")
    assert _outside(fig) == []
    assert fig.axes[0].get_xlabel().replace("\n", " ").startswith(LR_AXES[axis].split("\n")[0])


@pytest.mark.parametrize("n", [1, 6])
def test_every_figure_on_the_effective_axis_keeps_its_labels_inside(analyses, n):
    analysis = analyses["effective", n]
    made = {
        "relative performance": figures.relative_performance_figure(analysis, lr_label="effective learning rate"),
        "lr x beta1 heatmaps": heatmaps.pair_heatmaps(analysis, "lr", "beta1", lr_label="effective learning rate"),
        "expected best": figures.expected_best_figure(analysis.expected_best, "val_loss", display=analysis.display),
        "lr curves of every task": compare_figures.lr_curve_grid_figure([("digits-mlp", analysis), ("char-lm", analysis)],
                                                                lr_label=LR_AXES["effective"]),
        # on the stored lr whatever the axis: one narrow panel for one optimizer, under a legend of three entries
        "loss curves": figures.loss_curves_figure(analysis, _curves(analysis.nominal)),
        "importance": importance_figure.importance_figure(analysis.importance, display=analysis.display),
        "performance profiles": compare_figures.performance_profile_figure(
            _profiles(n), labels={"tolerance_width_decades": "tolerance width (higher is better)",
                                  "lr_sensitivity": "LR sensitivity (lower is better)"}, display=DISPLAY),
    }
    assert {name: _outside(fig) for name, fig in made.items()} == {name: [] for name in made}


def test_a_label_that_fits_is_drawn_as_written():
    fig = figures.lr_sensitivity_figure(analyze(_study(2), "val_loss", uncertainty=False), lr_label="learning rate")
    assert fig.axes[0].get_xlabel() == "learning rate"


def test_the_title_says_what_a_point_is_on_each_lr_axis(analyses):
    """On the nominal axis every point is the best over beta1 at its lr; on the effective axis
    lr / (1 - beta1) puts each of NAG's (lr, beta1) runs at its own lr, so NAG's points are single
    configurations, while AdamRAG (lr / (1 - gamma), gamma fixed), Adam and Lion still take the best over beta1."""
    nominal, effective = analyses["nominal", 4], analyses["effective", 4]
    assert nominal.aggregation_words() == "best over beta1, 1 seed"
    assert effective.aggregation_words() == "best over beta1; NAG: one lr, beta1 configuration; 1 seed"
    nag = effective.curve[effective.curve["optimizer"] == "nag"]
    assert (nag["n_points"] == 1).all()  # what the words say: no point of NAG's is a best of several
    assert (effective.curve[effective.curve["optimizer"] != "nag"]["n_points"] == 3).all()
    for analysis in (nominal, effective):
        title = figures.lr_sensitivity_figure(analysis).get_suptitle().replace("\n", " ")
        assert f"each point: {analysis.aggregation_words()}" in title
        assert analysis.aggregation_words() in prose.settings_line(analysis)
    # the loss curves are drawn per stored lr at the best beta1, on either axis
    assert effective.aggregation_words(exclude=("beta1",), nominal=True) == "1 seed"
    # the lr curves of several tasks: one wording for all in the title, or each panel's own
    grid = compare_figures.lr_curve_grid_figure([("a", effective), ("b", effective)])
    assert "each point: best over beta1; NAG: one lr, beta1 configuration; mean over seeds" in grid.get_suptitle().replace("\n", " ")
    mixed = compare_figures.lr_curve_grid_figure([("a", nominal), ("b", effective)])
    assert "as its panel says" in mixed.get_suptitle()
    assert [ax.get_title().split("\n", 1)[-1].replace("\n", " ") for ax in mixed.axes[:2]] == [
        "each point: best over beta1", "each point: best over beta1; NAG: one lr, beta1 configuration"]


def test_a_legend_below_a_narrow_figure_folds_into_rows():
    """One panel is 5.4 inches wide: six optimizers with long display names do not fit in one row."""
    long = {name: f"{shown} (library defaults otherwise)" for name, shown in DISPLAY.items()}
    fig = compare_figures.performance_profile_figure({"lr_sensitivity": _profiles(6)["lr_sensitivity"]}, display=long)
    assert _outside(fig) == []
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [long[n] for n in metrics.optimizer_order(OPTIMIZERS)]
    assert legend._ncols < 6  # in rows: one would be twice as wide as the figure
