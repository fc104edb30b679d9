"""The figures across studies (``adamrag-sens compare``), drawn from each study's
:class:`~sensitivity.report.analysis.StudyAnalysis` and the performance profiles
(:func:`sensitivity.report.metrics.performance_profile`), headless.

* :func:`performance_profile_figure` -- Dolan-More performance profiles, one panel per figure of merit.
* :func:`lr_curve_grid_figure` -- the lr curve of every task in one grid.

Both return a :class:`matplotlib.figure.Figure` with an Agg canvas attached, as
:mod:`sensitivity.report.figures` does for one study; the shared look is :mod:`sensitivity.report.style`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sensitivity.report import metrics, style
from sensitivity.report.analysis import StudyAnalysis

PROFILE_SPACING = 1.5
"""Points between neighbouring optimizers' profile lines (and their width): coinciding steps side by side."""


def performance_profile_figure(profiles: dict[str, pd.DataFrame], *, labels: dict[str, str] | None = None,
                               display: dict[str, str] | None = None, title: str | None = None) -> Figure:
    """Dolan-More performance profiles, one panel per figure of merit, one step line per optimizer.

    Args:
        profiles: figure name -> :func:`~sensitivity.report.metrics.performance_profile` frame (index
            tau, one column per optimizer, values in [0, 1]).
        labels: figure name -> panel title (e.g. "tolerance width (higher is better)").
        display: optimizer name -> display name.

    rho_s(tau) is the share of tasks on which optimizer s is within a factor tau of the best one; a
    line that reaches 1 at tau = 1 is the best on every task. Steps of several optimizers often lie
    on each other (every rho is a multiple of 1 / tasks, and ties share a tau): each optimizer has its
    own dash pattern (:func:`sensitivity.report.style.optimizer_lines`) and is drawn shifted by a
    fixed :data:`PROFILE_SPACING` points per optimizer (:func:`sensitivity.report.style.side_by_side`),
    so that coinciding steps run side by side, all visible, for any number of optimizers; the title
    says how far a line is moved.
    """
    labels = style.literal_names(labels)
    display = style.literal_names(display)
    names = metrics.optimizer_order({c for p in profiles.values() for c in p.columns})
    lines = style.optimizer_lines(names, lw=PROFILE_SPACING)  # as wide as the spacing: side by side, not over
    n = max(len(profiles), 1)
    ncols = n if n <= 2 else 2
    nrows = math.ceil(n / ncols)
    with style.style():
        fig = style.new_figure(figsize=(4.6 * ncols + 0.8, 3.5 * nrows + 1.2))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        for ax, (key, prof) in zip(axes, profiles.items()):
            for i, name in enumerate(names):
                if name not in prof:
                    continue
                ax.step(prof.index, prof[name], where="post", label=display.get(name, name),
                        transform=style.side_by_side(ax, i, len(names), PROFILE_SPACING), **lines[name])
                ax.update_datalim(np.column_stack([prof.index, prof[name]]))  # a shifted line does not
            ax.autoscale_view()  # widen the axes' data limits itself
            ax.set_xscale("log")
            style.plain_log_labels(ax.xaxis, prof.index)
            ax.set_ylim(-0.05, 1.05)  # room for the lines shifted side by side at 0 and 1
            ax.set_xlabel("tau (ratio to the best optimizer on a task)")
            ax.set_ylabel("share of tasks within tau")
            ax.set_title(labels.get(key, style.literal_text(key)))
        for ax in axes[len(profiles):]:
            ax.set_visible(False)
        handles, texts = axes[0].get_legend_handles_labels()
        style.legend_below(fig, handles, texts)
        style.suptitle(fig, (style.literal_text(title) if title else "Performance profiles across tasks (Dolan & More 2002)")
                     + "\nrho(tau): share of tasks on which the optimizer is within a factor tau of the best"
                     + (f"\nlines shifted up to {(len(names) - 1) / 2 * PROFILE_SPACING:.2g} pt right and up,"
                        " so that equal steps lie side by side" if len(names) > 1 else ""))
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig


def lr_curve_grid_figure(panels: Sequence[tuple[str, StudyAnalysis]], *, lr_label: str = "learning rate",
                         title: str | None = None) -> Figure:
    """The lr curve of every task in one grid: one panel per (label, analysis), one line per optimizer.

    Each panel is :func:`lr_sensitivity_figure`'s curve (mean over seeds, band min-max over seeds,
    diverged points crossed) on that task's own metric and scale; colours are the same optimizer in
    every panel. What a point is (:meth:`~sensitivity.report.analysis.StudyAnalysis.aggregation_words`:
    best over the other hyperparameters, or one configuration where they set the lr shown) is said in
    the title, or in each panel's title where the tasks differ.
    """
    names = metrics.optimizer_order({o for _, a in panels for o in a.complete["optimizer"]})
    colors = style.optimizer_colors(names)
    lines = style.optimizer_lines(names, lw=1.6)  # one pattern per optimizer in every panel
    display: dict[str, str] = {}
    for _, a in panels:
        display.update(style.literal_names(a.display))
    # what a point is, per task (seeds apart): in the title when every task says the same, else in each panel's title
    words = [analysis.aggregation_words(seeds=False) for _, analysis in panels]
    shared = len(set(words)) <= 1
    lead = ("" if not words or not words[0] else words[0] + ("; " if ";" in words[0] else ", ")) if shared else "as its panel says, "
    n = max(len(panels), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    with style.style():
        fig = style.new_figure(figsize=(max(4.6 * ncols + 0.8, 9.0), 3.6 * nrows + 1.3))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        any_diverged = False
        for i, (ax, (label, analysis)) in enumerate(zip(axes, panels)):
            metric, settings = analysis.settings.metric, analysis.settings
            curve = analysis.curve
            any_diverged |= bool((curve["n_diverged"] > 0).any())
            for name in metrics.optimizer_order(curve["optimizer"]):
                g = curve[curve["optimizer"] == name].sort_values("lr")
                c = colors[name]
                ax.plot(g["lr"], g["value"], marker="o", ms=3, label=display.get(name, name), **lines[name])
                if (g["n_seeds"] > 1).any():
                    ax.fill_between(g["lr"], g["value_min"], g["value_max"], color=c, alpha=0.2, lw=0)
                div = g[g["n_diverged"] > 0]
                if not div.empty:
                    ax.scatter(div["lr"], div["value"], marker="x", s=45, color=c, linewidths=1.8, zorder=4)
            ax.set_xscale("log")
            if not metrics.higher_is_better(metric) and style.log_ok(np.r_[curve["value"], curve["initial"]]):
                ax.set_yscale("log")
                style.plain_log_labels(ax.yaxis, np.r_[curve["value"], curve["initial"]])
            ax.set_xlabel(lr_label)
            ax.set_ylabel(f"final {style.metric_axis_label(metric, settings)}")
            ax.set_title(style.literal_text(label) + ("" if shared or not words[i] else f"\neach point: {words[i]}"))
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        handles = [Line2D([], [], **lines[nm]) for nm in names]
        labels = [display.get(nm, nm) for nm in names]
        if any_diverged:
            handles.append(Line2D([], [], marker="x", ls="", color="0.3", ms=7, mew=2))
            labels.append(style.DIVERGED)
        style.legend_below(fig, handles, labels)
        style.suptitle(fig, (style.literal_text(title) if title else "Learning-rate sensitivity of every task")
                     + f"\neach point: {lead}mean over seeds; band: min-max over seeds")
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig
