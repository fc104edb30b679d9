"""Tolerance of a learning-rate curve: thresholds, and the width of the good lr range in decades.

The question "how wide a range of learning rates works?" needs two choices: what counts as working
(a threshold on the final metric) and how the range is measured (here: on a continuous log-lr axis).

Thresholds (both direction-generic: a minimised metric such as a loss, or a maximised one such as
an accuracy or a return; ``L*`` is the best value on the curve, ``L0`` the value at initialisation):

* **improvement** (the default, comparable across tasks and metrics): a point is within tolerance when
  it keeps all but a fraction ``tau`` of the improvement the best lr achieves over initialisation,
  ``L <= L* + tau (L0 - L*)`` for a minimised metric (``A >= A* - tau (A* - A0)`` for a maximised
  one). The threshold is unit-free: tau = 0.05 means "at least 95 % of the achievable improvement",
  whatever the metric and its scale. This is the normalisation of Wortsman et al. 2023
  (arXiv 2309.14322, sec. 2.2: the sensitivity is measured between L* and L0) turned into a cut-off;
  the README's "Metrics" section states it.
* **relative** (the report's earlier rule): a minimised metric within a fraction of the best,
  ``L <= L* + tol |L*|`` (tol = 0.1: within 10 %); a maximised metric within ``tol`` in its own units,
  ``A >= A* - tol`` (tol = 0.01 on an accuracy: within one point). It depends on the metric's scale
  and offset, so it does not compare across tasks.

Width. On a coarse grid (a half-decade grid is common) a band within 10 % of the best is often
narrower than one grid step, so counting grid points gives 0 for most optimizers. The curve is
therefore read as piecewise linear in log10(lr) between grid points, and the width is the length, in
decades of lr, of the largest connected lr interval where that interpolated curve is within the
threshold: a single good grid point whose neighbours are close to the threshold has a width above 0.
The definition is this project's (the README's "Metrics" section): it reads the lr-vs-final-
loss curves that Wortsman et al. 2023 plot (their LR sensitivity summarises the same curve by a mean)
as a range, and linear interpolation in log lr is the least a curve between grid points can assume.

Rules that keep the number honest:

* a point where every run diverged (or whose value is not finite) is never within tolerance; for
  interpolation it takes the initial value ``L0`` (the initial value a diverged run is counted at), or, when even
  ``L0`` would be within the threshold, the crossing is put at the good neighbour itself;
* a curve on which no point improves on ``L0`` (no run learned) has no best lr and no width (NaN);
* an interval that reaches an end of the swept lr range is *censored*: the true range may be wider.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import pandas as pd

from sensitivity.report.grouping import group_rows

THRESHOLD_KINDS = ("improvement", "relative")
"""The two tolerance thresholds, see the module docstring."""

DEFAULT_TAU = 0.05
"""Default fraction of the achievable improvement that may be lost: within tolerance when a point
keeps at least 95 % of the improvement from L0 to the best value L*."""

_EPS = 1e-12


def improvement_threshold(best: float, initial: float, tau: float, *, higher_is_better: bool) -> float:
    """The metric level ``L* + tau (L0 - L*)`` (maximised metric: ``A* - tau (A* - A0)``).

    Args:
        best: the best value L* on the curve (metric units).
        initial: the value at initialisation L0 (metric units).
        tau: fraction of the improvement ``|L0 - L*|`` that may be lost, >= 0.

    Returns:
        The threshold in the metric's units; NaN when ``best`` or ``initial`` is not finite.

    Raises:
        ValueError: ``tau`` negative or not finite.
    """
    _check_fraction("tau", tau)
    if not (math.isfinite(best) and math.isfinite(initial)):
        return math.nan
    return best - tau * (best - initial)


def relative_threshold(best: float, tolerance: float, *, higher_is_better: bool, points: bool = True) -> float:
    """The metric level ``L* + tol |L*|`` (maximised metric: ``A* - tol`` in its own units when
    ``points``, as for an accuracy; ``A* - tol |A*|`` otherwise, as for an RL return).

    Raises:
        ValueError: ``tolerance`` negative or not finite.
    """
    _check_fraction("tolerance", tolerance)
    if not math.isfinite(best):
        return math.nan
    if higher_is_better:
        return best - tolerance if points else best - tolerance * abs(best)
    return best + tolerance * abs(best)


def _check_fraction(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def describe_threshold(kind: str, value: float, *, higher_is_better: bool, unit: str = "") -> str:
    """The threshold rule in words, e.g. ``"within 5% of the achievable improvement (L <= L* + 0.05 (L0 - L*))"``.

    Args:
        kind: ``"improvement"`` or ``"relative"``.
        value: tau or the relative tolerance.
        unit: the metric's unit, used for an absolute tolerance on a maximised metric ("points").

    Raises:
        ValueError: unknown kind.
    """
    if kind == "improvement":
        rule = (f"A >= A* - {value:g} (A* - A0)" if higher_is_better else f"L <= L* + {value:g} (L0 - L*)")
        return f"keeps at least {100 * (1 - value):g}% of the improvement over initialisation ({rule})"
    if kind == "relative":
        if higher_is_better:
            what = f"{value:g}{' ' + unit if unit else ''}"
            return f"within {what} of the best (A >= A* - {value:g})"
        return f"within {100 * value:g}% of the best (L <= {1 + value:g} L*)"
    raise ValueError(f"unknown threshold kind {kind!r}; choose one of {THRESHOLD_KINDS}")


@dataclasses.dataclass(frozen=True)
class ToleranceInterval:
    """The largest connected lr interval within a threshold.

    Attributes:
        lr_low, lr_high: its ends (learning rates; equal for a single isolated point).
        width_decades: ``log10(lr_high / lr_low)``, in decades of lr.
        censored: the interval reaches the lowest or highest swept lr at a point within the
            threshold, so the true range may extend beyond the sweep.
    """

    lr_low: float
    lr_high: float
    width_decades: float
    censored: bool

    @classmethod
    def none(cls) -> "ToleranceInterval":
        """No interval (no usable point): NaN ends and width."""
        return cls(math.nan, math.nan, math.nan, False)


def interpolated_interval(
    lrs: Sequence[float],
    values: Sequence[float],
    threshold: float,
    *,
    higher_is_better: bool,
    usable: Sequence[bool] | None = None,
    fill: float | None = None,
) -> ToleranceInterval:
    """The largest lr interval where the curve, linear in log10(lr) between grid points, is within ``threshold``.

    Args:
        lrs: learning rates of the curve's points, shape ``(n,)``, > 0, any order.
        values: the final metric at each lr, shape ``(n,)`` (metric units).
        threshold: the metric level (from :func:`improvement_threshold` or :func:`relative_threshold`).
        higher_is_better: True for a maximised metric (within means ``value >= threshold``).
        usable: shape ``(n,)``; False marks a point that is never within (every run diverged).
            Non-finite values are unusable too. All usable when None.
        fill: the value an unusable point takes for interpolation (the initial value L0). When it
            is None, not finite or itself within the threshold, the crossing next to an unusable
            point is put at the usable neighbour (no credit between them).

    Returns:
        :class:`ToleranceInterval`. Among intervals of equal width the one holding the best point
        wins, then the one at lower lrs. :meth:`ToleranceInterval.none` when no point is usable
        and within, or ``threshold`` is NaN.

    Raises:
        ValueError: shapes differ or a learning rate is not > 0.
    """
    lr = np.asarray(lrs, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.ones(lr.shape, bool) if usable is None else np.asarray(usable, dtype=bool)
    if not (lr.shape == v.shape == ok.shape and lr.ndim == 1):
        raise ValueError(f"lrs, values and usable must have one shape (n,), got {lr.shape}, {v.shape}, {ok.shape}")
    if lr.size and not (np.isfinite(lr).all() and (lr > 0).all()):
        raise ValueError("learning rates must be finite and > 0")
    if not math.isfinite(threshold):
        return ToleranceInterval.none()
    order = np.argsort(lr, kind="stable")
    x, v, ok = np.log10(lr[order]), v[order], ok[order] & np.isfinite(v[order])
    # work in "badness" (lower is better) so one code path serves both directions
    sign = -1.0 if higher_is_better else 1.0
    bad, t = sign * v, sign * threshold
    slack = _EPS * max(1.0, abs(t))
    inside = ok & (bad <= t + slack)
    if not inside.any():
        return ToleranceInterval.none()
    fill_bad = math.inf if fill is None or not math.isfinite(fill) else sign * fill
    if fill_bad <= t + slack:
        fill_bad = math.inf
    bad = np.where(ok, bad, fill_bad)

    pieces: list[tuple[float, float]] = [(x[i], x[i]) for i in np.flatnonzero(inside)]
    for i in range(len(x) - 1):
        a, b = bad[i], bad[i + 1]
        if inside[i] and inside[i + 1]:
            pieces.append((x[i], x[i + 1]))
        elif inside[i] and b > t:
            pieces.append((x[i], x[i] + _crossing(a, b, t) * (x[i + 1] - x[i])))
        elif inside[i + 1] and a > t:
            pieces.append((x[i + 1] - _crossing(b, a, t) * (x[i + 1] - x[i]), x[i + 1]))
    pieces.sort()
    merged: list[list[float]] = []
    for lo, hi in pieces:
        if merged and lo <= merged[-1][1] + 1e-12:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])

    best_x = x[int(np.flatnonzero(inside & (bad == bad[inside].min()))[0])]
    chosen = None
    for lo, hi in merged:
        width = hi - lo
        holds_best = lo - 1e-12 <= best_x <= hi + 1e-12
        if chosen is None or width > chosen[2] + 1e-9 or (
            abs(width - chosen[2]) <= 1e-9 and holds_best and not chosen[3]
        ):
            chosen = (lo, hi, width, holds_best)
    assert chosen is not None
    lo, hi, width, _ = chosen
    censored = bool((inside[0] and lo <= x[0] + 1e-12) or (inside[-1] and hi >= x[-1] - 1e-12))
    return ToleranceInterval(float(10**lo), float(10**hi), float(max(width, 0.0)), censored)


def _crossing(inner: float, outer: float, t: float) -> float:
    """Fraction of the way from a point within (badness ``inner``) to one outside (``outer``) where
    the straight line between them crosses ``t``; 0 when ``outer`` is infinite."""
    if not math.isfinite(outer):
        return 0.0
    return float(min(1.0, max(0.0, (t - inner) / (outer - inner))))


# ---- one row per optimizer ----------------------------------------------------------------------

TOLERANCE_COLUMNS = (
    "learned",
    "best_value",
    "best_lr",
    "initial_value",
    "tolerance_threshold",
    "tolerance_width_decades",
    "tolerance_lr_low",
    "tolerance_lr_high",
    "tolerance_censored",
    "relative_threshold",
    "relative_width_decades",
    "relative_lr_low",
    "relative_lr_high",
    "relative_censored",
)
"""Columns of :func:`tolerance_table`."""


def curve_usable(curve: pd.DataFrame) -> np.ndarray:
    """Per point of an lr curve: a finite value not produced by runs that all diverged.

    Uses ``n_diverged``/``n_seeds`` when the curve has them (the columns of
    :func:`sensitivity.report.metrics.lr_curve`).
    """
    ok = np.isfinite(curve["value"].to_numpy(float))
    if {"n_diverged", "n_seeds"} <= set(curve.columns):
        ok &= curve["n_diverged"].to_numpy(float) < curve["n_seeds"].to_numpy(float)
    return ok


def tolerance_row(
    lrs: Sequence[float],
    values: Sequence[float],
    initial: float,
    *,
    higher_is_better: bool,
    tau: float = DEFAULT_TAU,
    relative_tolerance: float = 0.1,
    usable: Sequence[bool] | None = None,
    points: bool = True,
) -> dict[str, float | bool]:
    """The tolerance figures of one lr curve (the values of :data:`TOLERANCE_COLUMNS`).

    ``learned`` is whether some usable point improves on ``initial``; without one, the best value,
    best lr, thresholds and widths are NaN (an optimizer that never learned has no good lr range).

    Args:
        lrs, values, usable: the curve, shapes ``(n,)`` (see :func:`interpolated_interval`).
        initial: L0, the metric at initialisation (metric units).
        tau: fraction for the improvement threshold (:func:`improvement_threshold`).
        relative_tolerance: for the relative threshold (:func:`relative_threshold`).
        points: a maximised metric's relative tolerance is in absolute points (accuracy); False:
            relative to the best value (a return).
    """
    lr = np.asarray(lrs, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = (np.ones(v.shape, bool) if usable is None else np.asarray(usable, bool)) & np.isfinite(v)
    sign = -1.0 if higher_is_better else 1.0
    learned = bool(ok.any() and math.isfinite(initial) and (sign * v[ok] < sign * initial).any())
    row: dict[str, float | bool] = {c: math.nan for c in TOLERANCE_COLUMNS}
    row.update(learned=learned, initial_value=float(initial), tolerance_censored=False, relative_censored=False)
    if not learned:
        return row
    i = int(np.flatnonzero(ok)[np.argmin(sign * v[ok])])
    best = float(v[i])
    t_imp = improvement_threshold(best, initial, tau, higher_is_better=higher_is_better)
    t_rel = relative_threshold(best, relative_tolerance, higher_is_better=higher_is_better, points=points)
    imp = interpolated_interval(lr, v, t_imp, higher_is_better=higher_is_better, usable=ok, fill=initial)
    rel = interpolated_interval(lr, v, t_rel, higher_is_better=higher_is_better, usable=ok, fill=initial)
    row.update(
        best_value=best, best_lr=float(lr[i]),
        tolerance_threshold=t_imp, tolerance_width_decades=imp.width_decades,
        tolerance_lr_low=imp.lr_low, tolerance_lr_high=imp.lr_high, tolerance_censored=imp.censored,
        relative_threshold=t_rel, relative_width_decades=rel.width_decades,
        relative_lr_low=rel.lr_low, relative_lr_high=rel.lr_high, relative_censored=rel.censored,
    )
    return row


def tolerance_table(
    curve: pd.DataFrame,
    *,
    higher_is_better: bool,
    tau: float = DEFAULT_TAU,
    relative_tolerance: float = 0.1,
    points: bool = True,
) -> pd.DataFrame:
    """:func:`tolerance_row` of each optimizer's lr curve.

    Args:
        curve: one row per optimizer and lr with ``optimizer``, ``lr``, ``value``, ``initial``
            (and optionally ``n_diverged``/``n_seeds``), as :func:`sensitivity.report.metrics.lr_curve`
            returns. L0 is the mean of ``initial`` over the optimizer's points.

    Returns:
        A frame indexed by optimizer (in the curve's order) with :data:`TOLERANCE_COLUMNS`.
    """
    rows = {}
    usable = curve_usable(curve)
    lrs = curve["lr"].to_numpy(float)
    values = curve["value"].to_numpy(float)
    initials = curve["initial"].to_numpy(float)
    for name, at in group_rows(curve["optimizer"]):
        init = initials[at]
        initial = float(np.nanmean(init)) if (~np.isnan(init)).any() else math.nan
        rows[name] = tolerance_row(
            lrs[at], values[at], initial,
            higher_is_better=higher_is_better, tau=tau, relative_tolerance=relative_tolerance,
            usable=usable[at], points=points,
        )
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(TOLERANCE_COLUMNS))
    frame.index.name = "optimizer"
    return frame
