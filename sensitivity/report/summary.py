"""The report's table: one row per optimizer with every tolerance metric and, with seeds, its interval.

:func:`summary_result` assembles, for each optimizer of a study (definitions and sources in the modules named):

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

:func:`sensitivity.report.analysis.analyze` computes the lr curve, its tolerance table and the good-region
shares once and hands them to :func:`summary_numbers` and :func:`summary_result`, which only assemble them
(no curve, table or threshold is formed here); the seed bootstrap recomputes them there, on resampled
seeds. :func:`sensitivity.report.analysis.summarize` gives this table alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import pandas as pd

from sensitivity.report import tolerance
from sensitivity.report.metrics import HP_COLUMNS, higher_is_better
from sensitivity.report.uncertainty import SeedBootstrap, pairwise_differences

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
    "relative_censored",
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
        return higher_is_better(metric)
    return HIGHER_IS_BETTER.get(column)


def summary_numbers(
    names: Sequence[str],
    tolerances: pd.DataFrame,
    best: pd.DataFrame,
    sensitivity: pd.Series,
    divergence: pd.Series,
    regions: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """The numeric per-optimizer figures of one trials frame (what the seed bootstrap recomputes),
    from what :func:`sensitivity.report.analysis.analyze` computed for that frame.

    Args:
        names: the optimizers with a completed trial, in catalog order (the rows).
        tolerances: :func:`~sensitivity.report.tolerance.tolerance_table` of the lr curve.
        best: :func:`~sensitivity.report.metrics.best_points` of the lr curve.
        sensitivity: :func:`~sensitivity.report.metrics.lr_sensitivity` of the lr curve.
        divergence: :func:`~sensitivity.report.metrics.divergence_rate` of the trials.
        regions: :func:`~sensitivity.report.region.good_region_table` of the swept ``pairs``.

    Returns:
        A float frame indexed by optimizer with ``best_value``, ``best_lr``, ``best_<hp>``,
        ``lr_sensitivity``, the tolerance columns of :data:`sensitivity.report.tolerance.TOLERANCE_COLUMNS`
        (``learned``, ``tolerance_censored`` and ``relative_censored`` as 0/1), a ``good_share_<x>_<y>`` column per pair,
        ``divergence_rate``.
    """
    names = list(names)
    out = pd.DataFrame(index=pd.Index(names, name="optimizer"))
    for col in tolerance.TOLERANCE_COLUMNS:
        out[col] = tolerances[col].reindex(names).astype(float) if col in tolerances else math.nan
    # the best value is the curve's best even when nothing learned; where it was reached only when something did
    out["best_value"] = best["value"].reindex(names).astype(float)
    for hp in ("lr", *HP_COLUMNS):
        vals = best[hp].reindex(names).astype(float)
        out[f"best_{hp}"] = vals.where(out["learned"] > 0)
    # no LR sensitivity without a run that learned: every point at L0 would read as a perfect 0
    out["lr_sensitivity"] = sensitivity.reindex(names).astype(float).where(out["learned"] > 0)
    out["divergence_rate"] = divergence.reindex(names).astype(float)
    for x, y in pairs:
        mine = regions[(regions["x"] == x) & (regions["y"] == y)].set_index("optimizer")["share"]
        out[share_column(x, y)] = mine.reindex(names).astype(float)
    return out


@dataclasses.dataclass(frozen=True)
class SummaryResult:
    """What :func:`summary_result` assembles: the summary frame and what came with it.

    Attributes:
        frame: one row per optimizer (:data:`BASE_COLUMNS`, share columns, interval columns).
        bootstrap: ``"exact"``, ``"monte carlo"``, or ``""`` (no bootstrap: fewer than two seeds, or
            no uncertainty asked).
        differences: :func:`~sensitivity.report.uncertainty.pairwise_differences` (empty without a bootstrap).
    """

    frame: pd.DataFrame
    bootstrap: str
    differences: pd.DataFrame


def summary_result(
    numbers: pd.DataFrame,
    complete: pd.DataFrame,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    evaluation_far: pd.Series | None = None,
    boot: SeedBootstrap | None = None,
) -> SummaryResult:
    """The report's summary table (see the module docstring) from the study's :func:`summary_numbers`.

    Args:
        numbers: :func:`summary_numbers` of the study's trials.
        complete: its COMPLETE trials (trial counts, wall times, lr ranges, display names).
        pairs: the swept pairs (their ``good_share_*`` columns).
        evaluation_far: per optimizer, the share of stable runs whose evaluation blew up
            (:func:`~sensitivity.report.metrics.evaluation_far_above_training`); None: unknown (NaN).
        boot: the seed bootstrap of :func:`summary_numbers` (None: no intervals).
    """
    done = complete
    names = list(numbers.index)
    display = (done.drop_duplicates("optimizer").set_index("optimizer")["optimizer_display"]
               if "optimizer_display" in done else pd.Series(dtype="str"))
    frame = numbers.copy()
    frame["learned"] = frame["learned"] > 0
    frame["tolerance_censored"] = frame["tolerance_censored"] > 0
    frame["relative_censored"] = frame["relative_censored"] > 0
    frame.insert(0, "optimizer_display", [display.get(n, n) for n in names])
    groups = done.groupby("optimizer")
    frame["trials"] = groups.size().reindex(names).astype("int64")
    frame["median_wall_time_s"] = groups["wall_time_s"].median().reindex(names).astype(float)
    if evaluation_far is not None:
        frame["eval_far_above_training_rate"] = evaluation_far.reindex(names).astype(float)
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
        bootstrap="" if boot is None else ("exact" if boot.exact else "monte carlo"),
        differences=differences,
    )


def interval_columns(summary: pd.DataFrame) -> list[str]:
    """The metrics of ``summary`` that carry ``_low``/``_high`` bounds."""
    return [c for c in summary.columns if f"{c}_low" in summary.columns and f"{c}_high" in summary.columns]

