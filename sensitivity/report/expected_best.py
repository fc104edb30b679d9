"""Expected best result after n randomly drawn configurations: how much tuning an optimizer needs.

Dodge, Gururangan, Card, Schwartz & Smith 2019, "Show Your Work: Improved Reporting of Experimental
Results" (EMNLP, arXiv 1909.03004), sec. 3: with N stored results, ordered so that the best is last,
``v_(1) <= ... <= v_(N)`` for a maximised metric (for a minimised one, such as a loss, descending, so
again the best is last), the expected best of n configurations drawn uniformly with replacement is

    E[max_n] = sum_i v_(i) [(i / N)^n - ((i - 1) / N)^n],

since ``(i / N)^n`` is the probability that all n draws fall among the i worst results. The same
weights give ``E[max_n^2]`` and so the standard deviation Dodge et al. plot around the expectation.
Sivaprasad, Mai, Vogels, Jaggi & Fleuret 2020, "Optimizer Benchmarking Needs to Account for
Hyperparameter Tuning" (ICML, arXiv 1910.11758) use this curve against the tuning budget n as the
optimizer's *tunability*: an optimizer whose curve rises (falls, for a loss) quickly needs little tuning.

Here each stored trial is one equally likely draw: a random/qmc study's samples are draws from the
search distribution already, and a grid study's points are taken as equally likely (a uniform
distribution over the grid). With several seeds every (point, seed) trial is a draw: one training
run of a randomly drawn configuration. Diverged trials are draws too, counted at the initial value (L0).
The computation is exact (no resampling). Tang et al. 2020, "Showing Your Work Doesn't
Always Work" (ACL, arXiv 2004.13705) point out that this estimator, which draws with replacement from
the N stored results, is biased when n approaches N; :func:`expected_best_unbiased` is their unbiased estimator (draws
without replacement), and :func:`expected_best_intervals` tabulates both with bootstrap intervals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def expected_best(values: Sequence[float], n: Sequence[int] | int, *, higher_is_better: bool) -> np.ndarray:
    """Exact expected best of ``n`` draws with replacement from ``values`` (Dodge et al. 2019, eq. 1).

    Args:
        values: the N results (metric units), shape ``(N,)``; non-finite values are dropped.
        n: the number(s) of draws, each >= 1; shape ``(k,)`` or a scalar.
        higher_is_better: True for a maximised metric (best = largest), False for a minimised one.

    Returns:
        Shape ``(k,)`` (or ``(1,)`` for a scalar ``n``): the expected best value after each n, in the
        metric's units; NaN everywhere when no value is finite.

    Raises:
        ValueError: some n < 1.
    """
    return expected_best_moments(values, n, higher_is_better=higher_is_better)[0]


def expected_best_moments(
    values: Sequence[float], n: Sequence[int] | int, *, higher_is_better: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(E[best of n], standard deviation of the best of n)`` for each n, shapes ``(k,)``.

    See :func:`expected_best`; the standard deviation is ``sqrt(E[best^2] - E[best]^2)`` with the same
    weights (the spread Dodge et al. 2019 shade around their curves).
    """
    ns = np.atleast_1d(np.asarray(n, dtype="float64"))
    if (ns < 1).any():
        raise ValueError(f"the number of draws n must be >= 1, got {ns.min():g}")
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = np.full(ns.shape, np.nan)
        return nan, nan.copy()
    v = np.sort(v) if higher_is_better else np.sort(v)[::-1]  # best last
    size = v.size
    i = np.arange(1, size + 1, dtype="float64")
    weights = (i[None, :] / size) ** ns[:, None] - ((i[None, :] - 1) / size) ** ns[:, None]
    mean = weights @ v
    second = weights @ (v * v)
    std = np.sqrt(np.maximum(second - mean * mean, 0.0))
    return mean, std


def expected_best_table(
    values: pd.Series, by: pd.Series, *, higher_is_better: bool, n_max: int | None = None
) -> pd.DataFrame:
    """The expected-best-after-n curve of each group (optimizer), for n = 1 .. its number of draws.

    Args:
        values: one value per trial (the final metric, diverged runs counted at the initial value), shape ``(T,)``.
        by: the group of each trial (the optimizer name), aligned with ``values``.
        n_max: largest n to tabulate; each group's number of finite values when None.

    Returns:
        Long frame with columns ``optimizer``, ``n``, ``expected_best``, ``std``, ``draws`` (N),
        ``min_value`` and ``max_value`` (the range of the group's values, which bounds the best of
        any n): one row per group and n, groups in order of first appearance.
    """
    rows = []
    for name, v in values.groupby(by, sort=False):
        finite = v[np.isfinite(v.to_numpy(float))]
        size = len(finite)
        if size == 0:
            continue
        ns = np.arange(1, (n_max or size) + 1)
        mean, std = expected_best_moments(finite.to_numpy(float), ns, higher_is_better=higher_is_better)
        rows.append(pd.DataFrame({"optimizer": name, "n": ns, "expected_best": mean, "std": std, "draws": size,
                                  "min_value": float(finite.min()), "max_value": float(finite.max())}))
    if not rows:
        return pd.DataFrame(columns=["optimizer", "n", "expected_best", "std", "draws", "min_value", "max_value"])
    return pd.concat(rows, ignore_index=True)


# ---- Tang et al. 2020: the unbiased estimator, and intervals ------------------------------------

def expected_best_unbiased(values: Sequence[float], n: Sequence[int] | int, *, higher_is_better: bool) -> np.ndarray:
    """Expected best of ``n`` draws *without* replacement from ``values`` (Tang et al. 2020, sec. 3).

    With the N results ordered best last, ``v_(1) .. v_(N)``, the best of a uniformly drawn n-subset is
    ``v_(i)`` with probability ``C(i - 1, n - 1) / C(N, n)``, so

        E[best of n] = sum_{i >= n} v_(i) C(i - 1, n - 1) / C(N, n).

    This is the U-statistic of the kernel ``max(x_1..x_n)``: an unbiased estimate of the expected best of
    n configurations drawn from the search distribution, where :func:`expected_best` (Dodge et al. 2019,
    draws with replacement) is biased towards the sample's best as n approaches N. Tang, Lee, Lin & Ji
    2020, "Showing Your Work Doesn't Always Work", ACL, arXiv 2004.13705.

    Args:
        values: the N results (metric units), shape ``(N,)``; non-finite values are dropped.
        n: the subset size(s), shape ``(k,)`` or a scalar, each ``1 <= n``; NaN where ``n > N``.

    Returns:
        Shape ``(k,)``: the estimate for each n, in the metric's units.

    Raises:
        ValueError: some n < 1.
    """
    ns = np.atleast_1d(np.asarray(n, dtype="float64"))
    if (ns < 1).any():
        raise ValueError(f"the number of draws n must be >= 1, got {ns.min():g}")
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    v = np.sort(v) if higher_is_better else np.sort(v)[::-1]
    return _unbiased_weights(v.size, ns) @ v if v.size else np.full(ns.shape, np.nan)


def _unbiased_weights(size: int, ns: np.ndarray) -> np.ndarray:
    """Shape ``(k, N)``: ``C(i - 1, n - 1) / C(N, n)`` for i = 1..N (rows of n > N are NaN)."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, size + 1, dtype="float64")))])

    def log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(a, b)
        ok = (b >= 0) & (b <= a)
        ai, bi = np.where(ok, a, 0).astype(int), np.where(ok, b, 0).astype(int)
        return np.where(ok, log_fact[ai] - log_fact[bi] - log_fact[ai - bi], -np.inf)

    i = np.arange(1, size + 1)[None, :]
    n = np.minimum(ns, size).astype(int)[:, None]
    w = np.exp(log_comb(i - 1, n - 1) - log_comb(np.array(size), n))
    return np.where(ns[:, None] <= size, w, np.nan)


ESTIMATORS = {
    "dodge": "Dodge et al. 2019, draws with replacement (biased as n -> N)",
    "tang": "Tang et al. 2020, draws without replacement (unbiased)",
}
"""The two expected-best estimators of :func:`expected_best_intervals`, in words."""

BOOTSTRAP_DRAWS = 1000
"""Resamples of the trials for the intervals of :func:`expected_best_intervals`."""


def expected_best_intervals(
    values: pd.Series, by: pd.Series, *, higher_is_better: bool, ns: Sequence[int] | None = None,
    level: float = 0.95, draws: int = BOOTSTRAP_DRAWS, random_state: int = 0,
) -> pd.DataFrame:
    """Both estimators of the expected best after n trials, per group, with bootstrap intervals.

    The interval is the percentile interval over ``draws`` resamples of the group's N trials with
    replacement (each trial one draw from the search distribution, as both estimators assume; Efron &
    Tibshirani 1993, ch. 13), with a fixed random state so that reports are reproducible.

    Args:
        values: one value per trial (the final metric, diverged runs counted at the initial value), shape ``(T,)``.
        by: the group (optimizer) of each trial, aligned with ``values``.
        ns: the n to tabulate (at most N per group); 1..N when N <= 100, else 60 log-spaced n.

    Returns:
        Long frame: ``optimizer``, ``estimator`` (a key of :data:`ESTIMATORS`), ``n``,
        ``expected_best``, ``low``, ``high``, ``draws`` (N), in metric units; groups in order of
        first appearance.
    """
    rng = np.random.default_rng(random_state)
    alpha = (1.0 - level) / 2.0
    parts = []
    for name, v in values.groupby(by, sort=False):
        x = v.to_numpy(float)
        x = x[np.isfinite(x)]
        size = x.size
        if size == 0:
            continue
        if ns is None:
            grid = np.arange(1, size + 1) if size <= 100 else np.unique(np.geomspace(1, size, 60).round().astype(int))
        else:
            grid = np.array([n for n in ns if 1 <= n <= size], dtype=int)
        sample = x[rng.integers(0, size, (draws, size))]
        ordered = np.sort(sample, axis=1) if higher_is_better else -np.sort(-sample, axis=1)
        best_last = np.sort(x) if higher_is_better else np.sort(x)[::-1]
        i = np.arange(1, size + 1, dtype="float64")
        dodge_w = (i[None, :] / size) ** grid[:, None] - ((i[None, :] - 1) / size) ** grid[:, None]
        tang_w = _unbiased_weights(size, grid.astype(float))
        for key, w in (("dodge", dodge_w), ("tang", tang_w)):
            boot = ordered @ w.T  # (draws, k)
            parts.append(pd.DataFrame({
                "optimizer": name, "estimator": key, "n": grid, "expected_best": w @ best_last,
                "low": np.quantile(boot, alpha, axis=0), "high": np.quantile(boot, 1 - alpha, axis=0), "draws": size,
            }))
    columns = ["optimizer", "estimator", "n", "expected_best", "low", "high", "draws"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
