"""Robustness heatmaps for every pair of hyperparameters a study swept.

A study may vary the learning rate, beta1, beta2, AdamRAG's extrapolation coefficient gamma and the
weight decay. :func:`swept_pairs` lists the pairs that some optimizer varied in both coordinates
(lr x beta1, lr x beta2, beta1 x beta2, lr x gamma, lr x weight decay, ...) and
:func:`pair_heatmaps` draws one figure per pair: one panel per optimizer that has both
hyperparameters, all panels on one colour scale. Each cell is the best point over the hyperparameters
outside the pair, each point the mean over seeds (the figure says which); cells within the
optimizer's tolerance threshold are outlined. Continuous samples (random/qmc) are binned first, in
half decades of lr, of 1 - beta and of the weight decay.
"""

from __future__ import annotations

import math
from typing import Mapping

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sensitivity.catalog import OPTIMIZERS
from sensitivity.report import style
from sensitivity.report.analysis import StudyAnalysis
from sensitivity.report.region import PAIR_AXES
from sensitivity.report.style import AXIS_LABELS

def axis_label(hp: str, optimizer: str, lr_label: str = "learning rate") -> str:
    """The axis label of ``hp`` for one optimizer: ``"beta1 (momentum)"`` where the catalog's meaning is short."""
    if hp == "lr":
        return lr_label
    info = OPTIMIZERS.get(optimizer)
    meaning = getattr(info, f"{hp}_meaning", "") if info is not None else ""
    if meaning and len(meaning) <= 20 and not meaning.startswith("("):
        return f"{hp} ({meaning})"
    return AXIS_LABELS[hp]


def _tick(hp: str, v: float) -> str:
    return style.format_lr(v) if hp in ("lr", "weight_decay") and v > 0 else f"{v:g}"


def _others_text(analysis: StudyAnalysis, x: str, y: str) -> str:
    others = [h for h in analysis.swept_axes if h not in (x, y)]
    seeds = analysis.n_seeds
    seed_part = f"mean over {seeds} seeds" if seeds > 1 else "1 seed"
    if not others:
        return seed_part
    return "best over " + "/".join(AXIS_LABELS[h] for h in others) + f", {seed_part}"


def pair_heatmaps(
    analysis: StudyAnalysis,
    x: str,
    y: str,
    *,
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
    lr_label: str = "learning rate",
) -> Figure:
    """One ``x`` x ``y`` heatmap per optimizer that has both hyperparameters, on one colour scale.

    Args:
        analysis: the study's analysis (its cells of the pair, metric and tolerance thresholds).
        x, y: a swept pair of the analysis (:attr:`~sensitivity.report.analysis.StudyAnalysis.pairs`,
            names from :data:`~sensitivity.report.region.PAIR_AXES`; columns, rows).
        thresholds: optimizer -> tolerance threshold (metric units); cells within it (and not all
            diverged) are outlined. None: the analysis's improvement thresholds
            (:attr:`~sensitivity.report.analysis.StudyAnalysis.tolerance`).
        title: first line of the title.
        lr_label: the label of a learning-rate axis (``"effective learning rate"`` on that axis).

    Cells hold the final metric of the best point over the hyperparameters outside the pair, each
    point averaged over seeds; values are annotated; cells where every run diverged are hatched
    and marked "div", cells where some diverged carry "*"; grid cells without a completed trial
    are grey. The colour scale (``vmin``/``vmax``; logarithmic for a positive minimised metric
    spanning more than a factor 3) is shared by every panel, bright = better. A panel's title gives
    its best cell, or, for an optimizer in
    :attr:`~sensitivity.report.analysis.StudyAnalysis.never_improved`, says that it never improved
    on its initial value (as the findings do).

    Raises:
        ValueError: ``x`` or ``y`` unknown or equal, or not a swept pair of the analysis.
    """
    if x not in PAIR_AXES or y not in PAIR_AXES or x == y:
        raise ValueError(f"x and y must be two different names from {PAIR_AXES}, got {x!r}, {y!r}")
    metric = analysis.settings.metric
    hib = analysis.settings.higher_is_better
    if (x, y) not in analysis.heatmap_cells:
        raise ValueError(f"{x} x {y} is not a swept pair of this study; swept pairs: {list(analysis.pairs)}")
    if thresholds is None:
        thresholds = analysis.tolerance["tolerance_threshold"].to_dict()
    drawn = analysis.heatmap_cells[(x, y)]
    grid, notes = drawn.cells, drawn.notes
    names = [n for n in analysis.optimizers if n in set(grid["optimizer"])]
    labels = {n: (axis_label(x, n, lr_label), axis_label(y, n, lr_label)) for n in names}  # x and y axis titles
    display = style.literal_names(analysis.display)
    norm = style.heatmap_norm(grid["value"].to_numpy(float) if not grid.empty else np.array([]), higher_is_better=hib)
    cmap = matplotlib.colormaps["viridis" if hib else "viridis_r"].with_extremes(bad="#cfcfcf")
    n = max(len(names), 1)
    ncols = n if n <= 3 else math.ceil(n / 2)
    nrows = math.ceil(n / ncols)
    max_cols = max((grid[grid["optimizer"] == nm][x].nunique() for nm in names), default=1)
    with style.style(), matplotlib.rc_context({"axes.grid": False}):
        width = max(4.2, 0.85 * max_cols + 1.6) * ncols + 1.2
        fig = style.new_figure(figsize=(max(width, 10.0), 3.3 * nrows + 1.4))  # wide enough for the title
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        image = None
        for ax, name in zip(axes, names):
            g = grid[grid["optimizer"] == name]
            xs = np.sort(g[x].unique())
            ys = np.sort(g[y].unique())
            mat = np.full((len(ys), len(xs)), np.nan)
            div = np.zeros_like(mat)
            seeds = np.ones_like(mat)
            ndiv = np.zeros_like(mat)
            for r in g.itertuples(index=False):
                i, j = int(np.searchsorted(ys, getattr(r, y))), int(np.searchsorted(xs, getattr(r, x)))
                mat[i, j], div[i, j] = r.value, r.cell_diverged
                seeds[i, j], ndiv[i, j] = r.n_seeds, r.n_diverged
            image = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, norm=norm, aspect="auto",
                              origin="lower", interpolation="nearest")
            limit = (thresholds or {}).get(name, math.nan)
            for i in range(mat.shape[0]):
                for j in range(mat.shape[1]):
                    v = mat[i, j]
                    if not np.isfinite(v):
                        continue
                    text = f"{v:.3g}"
                    if div[i, j] >= 1:
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xxx",
                                               edgecolor="#c0392b", lw=0))
                        text = f"div\n{v:.3g}"
                    elif div[i, j] > 0:
                        text += "*"
                    within = math.isfinite(limit) and ndiv[i, j] < seeds[i, j] and (
                        v >= limit if hib else v <= limit)
                    if within:
                        ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False,
                                               edgecolor="white", lw=2.0))
                    ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                            color=style.text_color(cmap(norm(v))))
            ax.set_xticks(range(len(xs)), [_tick(x, v) for v in xs], rotation=45, ha="right")
            ax.set_yticks(range(len(ys)), [_tick(y, v) for v in ys])
            ax.set_xlabel(labels[name][0])
            ax.set_ylabel(labels[name][1])
            if name in analysis.never_improved:  # as the findings say it: no best to show
                ax.set_title(f"{display.get(name, name)}: never improved on its initial value")
            elif name in drawn.best.index:
                b = drawn.best.loc[name]
                where = f"{x} {_tick(x, b[x])}, {y} {_tick(y, b[y])}"
                ax.set_title(f"{display.get(name, name)}: best {b['value']:.3g} at {where}")
            else:
                ax.set_title(display.get(name, name))
        for ax in axes[len(names):]:
            ax.set_visible(False)
        if image is not None:
            cbar = fig.colorbar(image, ax=list(axes[: len(names)]), shrink=0.9, pad=0.02)
            cbar.set_label(f"final {style.metric_axis_label(metric, analysis.settings)} ({'higher' if hib else 'lower'} is better)")
            if isinstance(norm, mcolors.LogNorm):
                style.plain_log_labels(cbar.ax.yaxis, [norm.vmin, norm.vmax])
        pair = f"{AXIS_LABELS[x]} x {AXIS_LABELS[y]}"
        head = style.literal_text(title) if title else f"Robustness: final {style.metric_words(metric, analysis.settings)} over {pair}, one colour scale"
        extra = "; ".join(notes)
        outline = "; white outline: within tolerance" if thresholds else ""
        style.suptitle(fig, f"{head}\neach cell: {_others_text(analysis, x, y)}{'; ' + extra if extra else ''}\n"
                     f"hatched 'div': all runs diverged; *: some diverged; grey: no run{outline}")
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig
