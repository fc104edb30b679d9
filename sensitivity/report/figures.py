"""The report's figures, drawn from a study's :class:`~sensitivity.report.analysis.StudyAnalysis` (headless).

Each function reads what :func:`sensitivity.report.analysis.analyze` computed (lr curve, tolerance
table, relative performance, expected best) and draws it; none recomputes an analysis. It returns a
:class:`matplotlib.figure.Figure` with an Agg canvas attached (:func:`sensitivity.report.style.new_figure`);
the caller saves it, e.g. ``fig.savefig(path, dpi=style.DPI)``. The shared look is :mod:`sensitivity.report.style`.

Figures:

* :func:`lr_sensitivity_figure` -- final metric vs learning rate, one line per optimizer.
* :func:`loss_curves_figure` -- validation (and training) loss per epoch, one line per lr.
* :func:`relative_performance_figure` -- DeepOBS-style relative performance vs lr.
* :func:`expected_best_figure` -- expected best value after n random configurations (Dodge et al. 2019).

Heatmaps of every swept hyperparameter pair live in :mod:`sensitivity.report.heatmaps`, the
figures across studies (``compare``) in :mod:`sensitivity.report.compare_figures`.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation

from sensitivity.report import metrics, style
from sensitivity.report.analysis import AnalysisSettings, StudyAnalysis


# ---- lr sensitivity ---------------------------------------------------------------------------

def lr_sensitivity_figure(
    analysis: StudyAnalysis,
    *,
    show_tolerance: bool = True,
    title: str | None = None,
    lr_label: str = "learning rate",
) -> Figure:
    """Final metric vs learning rate (log x axis), one line per optimizer.

    Each point is the optimizer's :func:`~sensitivity.report.metrics.lr_curve` at that lr (the
    aggregation is stated in the title); with several seeds the line is the mean and the band
    spans min to max over seeds. Values are clipped at the initial metric (min(L, L0) for losses),
    so runs worse than their start sit on L0, and points whose runs diverged are marked with an
    ``x`` there. The initial metric (L0) is a dashed reference line. With
    ``show_tolerance`` each optimizer's tolerance interval (:mod:`sensitivity.report.tolerance`,
    improvement threshold with the analysis's tau) is shaded: the interpolated lr interval,
    from its best value to its threshold; the legend gives its width in decades.

    Args:
        analysis: the study's analysis (its lr curve, tolerance table and settings are drawn).
        lr_label: the x-axis label (``"effective learning rate ..."`` on the effective axis).
    """
    metric, settings = analysis.settings.metric, analysis.settings
    tau = analysis.settings.tau
    hib = analysis.settings.higher_is_better
    curve = analysis.curve
    names = metrics.optimizer_order(curve["optimizer"])
    colors = style.optimizer_colors(names)
    lines = style.optimizer_lines(names, zorder=3)  # each its own dashes: no curve hides another
    display = style.literal_names(analysis.display)
    widths = analysis.tolerance
    with style.style():
        fig = style.new_figure(figsize=(8.5, 4.8))
        ax = fig.add_subplot()
        for name in names:
            g = curve[curve["optimizer"] == name].sort_values("lr")
            c = colors[name]
            w = widths.loc[name, "tolerance_width_decades"] if name in widths.index else math.nan
            # an interval reaching an end of the swept range is censored: the true width may be larger
            at_least = ">= " if name in widths.index and bool(widths.loc[name, "tolerance_censored"]) else ""
            label = (f"{display.get(name, name)} (width {at_least}{w:.2f} dec)" if np.isfinite(w)
                     else f"{display.get(name, name)} (never improved)" if name in analysis.never_improved
                     else display.get(name, name))
            ax.plot(g["lr"], g["value"], marker="o", ms=4, label=label, **lines[name])
            if (g["n_seeds"] > 1).any():
                ax.fill_between(g["lr"], g["value_min"], g["value_max"], color=c, alpha=0.2, lw=0, zorder=2)
            div = g[g["n_diverged"] > 0]
            if not div.empty:
                ax.scatter(div["lr"], div["value"], marker="x", s=70, color=c, linewidths=2.2, zorder=4)
            if show_tolerance and name in widths.index and np.isfinite(w):
                row = widths.loc[name]
                lo, hi = row["tolerance_lr_low"], row["tolerance_lr_high"]
                best, edge = row["best_value"], row["tolerance_threshold"]
                span = (lo / 10 ** 0.04, hi * 10 ** 0.04) if w < 0.08 else (lo, hi)
                ax.fill_between(span, [best, best], [edge, edge], color=c, alpha=0.15, lw=0, zorder=1)
        _reference_lines(ax, curve, names, colors, display, metric, settings)
        ax.set_xscale("log")
        if not hib and style.log_ok(np.r_[curve["value"], curve["initial"]]):
            ax.set_yscale("log")
            style.plain_log_labels(ax.yaxis, np.r_[curve["value"], curve["initial"]])
        ax.set_xlabel(lr_label)
        ax.set_ylabel(style.wrapped(f"final {style.metric_axis_label(metric, settings)}, {'max(final, initial)' if hib else 'min(L, L0)'}", 48))
        handles, labels = ax.get_legend_handles_labels()
        if (curve["n_diverged"] > 0).any():
            handles.append(Line2D([], [], marker="x", ls="", color="0.3", ms=8, mew=2))
            labels.append(style.DIVERGED)
        if any(bool(widths.loc[n, "tolerance_censored"]) for n in names if n in widths.index):
            handles.append(Line2D([], [], ls=""))
            labels.append(">= : interval reaches the\nswept range's end")
        if show_tolerance:
            handles.append(Patch(color="0.5", alpha=0.3))
            labels.append("tolerance interval: keeps\n"
                          f">= {100 * (1 - tau):g}% of the improvement over L0")
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        head = style.literal_text(title) if title else f"Learning-rate sensitivity: final {style.metric_words(metric, settings)} vs lr"
        style.suptitle(fig, f"{head}\neach point: {analysis.aggregation_words()}"
                     + ("; band: min-max over seeds" if analysis.n_seeds > 1 else ""))
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig


def _reference_lines(ax, curve, names, colors, display, metric, settings: AnalysisSettings | None = None) -> None:
    initial = curve.groupby("optimizer")["initial"].mean().dropna()
    if initial.empty:
        return
    what = "initial loss L0" if metric == "val_loss" else f"initial {style.metric_words(metric, settings)}"
    spread = float(initial.max() - initial.min())
    if spread <= 0.01 * abs(float(initial.mean())):
        v = float(initial.mean())
        ax.axhline(v, ls="--", color="0.35", lw=1.2, label=f"{what} = {v:.3g}", zorder=1)
        return
    for name in names:
        if name in initial.index:
            ax.axhline(initial[name], ls="--", color=colors[name], lw=1.0, alpha=0.8,
                       label=f"{what}, {display.get(name, name)} = {initial[name]:.3g}", zorder=1)


# ---- loss curves ------------------------------------------------------------------------------

def loss_curves_figure(analysis: StudyAnalysis, curves: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Validation loss (solid) and training loss (dashed) per epoch, one panel per optimizer.

    Each panel fixes beta1 at the optimizer's best point (stated in the panel title) and draws
    one line per learning rate, coloured by log10(lr) (colour bar); at each lr the remaining
    hyperparameters are the best point at that beta1 and lines are the mean over seeds. A run
    that diverged ends with an ``x``. Epoch 0 is the initialised model. The y axis is
    logarithmic and cut at 1.5x the initial loss so a diverging run does not flatten the rest; the
    curves themselves are drawn unclipped, and where one rises past that cut a triangle under the top
    edge marks the epoch it leaves the axes (:func:`_exits`), in the line's colour, with a legend entry.
    A task without a validation loss (cartpole) shows its objective metric per epoch instead,
    on a linear axis and without the training loss (a policy-gradient loss is not comparable).

    Args:
        analysis: the study's analysis (its lines at the best beta1, on the nominal lr, are drawn).
        curves: the per-epoch curves frame (:attr:`sensitivity.report.frame.TrialsData.curves`).
    """
    metric = analysis.settings.metric
    shown = "val_loss" if "val_loss" in curves.columns else metric
    loss_like = shown == "val_loss" or not analysis.settings.higher_is_better
    columns = ["train_loss", shown] if shown == "val_loss" else [shown]
    lines = analysis.loss_lines
    names = list(analysis.optimizers)
    display = style.literal_names(analysis.display)
    done = analysis.nominal
    n = max(len(names), 1)
    ncols = n if n <= 3 else math.ceil(n / 2)
    nrows = math.ceil(n / ncols)
    any_diverged = any_left = False
    per_line = _by_line(_line_means(lines, done, curves, columns))
    with style.style():
        fig = style.new_figure(figsize=(4.6 * ncols + 0.8, 3.5 * nrows + 0.9))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
        for ax, name in zip(axes, names):
            chosen = lines[lines["optimizer"] == name]
            if chosen.empty:
                ax.set_visible(False)
                continue
            beta1 = chosen["best_beta1"].iloc[0]
            lnorm = mcolors.LogNorm(vmin=chosen["lr"].min(), vmax=max(chosen["lr"].max(), chosen["lr"].min() * 1.0001))
            cmap = style.LR_CMAP
            ordered = chosen.sort_values("lr")
            top, low, crossed, drawn = _draw_lines(ax, ordered, per_line, cmap(lnorm(ordered["lr"].to_numpy(float))),
                                                   columns.index(shown),
                                                   columns.index("train_loss") if "train_loss" in columns else None)
            any_diverged |= crossed
            if loss_like:
                ax.set_yscale("log")
            if loss_like and top and low:  # explicit limits: a diverged run's 1e21 must not stretch the axis
                hi = 1.5 * max(top)
                lo = min(v for v in low if v < hi) / 1.3 if any(v < hi for v in low) else hi / 10
                ax.set_ylim(lo, hi)
                left, left_colors = _exits(drawn, hi)
                if left:  # just under the top edge, in front of the curves, clear of the panel title
                    below_top = ax.get_xaxis_transform() + ScaledTranslation(0, -4 / 72, fig.dpi_scale_trans)
                    ax.scatter(left, np.ones(len(left)), marker="^", s=8 ** 2, c=left_colors, edgecolors="white",
                               linewidths=0.6, transform=below_top, clip_on=False, zorder=4)
                    any_left = True
            lo, hi = ax.get_ylim()
            if loss_like:
                style.plain_log_labels(ax.yaxis, [lo, hi])
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(style.metric_axis_label(shown, analysis.settings).replace("validation loss", "loss") if shown == "val_loss"
                          else style.metric_axis_label(shown, analysis.settings))
            never = name in analysis.never_improved  # its "best" is only the initial value: not called best
            b1 = "" if math.isnan(beta1) else f" at beta1 = {beta1:g}" + ("" if never else " (best)")
            b1 += "\nnever improved on its initial value" if never else ""
            ax.set_title(f"{display.get(name, name)}{b1}")
            sm = ScalarMappable(norm=lnorm, cmap=cmap)
            cbar = fig.colorbar(sm, ax=ax, pad=0.01)
            cbar.set_label("learning rate (log scale)")
            grid_lrs = np.sort(chosen["lr"].unique())
            if len(grid_lrs) <= 10:
                cbar.set_ticks(grid_lrs, labels=[style.format_lr(v) for v in grid_lrs])
                cbar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
                cbar.ax.yaxis.set_minor_locator(ticker.NullLocator())
        for ax in axes[len(names):]:
            ax.set_visible(False)
        handles = [Line2D([], [], color="0.2", ls="-")]
        labels = [style.metric_words(shown, analysis.settings)]
        if "train_loss" in columns:
            handles.append(Line2D([], [], color="0.2", ls="--"))
            labels.append("training loss (epoch mean)")
        if any_diverged:
            handles.append(Line2D([], [], color="0.2", marker="x", ls="", mew=2))
            labels.append("diverged (run stopped)")
        if any_left:
            handles.append(Line2D([], [], color="0.2", marker="^", ls="", ms=8, mec="white", mew=0.6))
            labels.append(LEFT_THE_AXES)
        style.legend_below(fig, handles, labels)
        agg = analysis.aggregation_words(exclude=("beta1",), aggregation="best", nominal=True)
        style.suptitle(fig, (style.literal_text(title) if title else "Loss curves per learning rate")
                     + f"\nbeta1 fixed at each optimizer's best; per lr: {agg}")
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig


def _line_means(lines: pd.DataFrame, done: pd.DataFrame, curves: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Every loss-curve line's per-epoch mean over its runs, in one grouping.

    A run belongs to a line when its optimizer is the line's and its lr and each of
    :data:`~sensitivity.report.metrics.HP_COLUMNS` is ``np.isclose`` to the line's (NaN where the
    line's is NaN): the runs :func:`~sensitivity.report.metrics.config_table` averaged into the line's
    row. Each (line, epoch) value is the mean of that line's curve rows at that epoch, NaN skipped,
    summed in the curves frame's row order (as ``curves[curves.trial.isin(runs)].groupby("epoch").mean()``).

    Args:
        lines: one row per line, columns optimizer, lr and HP_COLUMNS
            (:func:`~sensitivity.report.metrics.lines_at_best_beta1`); its index labels the lines.
        done: the runs the lines were drawn from, one row per trial (columns trial, optimizer, lr,
            HP_COLUMNS).
        curves: the per-epoch curves frame (columns trial, epoch and ``columns``).
        columns: the curve columns averaged.

    Returns:
        A frame indexed by (line, epoch), line a label of ``lines``' index, one column per name in
        ``columns``; a line without any curve rows has no rows.
    """
    keys = ["optimizer", "lr", *metrics.HP_COLUMNS]
    config = done.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    points = done[keys].assign(_config=config).drop_duplicates("_config")
    line_of: list = []  # labels of lines, one per (line, configuration) match
    config_of: list[np.ndarray] = []
    for name, at in lines.groupby("optimizer", sort=False).groups.items():
        mine = points[points["optimizer"] == name]
        stored = mine[keys[1:]].to_numpy(float)  # (configs, lr + hyperparameters)
        ids = mine["_config"].to_numpy()
        wanted = lines.loc[at, keys[1:]].to_numpy(float)  # (lines, lr + hyperparameters)
        step = max(1, 2 ** 22 // max(stored.size, 1))  # lines per block: a few million comparisons at a time
        for first in range(0, len(at), step):
            block = wanted[first:first + step, None, :]
            close = np.isclose(stored[None, :, :], block)  # (lines, configs, columns), as np.isclose(done[hp], v)
            close[..., 1:] |= np.isnan(block[..., 1:]) & np.isnan(stored[None, :, 1:])  # missing matches missing
            line, hit = np.nonzero(close.all(axis=2))
            line_of.extend(at[first + line])
            config_of.append(ids[hit])
    members = (pd.DataFrame({"line": line_of, "_config": np.concatenate(config_of) if config_of else []})
               .merge(pd.DataFrame({"_config": config, "trial": done["trial"].to_numpy()}), on="_config")
               [["line", "trial"]].drop_duplicates())
    rows = (pd.DataFrame({"trial": curves["trial"].to_numpy(), "_row": np.arange(len(curves))})
            .merge(members, on="trial").sort_values("_row", kind="stable"))
    picked = curves[["epoch", *columns]].iloc[rows["_row"].to_numpy()].reset_index(drop=True)
    picked.insert(0, "line", rows["line"].to_numpy())
    return picked.groupby(["line", "epoch"], sort=True)[list(columns)].mean()


def _finite_runs(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The (n, 2) vertex arrays of the runs of finite ``y``: a NaN breaks a line, as it does a Line2D."""
    kept = np.flatnonzero(np.isfinite(y))
    runs = np.split(kept, np.flatnonzero(np.diff(kept) > 1) + 1) if len(kept) else []
    return [np.column_stack([x[run], y[run]]) for run in runs]


def _by_line(means: pd.DataFrame) -> dict:
    """:func:`_line_means` split by line: line label -> (epochs (n,), means (n, columns)), as arrays."""
    labels = means.index.get_level_values("line").to_numpy()
    if not len(labels):
        return {}
    epochs = means.index.get_level_values("epoch").to_numpy(float)
    values = means.to_numpy(float)
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])  # the index is sorted: a line's rows are contiguous
    stops = np.r_[starts[1:], len(labels)]
    return {labels[a]: (epochs[a:b], values[a:b]) for a, b in zip(starts, stops)}


LEFT_THE_AXES = "rises above the axis (top: 1.5 x the initial value)"
"""The legend entry of the triangle marking where a loss curve leaves the top of its axes."""


def _exits(drawn: Sequence[tuple[np.ndarray, object]], top: float) -> tuple[list[float], list]:
    """Where each drawn line rises above ``top``: the epoch at which it crosses ``top`` (read as
    linear in log y between its points, as the log axis draws the segment), or its first point
    when it starts above; one per stretch above ``top``, with the line's colour.

    Args:
        drawn: (vertices (n, 2) of epochs and values, colour) of every line and lone point drawn
            (:func:`_draw_lines`); values positive, finite.
        top: the upper limit of the (logarithmic) y axis.
    """
    marks: dict[tuple[float, tuple], object] = {}  # one mark per place and colour (a lone point is also a dash of one)
    log_top = math.log(top)
    for vertices, color in drawn:
        x, y = vertices[:, 0], vertices[:, 1]
        above = y > top
        for i in np.flatnonzero(above & ~np.r_[False, above[:-1]]):  # the first point of each stretch above
            if i == 0 or y[i - 1] <= 0:  # starts above (or comes from a value a log axis cannot place)
                at = float(x[i])
            else:
                y0, y1 = math.log(y[i - 1]), math.log(y[i])
                at = float(x[i - 1] + (x[i] - x[i - 1]) * (log_top - y0) / (y1 - y0))
            marks.setdefault((at, tuple(np.ravel(color))), color)
    return [at for at, _ in marks], list(marks.values())


def _draw_lines(ax, chosen: pd.DataFrame, per_line: dict, line_colors: np.ndarray, shown_at: int,
                train_at: int | None) -> tuple[list[float], list[float], bool, list[tuple[np.ndarray, object]]]:
    """One panel's lines in four artists: a LineCollection of the solid lines, one of the dashed
    training lines, a scatter of the diverged ends and one of the lone training points (one epoch).

    Args:
        chosen: the panel's lines in drawing order (columns n_diverged; index: line labels).
        per_line: :func:`_by_line` of the means.
        line_colors: (lines, RGBA), one colour per row of ``chosen``.
        shown_at, train_at: the columns of the means drawn solid and dashed (None: no dashed lines).

    Returns:
        The panel's epoch-0 means of the solid lines (``top``), its positive finite means (``low``),
        whether a diverged end was marked, and what was drawn: (vertices, colour) of every solid and
        dashed line and lone point (for :func:`_exits`).
    """
    top: list[float] = []
    low: list[float] = []
    solid, solid_colors, dashed, dashed_colors = [], [], [], []
    ends, end_colors, lone_points, lone_colors = [], [], [], []
    for label, diverged, color in zip(chosen.index, chosen["n_diverged"].to_numpy() > 0, line_colors):
        if label not in per_line:
            continue
        epochs, values = per_line[label]
        flat = values.ravel()
        low.extend(flat[np.isfinite(flat) & (flat > 0)])
        shown = values[:, shown_at]
        runs = _finite_runs(epochs, shown)
        solid.extend(runs)
        solid_colors.extend([color] * len(runs))
        if train_at is not None:
            train = values[:, train_at]
            runs = _finite_runs(epochs, train)
            dashed.extend(runs)
            dashed_colors.extend([color] * len(runs))
            if np.count_nonzero(~np.isnan(train)) < 2:  # one epoch: a dash of one point draws nothing
                finite = np.isfinite(train)
                lone_points.extend(zip(epochs[finite], train[finite]))
                lone_colors.extend([color] * int(finite.sum()))
        stored = np.flatnonzero(~np.isnan(shown))
        if diverged and len(stored):
            ends.append((epochs[stored[-1]], shown[stored[-1]]))
            end_colors.append(color)
        if epochs[0] == 0 and not math.isnan(shown[0]):
            top.append(float(shown[0]))
    rc = matplotlib.rcParams
    if solid:
        ax.add_collection(LineCollection(solid, colors=solid_colors, linewidths=1.6, linestyles="solid", zorder=2,
                                         capstyle=rc["lines.solid_capstyle"], joinstyle=rc["lines.solid_joinstyle"]))
    if dashed:
        ax.add_collection(LineCollection(dashed, colors=dashed_colors, linewidths=1.1, linestyles="--", alpha=0.9,
                                         zorder=2, capstyle=rc["lines.dash_capstyle"],
                                         joinstyle=rc["lines.dash_joinstyle"]))
    if lone_points:
        ax.scatter(*np.transpose(lone_points), marker="_", s=9 ** 2, c=lone_colors, linewidths=1.6, alpha=0.9, zorder=2)
    if ends:
        ax.scatter(*np.transpose(ends), marker="x", s=8 ** 2, c=end_colors, linewidths=2, zorder=2)
    ax.autoscale_view()  # before matplotlib 3.11 add_collection updated the data limits only
    drawn = [*zip(solid, solid_colors), *zip(dashed, dashed_colors),
             *((np.array([point]), c) for point, c in zip(lone_points, lone_colors))]
    return top, low, bool(ends), drawn


# ---- relative performance ---------------------------------------------------------------------

def relative_performance_figure(
    analysis: StudyAnalysis, *, title: str | None = None, lr_label: str = "learning rate",
) -> Figure:
    """DeepOBS-style relative performance vs learning rate, one line per optimizer.

    ``best/L`` for losses (``acc/best`` for accuracies) of each optimizer's lr curve, relative to
    its own best, NaN -> 0: 1 marks its best lr; how fast a line falls off is its lr sensitivity.
    """
    curve = analysis.relative_performance
    names = metrics.optimizer_order(curve["optimizer"])
    colors = style.optimizer_colors(names)
    display = style.literal_names(analysis.display)
    lines = style.optimizer_lines(names, lw=1.5)
    ratio = "value / best value" if analysis.settings.higher_is_better else "best value / value"
    with style.style():
        fig = style.new_figure(figsize=(8.0, 4.2))
        ax = fig.add_subplot()
        for name in names:
            g = curve[curve["optimizer"] == name].sort_values("lr")
            label = display.get(name, name) + (" (never improved: 1 = its initial value)"
                                               if name in analysis.never_improved else "")
            ax.plot(g["lr"], g["relative_performance"], marker="o", ms=4, label=label, **lines[name])
            div = g[g["n_diverged"] > 0]
            ax.scatter(div["lr"], div["relative_performance"], marker="x", s=60, color=colors[name], linewidths=2)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(lr_label)
        ax.set_ylabel(f"relative performance ({ratio})")
        handles, labels = ax.get_legend_handles_labels()
        if (curve["n_diverged"] > 0).any():  # the crosses, said as every figure says them
            handles.append(Line2D([], [], marker="x", ls="", color="0.3", ms=8, mew=2))
            labels.append(style.DIVERGED)
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_title((style.literal_text(title) if title else "Relative performance vs learning rate (DeepOBS)")
                     + f"\neach point: {analysis.aggregation_words()}; relative to each optimizer's best")
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig


# ---- expected best after n configurations ---------------------------------------------------

def expected_best_figure(
    table: pd.DataFrame, metric: str, *, display: dict[str, str] | None = None, title: str | None = None,
    note: str = "", settings: AnalysisSettings | None = None,
) -> Figure:
    """Expected best final metric after n randomly drawn configurations, one line per optimizer.

    Args:
        table: :func:`~sensitivity.report.expected_best.expected_best_table` (columns optimizer, n,
            expected_best, std, draws).
        metric: the metric shown (its direction decides which way is better).
        display: optimizer name -> display name.
        note: a second title line (e.g. how draws were counted).
        settings: the analysis's settings, for the study's own label and unit of ``metric``
            (:func:`sensitivity.report.style.metric_axis_label`).

    The shading is +-1 standard deviation of the best of n draws (Dodge et al. 2019, fig. 1), the
    spread of what one tuning run of that budget gets, not an interval on the expectation; it is cut
    to the range of the stored values, which the best of n cannot leave.
    """
    display = style.literal_names(display)
    names = metrics.optimizer_order(table["optimizer"]) if not table.empty else []
    colors = style.optimizer_colors(names)
    lines = style.optimizer_lines(names)
    hib = metrics.higher_is_better(metric)
    with style.style():
        fig = style.new_figure(figsize=(8.0, 4.4))
        ax = fig.add_subplot()
        for name in names:
            g = table[table["optimizer"] == name].sort_values("n")
            c = colors[name]
            ax.plot(g["n"], g["expected_best"], **lines[name],
                    label=f"{display.get(name, name)} (N = {int(g['draws'].iloc[0])})")
            lo = np.maximum(g["expected_best"] - g["std"], g["min_value"])  # the best of n lies in the
            hi = np.minimum(g["expected_best"] + g["std"], g["max_value"])  # range of the stored values
            ax.fill_between(g["n"], lo, hi, color=c, alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("n, configurations drawn at random (tuning budget)")
        ax.set_ylabel(style.wrapped(f"expected best final {style.metric_axis_label(metric, settings)}", 40))
        if not hib and style.log_ok(table["expected_best"]):
            ax.set_yscale("log")
            style.plain_log_labels(ax.yaxis, table["expected_best"])
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        head = style.literal_text(title) if title else f"Expected best {style.metric_words(metric, settings)} after n configurations (Dodge et al. 2019)"
        style.suptitle(fig, style.wrapped(head + "\nshading: +-1 sd of the best of n draws, within the range of the stored values"
                                   + (f"\n{style.literal_text(note)}" if note else ""), 88))
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig
