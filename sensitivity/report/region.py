"""The good region in two dimensions: which share of a swept box of hyperparameters is within tolerance.

For a pair of swept hyperparameters (lr x beta1, lr x beta2, beta1 x beta2, lr x gamma, lr x weight
decay, ...) the *good-region share* is the fraction of the swept box's area whose final metric is
within the tolerance threshold of :mod:`sensitivity.report.tolerance` (the same threshold as the
optimizer's 1-D tolerance width, from its best value L* and initial value L0). It is the 2-D
counterpart of the tolerance width (Wortsman et al. 2023, arXiv 2309.14322, figs. 1 and 9 show the same
lr x hyperparameter regions as heatmaps; the README's "Metrics" section defines the share).

Axes. Each hyperparameter is measured on the axis it is swept on:

* learning rate and weight decay: log10 (decades); a weight-decay grid that contains 0 is measured
  in grid steps instead (each step one unit), since 0 has no logarithm;
* beta1, beta2 and gamma: ``-log10(1 - beta)``, decades of the averaging horizon ``1 / (1 - beta)``
  (0.9, 0.99, 0.999 are equally spaced; so are 0.8, 0.9, 0.95), which is how the random and qmc
  samplers draw beta1 and how momentum grids are laid out.

Two estimators, chosen by the data:

* a full grid in the pair (every combination present): the cell values are interpolated bilinearly
  on those axes and the area within the threshold is integrated exactly (piecewise closed form);
  cells whose runs all diverged count as outside and take the value L0 for interpolation, as in 1-D;
* scattered samples (random/qmc studies): the share of sampled points within the threshold, an
  unbiased Monte-Carlo estimate of the area share of the whole sampled box, since the samplers draw
  uniformly on these axes (then it is the share of the full box, not of the pair's projection).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sensitivity.report.grouping import group_rows

PAIR_AXES = ("lr", "beta1", "beta2", "gamma", "weight_decay")
"""Hyperparameters a pair can be formed from, in display order."""

_MOMENTUM_LIKE = ("beta1", "beta2", "gamma")

_MAX_TICKS = {"lr": 12}
_MAX_OTHER = 8


def swept_axes(complete: pd.DataFrame) -> list[str]:
    """Hyperparameters (lr included) that take more than one value for some optimizer, in :data:`PAIR_AXES` order.

    ``complete``: the COMPLETE trials (:func:`sensitivity.report.metrics.complete_trials`).
    """
    out = []
    for hp in PAIR_AXES:
        if hp in complete and (complete.groupby("optimizer")[hp].nunique(dropna=True) > 1).any():
            out.append(hp)
    return out


def swept_pairs(complete: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs ``(x, y)`` of hyperparameters that one optimizer varied together, in :data:`PAIR_AXES` order.

    ``complete``: the COMPLETE trials (:func:`sensitivity.report.metrics.complete_trials`).
    """
    axes = swept_axes(complete)
    pairs = []
    for i, x in enumerate(axes):
        for y in axes[i + 1:]:
            counts = complete.groupby("optimizer")[[x, y]].nunique(dropna=True)
            if ((counts[x] > 1) & (counts[y] > 1)).any():
                pairs.append((x, y))
    return pairs


def bin_samples(done: pd.DataFrame, axes: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Snap continuous samples to half-decade bins on each axis with many distinct values (for a heatmap).

    lr and weight decay: half decades of the value (0 stays 0); beta1, beta2, gamma: half decades
    of ``1 - beta`` (0.68, 0.9, 0.968, 0.99, ...). An axis with at most 12 distinct values (lr) or
    8 (the others) per optimizer is left as it is (a grid). ``done``: the COMPLETE trials
    (:attr:`~sensitivity.report.analysis.StudyAnalysis.complete`). Returns a binned copy and a
    note per binned axis.
    """
    done = done.copy()
    notes = []
    for hp in axes:
        limit = _MAX_TICKS.get(hp, _MAX_OTHER)
        if done.groupby("optimizer")[hp].nunique().max() <= limit:
            continue
        v = done[hp].astype(float)
        if hp in ("lr", "weight_decay"):
            snapped = np.where(v > 0, 10 ** (np.round(2 * np.log10(v.where(v > 0, 1.0))) / 2), v)
            done[hp] = pd.Series(snapped, index=done.index).round(12)
            notes.append(f"{'learning rate' if hp == 'lr' else 'weight decay'} binned to half decades")
        else:
            one_minus = np.clip(1.0 - v, 1e-6, 1.0)
            done[hp] = (1.0 - 10 ** (np.round(2 * np.log10(one_minus)) / 2)).round(4)
            notes.append(f"{hp} binned to half decades of 1 - {hp}")
    return done, notes


def axis_positions(name: str, values: Sequence[float]) -> tuple[np.ndarray, str]:
    """Coordinates of sorted distinct hyperparameter values on the axis the share is measured on.

    Args:
        name: one of :data:`PAIR_AXES`.
        values: the distinct swept values, shape ``(k,)``, sorted increasingly.

    Returns:
        ``(positions, axis description)``; positions increase with the values.

    Raises:
        ValueError: unknown name, or a beta/gamma outside [0, 1), or a learning rate <= 0.
    """
    v = np.asarray(values, dtype="float64")
    if name == "lr":
        if (v <= 0).any():
            raise ValueError("learning rates must be > 0")
        return np.log10(v), "log10(lr)"
    if name in _MOMENTUM_LIKE:
        if ((v < 0) | (v >= 1)).any():
            raise ValueError(f"{name} must lie in [0, 1)")
        return -np.log10(1.0 - v), f"-log10(1 - {name})"
    if name == "weight_decay":
        if (v > 0).all():
            return np.log10(v), "log10(weight decay)"
        return np.arange(v.size, dtype="float64"), "weight-decay grid steps"
    raise ValueError(f"unknown hyperparameter {name!r}; choose from {PAIR_AXES}")


def bilinear_share(
    x: Sequence[float],
    y: Sequence[float],
    values: np.ndarray,
    threshold: float,
    *,
    higher_is_better: bool,
    usable: np.ndarray | None = None,
    fill: float | None = None,
) -> float:
    """Share of the box ``[x0, x_last] x [y0, y_last]`` where the bilinear interpolant is within ``threshold``.

    Args:
        x: increasing axis positions, shape ``(nx,)``; y: shape ``(ny,)``.
        values: the metric at the grid points, shape ``(ny, nx)`` (row i at ``y[i]``).
        threshold: metric level (within: ``<=`` for a minimised metric, ``>=`` when ``higher_is_better``).
        usable: shape ``(ny, nx)``; False (or a non-finite value) marks a point never within.
        fill: value an unusable point takes for interpolation (L0); when None, not finite or itself
            within, such a point is treated as infinitely bad (no credit in its cells).

    Returns:
        The share in [0, 1]. With one value on an axis the box is a line (or a point) on it and
        the share is the 1-D length fraction (or 0/1). NaN when ``threshold`` is NaN.

    Each cell's area is integrated exactly: for fixed y the interpolant is linear in x, so the
    within-length is a clipped linear-fractional function of y, integrated in closed form between
    its breakpoints.
    """
    xs = np.asarray(x, dtype="float64")
    ys = np.asarray(y, dtype="float64")
    v = np.asarray(values, dtype="float64")
    if v.shape != (ys.size, xs.size):
        raise ValueError(f"values must have shape (len(y), len(x)) = {(ys.size, xs.size)}, got {v.shape}")
    if not math.isfinite(threshold):
        return math.nan
    ok = np.isfinite(v) if usable is None else (np.asarray(usable, bool) & np.isfinite(v))
    sign = -1.0 if higher_is_better else 1.0
    t = sign * threshold
    bad = sign * v
    fill_bad = math.inf if fill is None or not math.isfinite(fill) else sign * fill
    if fill_bad <= t:
        fill_bad = math.inf
    bad = np.where(ok, bad, fill_bad)
    if xs.size == 1 and ys.size == 1:
        return float(bad[0, 0] <= t)
    if ys.size == 1 or xs.size == 1:  # a line: the 1-D length fraction
        pos, line = (xs, bad[0]) if ys.size == 1 else (ys, bad[:, 0])
        total = pos[-1] - pos[0]
        inside = sum(_segment_length(line[i], line[i + 1], t) * (pos[i + 1] - pos[i]) for i in range(pos.size - 1))
        return float(inside / total)
    area = 0.0
    for i in range(ys.size - 1):
        for j in range(xs.size - 1):
            frac = _cell_fraction(bad[i, j], bad[i, j + 1], bad[i + 1, j], bad[i + 1, j + 1], t)
            area += frac * (xs[j + 1] - xs[j]) * (ys[i + 1] - ys[i])
    return float(area / ((xs[-1] - xs[0]) * (ys[-1] - ys[0])))


def _segment_length(a: float, b: float, t: float) -> float:
    """Fraction of s in [0, 1] with ``a + (b - a) s <= t``; an infinitely bad end gives no credit."""
    if math.isinf(a) or math.isinf(b):
        return 0.0
    if a <= t and b <= t:
        return 1.0
    if a > t and b > t:
        return 0.0
    s = (t - a) / (b - a)
    return s if a <= t else 1.0 - s


def _cell_fraction(f00: float, f10: float, f01: float, f11: float, t: float) -> float:
    """Area fraction of the unit square where the bilinear interpolant of the corner values is <= t.

    ``f(s, u) = a(u) + (b(u) - a(u)) s`` with ``a(u) = f00 + (f01 - f00) u`` (the x = 0 edge) and
    ``b(u) = f10 + (f11 - f10) u`` (the x = 1 edge). A cell with an infinitely bad corner gets
    credit only along edges, i.e. none.
    """
    corners = (f00, f10, f01, f11)
    if any(math.isinf(c) for c in corners):
        return 0.0
    if max(corners) <= t:
        return 1.0
    if min(corners) > t:
        return 0.0
    # numerator p + q u = t - a(u); denominator r + w u = b(u) - a(u)
    p, q = t - f00, -(f01 - f00)
    r, w = f10 - f00, (f11 - f10) - (f01 - f00)
    cuts = {0.0, 1.0}
    for c0, c1 in ((p, q), (p - r, q - w), (r, w)):  # ratio = 0, ratio = 1, denominator = 0
        if c1 != 0.0:
            root = -c0 / c1
            if 0.0 < root < 1.0:
                cuts.add(root)
    edges = sorted(cuts)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo <= 0:
            continue
        mid = 0.5 * (lo + hi)
        den = r + w * mid
        num = p + q * mid
        if abs(den) < 1e-15 and abs(w) < 1e-15:  # a(u) = b(u): the line at height a(u) is all in or all out
            total += (hi - lo) * float(num >= 0)
            continue
        ratio = num / den
        if den > 0:  # b > a: within for s <= ratio
            if ratio <= 0:
                continue
            if ratio >= 1:
                total += hi - lo
                continue
            total += _integral_ratio(p, q, r, w, lo, hi)
        else:  # b < a: within for s >= ratio
            if ratio >= 1:
                continue
            if ratio <= 0:
                total += hi - lo
                continue
            total += (hi - lo) - _integral_ratio(p, q, r, w, lo, hi)
    return float(min(1.0, max(0.0, total)))


def _integral_ratio(p: float, q: float, r: float, w: float, lo: float, hi: float) -> float:
    """``int_lo^hi (p + q u) / (r + w u) du`` on an interval where the denominator has no root."""
    if abs(w) < 1e-15:
        return (p * (hi - lo) + 0.5 * q * (hi * hi - lo * lo)) / r
    k = q / w
    c = p - k * r
    if abs(c) <= 1e-15 * max(1.0, abs(p)):  # numerator and denominator share the root: the ratio is k
        return k * (hi - lo)
    return k * (hi - lo) + (c / w) * math.log(abs((r + w * hi) / (r + w * lo)))


def scattered_share(values: Sequence[float], threshold: float, *, higher_is_better: bool,
                    usable: Sequence[bool] | None = None) -> float:
    """Share of sampled points (random/qmc) within ``threshold``; unusable points are outside.

    Returns NaN for no points or a NaN threshold.
    """
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v) if usable is None else (np.asarray(usable, bool) & np.isfinite(v))
    if v.size == 0 or not math.isfinite(threshold):
        return math.nan
    within = ok & ((v >= threshold) if higher_is_better else (v <= threshold))
    return float(within.mean())


def pair_grid(cells: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Cells of one optimizer arranged as a full grid over ``x`` and ``y``, or None when not a full grid.

    Args:
        cells: one row per distinct (x, y) with ``value`` (and optionally ``n_diverged``/``n_seeds``).

    Returns:
        ``(x values, y values, values (ny, nx), usable (ny, nx))`` when every combination of the
        distinct x and y values is present exactly once and each axis has at least 2 values.
    """
    return grid_arrays(cells[x].to_numpy(float), cells[y].to_numpy(float), cells["value"].to_numpy(float),
                       _usable(cells))


def _usable(cells: pd.DataFrame) -> np.ndarray:
    """Per row: a finite value not produced by runs that all diverged (``n_diverged < n_seeds``)."""
    ok = np.isfinite(cells["value"].to_numpy(float))
    if {"n_diverged", "n_seeds"} <= set(cells.columns):
        ok &= cells["n_diverged"].to_numpy(float) < cells["n_seeds"].to_numpy(float)
    return ok


def grid_arrays(xs: np.ndarray, ys: np.ndarray, values: np.ndarray,
                usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`pair_grid` on arrays of shape ``(n,)``: the cells' x, y, value and usable flag."""
    if np.isnan(xs).any() or np.isnan(ys).any():
        return None
    xv, col = np.unique(xs, return_inverse=True)
    yv, row = np.unique(ys, return_inverse=True)
    if xv.size < 2 or yv.size < 2 or xs.size != xv.size * yv.size:
        return None
    mat = np.full((yv.size, xv.size), np.nan)
    ok = np.zeros_like(mat, dtype=bool)
    seen = np.zeros_like(mat, dtype=bool)
    seen[row, col] = True
    if not seen.all():  # n cells on an n-cell grid but one missing: a duplicate
        return None
    mat[row, col] = values
    ok[row, col] = usable
    return xv, yv, mat, ok


def good_region_share(
    cells: pd.DataFrame,
    x: str,
    y: str,
    threshold: float,
    initial: float,
    *,
    higher_is_better: bool,
) -> tuple[float, str]:
    """The good-region share of one optimizer in the ``x`` x ``y`` box.

    Args:
        cells: one optimizer's points: for a grid, one row per (x, y) cell holding the aggregated
            ``value`` (best over the other hyperparameters, mean over seeds) with ``n_diverged``
            and ``n_seeds``; for scattered samples, one row per sampled point.
        x, y: hyperparameter names from :data:`PAIR_AXES`.
        threshold: the optimizer's tolerance threshold (metric units).
        initial: L0, used to interpolate towards cells whose runs all diverged.

    Returns:
        ``(share in [0, 1], estimator)`` with estimator ``"bilinear grid"`` or ``"sampled points"``;
        ``(NaN, "")`` when the threshold is NaN (the optimizer never learned).
    """
    return _share_of(x, y, cells[x].to_numpy(float), cells[y].to_numpy(float), cells["value"].to_numpy(float),
                     _usable(cells), threshold, initial, higher_is_better=higher_is_better)


def _share_of(x: str, y: str, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, usable: np.ndarray,
              threshold: float, initial: float, *, higher_is_better: bool) -> tuple[float, str]:
    """:func:`good_region_share` on the cells' arrays, shape ``(n,)``."""
    if not math.isfinite(threshold):
        return math.nan, ""
    grid = grid_arrays(xs, ys, values, usable)
    if grid is None:
        share = scattered_share(values, threshold, higher_is_better=higher_is_better, usable=usable)
        return share, "sampled points"
    xv, yv, mat, ok = grid
    px, _ = axis_positions(x, xv)
    py, _ = axis_positions(y, yv)
    share = bilinear_share(px, py, mat, threshold, higher_is_better=higher_is_better, usable=ok, fill=initial)
    return share, "bilinear grid"


GOOD_REGION_COLUMNS = ("optimizer", "x", "y", "share", "estimator")


def good_region_table(
    cells: Mapping[tuple[str, str], pd.DataFrame],
    thresholds: Mapping[str, float],
    initials: Mapping[str, float],
    *,
    higher_is_better: bool,
) -> pd.DataFrame:
    """The good-region share of every optimizer in every swept pair.

    Args:
        cells: swept pair ``(x, y)`` -> its cells, :func:`sensitivity.report.metrics.pair_table`
            of the completed trials' configurations.
        thresholds: optimizer -> its tolerance threshold (NaN: it never learned -> share NaN).
        initials: optimizer -> L0 (interpolation towards cells whose runs all diverged).
        higher_is_better: the direction of the metric the thresholds are on.

    Returns:
        Long frame with :data:`GOOD_REGION_COLUMNS`: one row per pair and optimizer that varied
        both hyperparameters of the pair.
    """
    rows = []
    for (x, y), table in cells.items():
        xs, ys = table[x].to_numpy(float), table[y].to_numpy(float)
        values, usable = table["value"].to_numpy(float), _usable(table)
        for name, at in group_rows(table["optimizer"]):
            if np.unique(xs[at][~np.isnan(xs[at])]).size < 2 or np.unique(ys[at][~np.isnan(ys[at])]).size < 2:
                continue
            share, how = _share_of(x, y, xs[at], ys[at], values[at], usable[at], thresholds.get(name, math.nan),
                                   initials.get(name, math.nan), higher_is_better=higher_is_better)
            rows.append({"optimizer": name, "x": x, "y": y, "share": share, "estimator": how})
    return pd.DataFrame(rows, columns=list(GOOD_REGION_COLUMNS))
