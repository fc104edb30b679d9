"""The probability that one optimizer's tuned result beats another's (rliable; Agarwal et al. 2021).

Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS, arXiv 2108.13264; the library rliable), sec. 4: for algorithms X and Y
with runs ``x_1..x_m`` and ``y_1..y_n`` on a task, ``P(X > Y) = (1 / mn) sum_i sum_j S(x_i, y_j)`` with
``S = 1`` when x beats y, ``1/2`` at a tie, 0 otherwise (the Mann-Whitney U statistic over mn);
over several tasks the average of the per-task probabilities.

A *run* here is one replicate of the whole tuning: each seed of the study is an independent sweep of
the optimizer, and its tuned result is the best final metric over that seed's configurations
(:func:`tuned_results`). "Beats" follows the metric's direction (a lower loss, a higher accuracy).
Intervals: on one study the report's seed bootstrap (:mod:`sensitivity.report.uncertainty`, one draw of
seeds for both optimizers: paired); across tasks rliable's stratified bootstrap (seeds resampled
within each task, independently across tasks), with a fixed random state.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np
import pandas as pd

from sensitivity.report import metrics as M
from sensitivity.report import uncertainty as U

TASK_DRAWS = 1000
"""Stratified bootstrap draws of :func:`probability_of_improvement_across_tasks`."""


def tuned_results(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each optimizer's tuned result per seed: the best final metric over that seed's trials.

    Returns:
        Frame with ``optimizer``, ``seed``, ``value`` (metric units; diverged runs at L0, as
        :func:`sensitivity.report.metrics.metric_values`), one row per optimizer and seed.
    """
    done = M.complete_trials(trials)
    frame = pd.DataFrame({"optimizer": done["optimizer"].to_numpy(), "seed": done["seed"].to_numpy(),
                          "value": M.metric_values(done, metric).to_numpy(float)})
    frame = frame[np.isfinite(frame["value"])]
    best = frame.groupby(["optimizer", "seed"])["value"].agg("max" if M.higher_is_better(metric) else "min")
    return best.reset_index()


def _beats(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """``S(x_i, y_j)``, shape ``(m, n)``: 1 where x_i beats y_j, 1/2 at a tie, 0 otherwise."""
    diff = x[:, None] - y[None, :]
    if not higher_is_better:
        diff = -diff
    return (diff > 0) + 0.5 * (diff == 0)


def probability_of_improvement(x, y, *, higher_is_better: bool) -> float:
    """``P(X > Y)`` of runs ``x`` (shape ``(m,)``) and ``y`` (shape ``(n,)``); NaN when either is empty."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(_beats(x, y, higher_is_better).mean())


def improvement_table(tuned: pd.DataFrame, metric: str, *, level: float = U.DEFAULT_LEVEL) -> pd.DataFrame:
    """``P(A beats B)`` for every ordered pair of optimizers of one study, with the seed-bootstrap interval.

    Args:
        tuned: :func:`tuned_results` of the study.

    Returns:
        Frame with ``a``, ``b``, ``probability``, ``low``, ``high`` (NaN with one seed), ``n_seeds``
        (seeds both have), ``decided`` (the interval excludes 1/2). Optimizers in catalog order.
    """
    hib = M.higher_is_better(metric)
    names = M.optimizer_order(tuned["optimizer"])
    wide = tuned.pivot_table(index="seed", columns="optimizer", values="value", aggfunc="first")
    rows = []
    for a, b in itertools.permutations(names, 2):
        both = wide[[a, b]].dropna()
        x, y = both[a].to_numpy(float), both[b].to_numpy(float)
        p = probability_of_improvement(x, y, higher_is_better=hib)
        low = high = math.nan
        if len(both) >= 2:
            seeds = list(both.index)
            plan = U.seed_draws(seeds)
            kernel = _beats(x, y, hib)
            where = {s: i for i, s in enumerate(seeds)}
            counts = np.zeros((len(plan), len(seeds)))
            for d, draw in enumerate(plan):
                for s, c in draw.counts.items():
                    counts[d, where[s]] = c
            reps = np.einsum("di,ij,dj->d", counts, kernel, counts) / len(seeds) ** 2
            low, high = U.weighted_interval(reps, np.array([d.probability for d in plan]), level)
        decided = bool(math.isfinite(low) and (low > 0.5 or high < 0.5))
        rows.append({"a": a, "b": b, "probability": p, "low": low, "high": high, "n_seeds": len(both),
                     "decided": decided})
    return pd.DataFrame(rows, columns=["a", "b", "probability", "low", "high", "n_seeds", "decided"])


def probability_of_improvement_across_tasks(
    tuned_by_task: Mapping[str, pd.DataFrame], higher_is_better: Mapping[str, bool], a: str, b: str, *,
    level: float = U.DEFAULT_LEVEL, draws: int = TASK_DRAWS, random_state: int = 0,
) -> dict[str, float]:
    """rliable's aggregate ``P(A > B)``: the mean over tasks (those where both ran) of the per-task probability.

    Args:
        tuned_by_task: task -> :func:`tuned_results` of its study.
        higher_is_better: task -> the direction of its metric.

    Returns:
        ``{"probability", "low", "high", "tasks"}``; the interval from ``draws`` stratified bootstrap
        draws (seeds resampled with replacement within each task); NaN when no task has both.
    """
    rng = np.random.default_rng(random_state)
    per_task, boots = [], []
    for task, tuned in tuned_by_task.items():
        wide = tuned.pivot_table(index="seed", columns="optimizer", values="value", aggfunc="first")
        if a not in wide or b not in wide:
            continue
        both = wide[[a, b]].dropna()
        if both.empty:
            continue
        kernel = _beats(both[a].to_numpy(float), both[b].to_numpy(float), higher_is_better[task])
        size = len(both)
        per_task.append(kernel.mean())
        picks = rng.integers(0, size, (draws, size))
        counts = np.stack([np.bincount(p, minlength=size) for p in picks]).astype(float)
        boots.append(np.einsum("di,ij,dj->d", counts, kernel, counts) / size**2)
    if not per_task:
        return {"probability": math.nan, "low": math.nan, "high": math.nan, "tasks": 0}
    mean_boot = np.mean(boots, axis=0)
    alpha = (1.0 - level) / 2.0
    return {"probability": float(np.mean(per_task)), "low": float(np.quantile(mean_boot, alpha)),
            "high": float(np.quantile(mean_boot, 1 - alpha)), "tasks": len(per_task)}
