"""The loss curves draw, for every line, the per-epoch mean of the runs its configuration table row
averaged: the grouping done once for all lines gives the same numbers as filtering the trials for
each line, and the figure draws exactly those numbers, broken where a mean is NaN."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from sensitivity.records import Metric, declare_metrics
from sensitivity.report import analyze, figures, metrics
from tests.helpers.trial_frames import INITIAL, trials_frame

EPOCHS = 4
LRS = [1e-9, 2e-9, 1e-3, 1e-2, 1e-1]  # 1e-9 and 2e-9 are np.isclose (atol 1e-8): each line holds both
BETAS = [0.8, 0.9]
SEEDS = (0, 1, 2)


def _per_line_reference(lines: pd.DataFrame, done: pd.DataFrame, curves: pd.DataFrame, columns) -> dict:
    """Each line's means as the figure computed them one line at a time (np.isclose on every column)."""
    out = {}
    for label, row in zip(lines.index, lines.itertuples(index=False)):
        mask = (done["optimizer"] == row.optimizer) & np.isclose(done["lr"], row.lr)
        for hp in metrics.HP_COLUMNS:
            v = getattr(row, hp)
            mask &= done[hp].isna() if math.isnan(v) else np.isclose(done[hp], v)
        c = curves[curves["trial"].isin(done.loc[mask, "trial"])]
        if not c.empty:
            out[label] = c.groupby("epoch")[list(columns)].mean()
    return out


@pytest.fixture(scope="module")
def study():
    """Two optimizers (nag without weight decay: NaN), three seeds, one diverged run (NaN after it
    stopped), NaN training losses at epoch 0 and a NaN validation loss in the middle of one run."""
    rng = np.random.default_rng(3)
    frames = []
    for name, wd in (("adam", 0.0), ("nag", math.nan)):
        points = [{"lr": lr, "beta1": b1, "weight_decay": wd} for lr in LRS for b1 in BETAS for _ in SEEDS]
        seeds = [s for _ in LRS for _ in BETAS for s in SEEDS]
        values = rng.uniform(1.0, 5.0, len(points))
        frames.append(trials_frame(points, values, optimizer=name, seeds=seeds))
    trials = pd.concat(frames, ignore_index=True)
    trials["trial"] = np.arange(len(trials))
    diverged = (trials["optimizer"] == "adam") & (trials["lr"] == 1e-1) & (trials["seed"] == 1)
    trials.loc[diverged, "diverged"] = True
    rows = []
    for t in trials.itertuples(index=False):
        for epoch in range(EPOCHS + 1):
            val = INITIAL if epoch == 0 else float(rng.uniform(0.5, 50.0))
            train = math.nan if epoch == 0 else float(rng.uniform(0.5, 50.0))
            if t.diverged and epoch >= 2:  # the run stopped: nothing stored after
                val = train = math.nan
            rows.append({"trial": t.trial, "epoch": epoch, "train_loss": train, "val_loss": val})
    curves = pd.DataFrame(rows)
    # one adam run misses epoch 3: the mean there is over the other seeds
    curves.loc[(curves["trial"] == 0) & (curves["epoch"] == 3), "val_loss"] = math.nan
    # the last nag line's runs all miss epoch 2: its mean there is NaN and its line is broken
    last = trials[(trials["optimizer"] == "nag") & (trials["lr"] == LRS[-1])]["trial"]
    curves.loc[curves["trial"].isin(last) & (curves["epoch"] == 2), "val_loss"] = math.nan
    return analyze(trials, "val_loss"), curves


def test_the_grouped_means_are_the_per_line_means_bit_for_bit(study):
    analysis, curves = study
    columns = ["train_loss", "val_loss"]
    lines = analysis.loss_lines
    expected = _per_line_reference(lines, analysis.nominal, curves, columns)
    got = figures._line_means(lines, analysis.nominal, curves, columns)
    assert sorted(got.index.get_level_values("line").unique()) == sorted(expected)
    assert len(expected) == len(lines) == 2 * len(LRS)
    for label, mean in expected.items():
        pd.testing.assert_frame_equal(got.loc[label], mean, check_exact=True)
    # the near-equal lrs pool their runs as np.isclose pools them: both lines are the same mean
    tiny = lines[(lines["optimizer"] == "adam") & (lines["lr"] < 1e-8)].index
    pd.testing.assert_frame_equal(got.loc[tiny[0]], got.loc[tiny[1]], check_exact=True)
    # a diverged run's missing epochs are skipped, not counted: the mean is over the two other seeds
    top = lines[(lines["optimizer"] == "adam") & (lines["lr"] == 1e-1)]
    assert top["n_diverged"].iloc[0] == 1
    runs = analysis.nominal[(analysis.nominal["optimizer"] == "adam") & (analysis.nominal["lr"] == 1e-1)
                            & (analysis.nominal["beta1"] == top["beta1"].iloc[0])]
    kept = curves[curves["trial"].isin(runs["trial"][~runs["diverged"].astype(bool)]) & (curves["epoch"] == 3)]
    assert got.loc[(top.index[0], 3), "val_loss"] == pytest.approx(kept["val_loss"].mean())


def _panel(fig, title_start: str):
    return next(ax for ax in fig.axes if ax.get_title().startswith(title_start))


def test_the_figure_draws_the_means_with_nan_gaps_and_a_cross_at_a_diverged_end(study):
    analysis, curves = study
    lines = analysis.loss_lines
    expected = _per_line_reference(lines, analysis.nominal, curves, ["train_loss", "val_loss"])
    fig = figures.loss_curves_figure(analysis, curves)
    for name in ("adam", "nag"):
        ax = _panel(fig, name)
        solid, dashed = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert solid.get_linestyle()[0][1] is None and dashed.get_linestyle()[0][1] is not None
        mine = lines[lines["optimizer"] == name].sort_values("lr")
        want_solid, want_dashed = [], []
        for label in mine.index:
            for column, want in (("val_loss", want_solid), ("train_loss", want_dashed)):
                y = expected[label][column].to_numpy(float)
                x = expected[label].index.to_numpy(float)
                ok = np.isfinite(y)
                # consecutive finite epochs form one drawn piece; a NaN ends it
                starts = np.flatnonzero(ok & ~np.r_[False, ok[:-1]])
                for s in starts:
                    e = s
                    while e + 1 < len(y) and ok[e + 1]:
                        e += 1
                    want.append(np.column_stack([x[s:e + 1], y[s:e + 1]]))
        for drawn, want in ((solid, want_solid), (dashed, want_dashed)):
            segments = drawn.get_segments()
            assert len(segments) == len(want)
            for seg, w in zip(segments, want):
                np.testing.assert_array_equal(seg, w)
    nag = _panel(fig, "nag")
    assert len(nag.collections[0].get_segments()) == len(LRS) + 1  # the last line broken in two
    crosses = [c for c in _panel(fig, "adam").collections if isinstance(c, PathCollection)]
    assert len(crosses) == 1
    label = lines[(lines["optimizer"] == "adam") & (lines["lr"] == 1e-1)].index[0]
    last = expected[label]["val_loss"].dropna()
    np.testing.assert_array_equal(crosses[0].get_offsets(), [[last.index[-1], last.iloc[-1]]])
    assert "diverged (run stopped)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_one_epoch_training_losses_are_drawn_as_dashes(study):
    analysis, curves = study
    one = curves[curves["epoch"] <= 1]
    fig = figures.loss_curves_figure(analysis, one)
    ax = _panel(fig, "nag")
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(marks) == 1  # nag never diverged: only the one-epoch dashes
    offsets = marks[0].get_offsets()
    assert len(offsets) == len(LRS) and set(offsets[:, 0]) == {1.0}


def test_a_metric_without_validation_loss_is_drawn_on_a_linear_autoscaled_axis():
    declare_metrics((Metric("episode_return", "maximize", "reward/episode", "mean evaluation return"),))
    lrs = [1e-3, 1e-2]
    points = [{"lr": lr} for lr in lrs for _ in SEEDS]
    trials = trials_frame(points, [0.0] * len(points), seeds=[s for _ in lrs for s in SEEDS])
    trials = trials.rename(columns={"initial_val_loss": "initial_episode_return", "final_val_loss": "final_episode_return"})
    trials["initial_episode_return"] = 10.0
    trials["final_episode_return"] = [100.0, 120.0, 110.0, 300.0, 280.0, 320.0]
    curves = pd.DataFrame([{"trial": t, "epoch": e, "episode_return": 10.0 + 50.0 * e * (1 + (t >= 3))}
                           for t in range(len(trials)) for e in range(3)])
    fig = figures.loss_curves_figure(analyze(trials, "episode_return"), curves)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(collections) == 1  # no training loss
    lo, hi = ax.get_ylim()
    assert lo <= 10.0 and hi >= 210.0  # the view covers every mean (autoscaled to the collection)
    assert ax.get_xlim()[0] <= 0.0 and ax.get_xlim()[1] >= 2.0
