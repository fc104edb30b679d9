"""The report's table: one row per optimizer with every tolerance metric and, with seeds, its interval.

:func:`summarize` gathers, for each optimizer of a study (definitions and sources in the modules named):

* ``best_value`` and the point it was reached at (``best_lr``, ``best_beta1``, ...), from the lr curve
  of :func:`sensitivity.report.metrics.lr_curve`; no best lr when no run learned;
* ``lr_sensitivity``: Wortsman et al. 2023 (:func:`sensitivity.report.metrics.wortsman_sensitivity`);
* ``tolerance_width_decades``: the interpolated width within the improvement threshold (tau), and
  ``relative_width_decades`` within the relative one (:mod:`sensitivity.report.tolerance`);
* ``good_share_<x>_<y>``: the good-region share of each swept pair (:mod:`sensitivity.report.region`);
* ``divergence_rate``: the share of completed trials that diverged (training blew up), and
  ``eval_far_above_training_rate`` the share of stable runs whose evaluation blew up
  (:func:`sensitivity.report.metrics.evaluation_far_above_training`; NaN when the study's divergence
  factor is not given);
* with two seeds or more, ``<metric>_low`` / ``<metric>_high``: the percentile interval of each of
  these figures under the seed bootstrap (:mod:`sensitivity.report.uncertainty`), and in
  :attr:`SummaryResult.differences` the paired differences between optimizers and whether each
  exceeds that uncertainty.

The report computes the lr curve and its tolerance table once (:func:`sensitivity.report.analysis.analyze`)
and hands them to :func:`summary_result`; only the seed bootstrap recomputes them, on resampled seeds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import pandas as pd

from sensitivity.report import metrics, region, tolerance
from sensitivity.report.uncertainty import DEFAULT_LEVEL, pairwise_differences, seed_bootstrap

BASE_COLUMNS = (
    "optimizer",
    "optimizer_display",
    "trials",
    "learned",
    "best_value",
    "best_lr",
    "best_beta1",
    "best_beta2",
    "best_gamma",
    "best_weight_decay",
    "lr_sensitivity",
    "tolerance_width_decades",
    "tolerance_lr_low",
    "tolerance_lr_high",
    "tolerance_censored",
    "tolerance_threshold",
    "relative_width_decades",
    "relative_lr_low",
    "relative_lr_high",
    "relative_threshold",
    "divergence_rate",
    "eval_far_above_training_rate",
    "median_wall_time_s",
    "lr_min",
    "lr_max",
    "lr_points",
)
"""Columns every summary has, in order; ``good_share_<x>_<y>`` columns follow ``relative_threshold``
for each swept pair, and ``<metric>_low``/``<metric>_high`` follow each metric of :data:`UNCERTAIN`
when the study has two seeds or more."""

UNCERTAIN = ("best_value", "best_lr", "lr_sensitivity", "tolerance_width_decades", "relative_width_decades",
             "divergence_rate")
"""Summary figures that get a seed-bootstrap interval (plus every ``good_share_*`` column)."""

HIGHER_IS_BETTER = {
    "lr_sensitivity": False,
    "tolerance_width_decades": True,
    "relative_width_decades": True,
    "divergence_rate": False,
}
"""Direction of the tolerance figures (``best_value`` follows the metric; ``best_lr`` has none;
every ``good_share_*`` is higher-is-better)."""


def share_column(x: str, y: str) -> str:
    """Name of the summary column of the good-region share of pair (x, y): ``good_share_lr_beta1``."""
    return f"good_share_{x}_{y}"


def is_higher_better(column: str, metric: str) -> bool | None:
    """Whether a larger value of summary ``column`` is better (None: no direction, e.g. ``best_lr``)."""
    if column.startswith("good_share_"):
        return True
    if column == "best_value":
        return metrics.higher_is_better(metric)
    return HIGHER_IS_BETTER.get(column)


def summary_numbers(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float,
    relative_tolerance: float,
    aggregation: str = "best",
    pairs: Sequence[tuple[str, str]] = (),
    curve: pd.DataFrame | None = None,
    tolerances: pd.DataFrame | None = None,
    regions: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The numeric per-optimizer figures of a trials frame (what the seed bootstrap recomputes).

    ``curve`` and ``tolerances``, when given, are this frame's :func:`~sensitivity.report.metrics.lr_curve`
    and :func:`~sensitivity.report.tolerance.tolerance_table` (with ``relative_tolerance`` and the
    metric's ``points``) already computed; None computes them. A list passed as ``regions`` receives the
    :func:`~sensitivity.report.region.good_region_table` of the pairs.

    Returns:
        A float frame indexed by optimizer (catalog order) with ``best_value``, ``best_lr``,
        ``best_<hp>``, ``lr_sensitivity``, the tolerance columns of
        :data:`sensitivity.report.tolerance.TOLERANCE_COLUMNS` (``learned`` and
        ``tolerance_censored`` as 0/1), a ``good_share_<x>_<y>`` column per pair, ``divergence_rate``.
    """
    hib = metrics.higher_is_better(metric)
    curve = metrics.lr_curve(trials, metric, aggregation) if curve is None else curve
    tol = (tolerance.tolerance_table(curve, higher_is_better=hib, tau=tau, relative_tolerance=relative_tolerance,
                             points=metrics.absolute_tolerance(metric)) if tolerances is None else tolerances)
    sens = metrics.lr_sensitivity(curve, metric)
    div = metrics.divergence_rate(trials)
    names = metrics.optimizer_order(metrics.complete_trials(trials)["optimizer"])
    out = pd.DataFrame(index=pd.Index(names, name="optimizer"))
    for col in tolerance.TOLERANCE_COLUMNS:
        out[col] = tol[col].reindex(names).astype(float) if col in tol else math.nan
    # the best value is the curve's best even when nothing learned; where it was reached only when something did.
    # A point whose every run diverged is never the best while another point is usable (tolerance.curve_usable): its
    # value is clipped to L0, which can beat runs that made things worse without diverging.
    finite = curve[curve["value"].notna()]
    usable = curve[tolerance.curve_usable(curve)]
    candidates = pd.concat([usable, finite[~finite["optimizer"].isin(usable["optimizer"])]])
    best_rows = metrics.best_per_group(candidates, ["optimizer"], metric).set_index("optimizer")
    out["best_value"] = best_rows["value"].reindex(names).astype(float)
    for hp in ("lr", *metrics.HP_COLUMNS):
        vals = best_rows[hp].reindex(names).astype(float)
        out[f"best_{hp}"] = vals.where(out["learned"] > 0)
    # no LR sensitivity without a run that learned: every point at L0 would read as a perfect 0
    out["lr_sensitivity"] = sens.reindex(names).astype(float).where(out["learned"] > 0)
    out["divergence_rate"] = div.reindex(names).astype(float)
    if pairs:
        shares = region.good_region_table(trials, metric, tol["tolerance_threshold"].to_dict(),
                                     tol["initial_value"].to_dict(), pairs)
        if regions is not None:
            regions.append(shares)
        for x, y in pairs:
            mine = shares[(shares["x"] == x) & (shares["y"] == y)].set_index("optimizer")["share"]
            out[share_column(x, y)] = mine.reindex(names).astype(float)
    return out


@dataclasses.dataclass(frozen=True)
class SummaryResult:
    """What :func:`summary_result` computes: the summary frame and what came with it.

    Attributes:
        frame: one row per optimizer (:data:`BASE_COLUMNS`, share columns, interval columns).
        regions: :func:`~sensitivity.report.region.good_region_table` of the swept pairs (empty
            frame when none).
        n_seeds: distinct seeds among the completed trials.
        bootstrap: ``"exact"``, ``"monte carlo"``, or ``""`` (fewer than two seeds, or no uncertainty asked).
        differences: :func:`~sensitivity.report.uncertainty.pairwise_differences` (empty without a bootstrap).
    """

    frame: pd.DataFrame
    regions: pd.DataFrame
    n_seeds: int
    bootstrap: str
    differences: pd.DataFrame


def summary_result(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float,
    relative_tolerance: float,
    aggregation: str = "best",
    pairs: Sequence[tuple[str, str]] = (),
    uncertainty: bool = True,
    level: float = DEFAULT_LEVEL,
    divergence_factor: float | None = None,
    curve: pd.DataFrame | None = None,
    tolerances: pd.DataFrame | None = None,
) -> SummaryResult:
    """The summary of a trials frame, given its settings resolved (see :func:`summarize`) and,
    optionally, its lr curve and tolerance table already computed (:func:`summary_numbers`)."""
    rel = relative_tolerance
    done = metrics.complete_trials(trials)
    regions: list[pd.DataFrame] = []
    numbers = summary_numbers(trials, metric, tau=tau, relative_tolerance=rel, aggregation=aggregation, pairs=pairs,
                              curve=curve, tolerances=tolerances, regions=regions)
    names = list(numbers.index)
    display = (done.drop_duplicates("optimizer").set_index("optimizer")["optimizer_display"]
               if "optimizer_display" in done else pd.Series(dtype="str"))
    frame = numbers.copy()
    frame["learned"] = frame["learned"] > 0
    frame["tolerance_censored"] = frame["tolerance_censored"] > 0
    frame.insert(0, "optimizer_display", [display.get(n, n) for n in names])
    groups = done.groupby("optimizer")
    frame["trials"] = groups.size().reindex(names).astype("int64")
    frame["median_wall_time_s"] = groups["wall_time_s"].median().reindex(names).astype(float)
    if divergence_factor is not None and not done.empty:
        far = metrics.evaluation_far_above_training(done, divergence_factor).groupby(done["optimizer"]).mean()
        frame["eval_far_above_training_rate"] = far.reindex(names).astype(float)
    else:
        frame["eval_far_above_training_rate"] = math.nan
    frame["lr_min"] = groups["lr"].min().reindex(names).astype(float)
    frame["lr_max"] = groups["lr"].max().reindex(names).astype(float)
    frame["lr_points"] = groups["lr"].nunique().reindex(names).astype("int64")
    frame = frame.reset_index()

    share_cols = [share_column(x, y) for x, y in pairs]
    order = list(BASE_COLUMNS)
    at = order.index("relative_threshold") + 1
    order[at:at] = share_cols
    seeds = int(pd.Series(done["seed"]).nunique()) if "seed" in done else 1
    boot = None
    if uncertainty and seeds >= 2:
        boot = seed_bootstrap(
            trials,
            lambda t: summary_numbers(t, metric, tau=tau, relative_tolerance=rel, aggregation=aggregation, pairs=pairs),
            level=level,
        )
    differences = pd.DataFrame()
    if boot is not None:
        low, high = boot.interval()
        for col in (*UNCERTAIN, *share_cols):
            frame[f"{col}_low"] = low[col].reindex(names).to_numpy(float)
            frame[f"{col}_high"] = high[col].reindex(names).to_numpy(float)
            at = order.index(col) + 1
            order[at:at] = [f"{col}_low", f"{col}_high"]
        differences = pairwise_differences(boot, [c for c in (*UNCERTAIN, *share_cols) if c != "best_lr"])
    return SummaryResult(
        frame=frame[order],
        regions=regions[0] if regions else pd.DataFrame(),
        n_seeds=seeds,
        bootstrap="" if boot is None else ("exact" if boot.exact else "monte carlo"),
        differences=differences,
    )


def summarize(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float | None = None,
    relative_tolerance: float | None = None,
    aggregation: str = "best",
    uncertainty: bool = True,
    level: float = DEFAULT_LEVEL,
    divergence_factor: float | None = None,
) -> pd.DataFrame:
    """One row per optimizer: the report's table of tolerance metrics (see the module docstring).

    The report itself reads this frame from :attr:`sensitivity.report.analysis.StudyAnalysis.summary`,
    beside the settings it was computed with.

    Args:
        trials: the tidy trials frame (on the lr axis the report shows, see
            :func:`sensitivity.report.effective_lr.on_lr_axis`).
        metric: the metric analysed.
        tau: fraction for the improvement threshold; :data:`~sensitivity.report.tolerance.DEFAULT_TAU` when None.
        relative_tolerance: for the relative threshold; :func:`~sensitivity.report.metrics.default_tolerance` when None.
        aggregation: how the lr curve is formed (:data:`~sensitivity.report.metrics.AGGREGATIONS`).
        uncertainty: compute seed-bootstrap intervals when the study has two seeds or more.
        level: coverage of those intervals.
        divergence_factor: the study's divergence factor, for ``eval_far_above_training_rate``.

    Returns:
        The frame (:data:`BASE_COLUMNS`, share columns, interval columns).

    Raises:
        ValueError: unknown metric or aggregation; tau or the relative tolerance negative.
    """
    tau = tolerance.DEFAULT_TAU if tau is None else float(tau)
    rel = metrics.default_tolerance(metric) if relative_tolerance is None else float(relative_tolerance)
    metrics.higher_is_better(metric)
    return summary_result(trials, metric, tau=tau, relative_tolerance=rel, aggregation=aggregation,
                          pairs=region.swept_pairs(trials), uncertainty=uncertainty, level=level,
                          divergence_factor=divergence_factor).frame


def interval_columns(summary: pd.DataFrame) -> list[str]:
    """The metrics of ``summary`` that carry ``_low``/``_high`` bounds."""
    return [c for c in summary.columns if f"{c}_low" in summary.columns and f"{c}_high" in summary.columns]

