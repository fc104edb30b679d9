"""How much of a figure is seed noise: the bootstrap over seeds, and paired differences between optimizers.

Every summary figure of a study (best value, LR sensitivity, tolerance widths, good-region shares,
divergence rate, ...) is a function of the trials of all its seeds. The *seed bootstrap* (Efron &
Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13 for the percentile interval) recomputes
the figure on studies whose seeds are drawn with replacement from the stored ones: a draw of seeds
``(0, 0, 2)`` is the study with seed 0's trials twice and seed 2's once, so every per-point mean over
seeds becomes the mean over the drawn seeds. The interval is the percentile interval of the
recomputed figure.

* **Exact when small.** With S seeds there are only ``C(2S - 1, S)`` distinct draws (3 for S = 2,
  10 for S = 3, 126 for S = 5); up to :data:`EXACT_LIMIT` of them the bootstrap distribution is
  enumerated exactly, each draw with its multinomial probability ``S! / prod(c_i!) / S^S``.
  Beyond that :data:`MONTE_CARLO_DRAWS` draws are made with a fixed random seed, so reports are
  reproducible.
* **Paired.** One draw of seeds applies to every optimizer at once, so the difference between two
  optimizers is computed on the same seeds (and, in a random/qmc study, on the same sampled points).
  A difference *exceeds the seed uncertainty* when the percentile interval of the paired difference
  excludes 0.
* **Caveats.** With 2 or 3 seeds the distribution has 3 or 10 atoms and the interval is coarse and
  too narrow (the bootstrap variance of a mean of S values is ``(S - 1) / S`` of the unbiased one); it
  says how far the figure moves when seeds are swapped, not a guarantee. With one seed there is no
  estimate at all, and the report says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

EXACT_LIMIT = 2000
"""Enumerate the bootstrap distribution exactly when it has at most this many distinct seed draws (S <= 7)."""

MONTE_CARLO_DRAWS = 1000
"""Number of random seed draws beyond :data:`EXACT_LIMIT`."""

DEFAULT_LEVEL = 0.95
"""Coverage of the percentile intervals."""


@dataclasses.dataclass(frozen=True)
class SeedDraw:
    """One bootstrap draw of seeds: how often each stored seed is taken, and the draw's probability."""

    counts: dict[int, int]
    probability: float


def seed_draws(seeds: Sequence[int], *, exact_limit: int = EXACT_LIMIT, draws: int = MONTE_CARLO_DRAWS,
               random_state: int = 0) -> list[SeedDraw]:
    """The bootstrap distribution of draws of ``len(seeds)`` seeds with replacement.

    Args:
        seeds: the distinct stored seeds (S of them).
        exact_limit: enumerate every distinct draw when there are at most this many.
        draws: otherwise, the number of random draws (identical ones merged, probabilities 1/draws).
        random_state: seed of those random draws.

    Returns:
        Draws whose probabilities sum to 1. Exact: each multiset of size S with probability
        ``S! / prod(c_i!) / S^S``.
    """
    seeds = sorted(set(int(s) for s in seeds))
    size = len(seeds)
    if size == 0:
        return []
    if math.comb(2 * size - 1, size) <= exact_limit:
        out = []
        for combo in itertools.combinations_with_replacement(range(size), size):
            counts = np.bincount(combo, minlength=size)
            prob = math.factorial(size) / math.prod(math.factorial(int(c)) for c in counts) / size**size
            out.append(SeedDraw({seeds[i]: int(c) for i, c in enumerate(counts) if c}, prob))
        return out
    rng = np.random.default_rng(random_state)
    merged: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, size, size), minlength=size)
        key = tuple(int(c) for c in counts)
        merged[key] = merged.get(key, 0) + 1
    return [SeedDraw({seeds[i]: c for i, c in enumerate(key) if c}, n / draws) for key, n in merged.items()]


def bootstrap_seeds(trials: pd.DataFrame, level: float) -> np.ndarray | None:
    """The distinct seeds a seed bootstrap of ``trials`` draws from; None with fewer than 2.

    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    seeds = pd.Series(trials["seed"]).dropna().astype(int).unique()
    return seeds if len(seeds) >= 2 else None


def resample_seeds(trials: pd.DataFrame, counts: dict[int, int]) -> pd.DataFrame:
    """The trials frame of one seed draw: each seed's trials repeated ``counts[seed]`` times.

    Trials without a seed (NaN) are kept once, as they are in every draw.
    """
    seed = trials["seed"]
    parts = [trials[seed.isna()]]
    for s, c in counts.items():
        mine = trials[seed == s]
        parts.extend([mine] * c)
    return pd.concat(parts, ignore_index=True)


def weighted_interval(values: np.ndarray, probabilities: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Percentile interval of a discrete distribution.

    Lower end: the smallest value ``v`` with ``P(X <= v) >= (1 - level) / 2``; upper end: the largest
    ``v`` with ``P(X >= v) >= (1 - level) / 2``. Non-finite values are dropped and the remaining
    probabilities renormalised.

    Args:
        values, probabilities: shape ``(k,)``.

    Returns:
        ``(low, high)``; NaN, NaN when no value is finite.
    """
    v = np.asarray(values, dtype="float64")
    p = np.asarray(probabilities, dtype="float64")
    keep = np.isfinite(v)
    if not keep.any():
        return math.nan, math.nan
    v, p = v[keep], p[keep] / p[keep].sum()
    order = np.argsort(v, kind="stable")
    v, p = v[order], p[order]
    alpha = (1.0 - level) / 2.0
    below = np.cumsum(p)
    above = np.cumsum(p[::-1])[::-1]
    low = v[int(np.flatnonzero(below >= alpha - 1e-12)[0])]
    high = v[int(np.flatnonzero(above >= alpha - 1e-12)[-1])]
    return float(low), float(high)


@dataclasses.dataclass
class SeedBootstrap:
    """A statistic of the trials frame, on the study and on each seed draw.

    Attributes:
        estimate: the statistic on the stored study (a frame of numbers, any index).
        replicates: shape ``(draws, rows, columns)``: the statistic on each draw, aligned with
            ``estimate`` (NaN where a draw lacks a row or column).
        probabilities: shape ``(draws,)``.
        n_seeds: the number of stored seeds.
        exact: whether the draws are the exact bootstrap distribution.
        level: coverage of the intervals.
    """

    estimate: pd.DataFrame
    replicates: np.ndarray
    probabilities: np.ndarray
    n_seeds: int
    exact: bool
    level: float = DEFAULT_LEVEL

    def interval(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(low, high)`` frames shaped like :attr:`estimate`: the percentile interval of each cell."""
        rows, cols = self.estimate.shape
        low = np.full((rows, cols), np.nan)
        high = np.full((rows, cols), np.nan)
        for i in range(rows):
            for j in range(cols):
                low[i, j], high[i, j] = weighted_interval(self.replicates[:, i, j], self.probabilities, self.level)
        index, columns = self.estimate.index, self.estimate.columns
        return pd.DataFrame(low, index=index, columns=columns), pd.DataFrame(high, index=index, columns=columns)

    def difference(self, a, b, column: str) -> tuple[float, float, float]:
        """``(estimate, low, high)`` of the paired difference ``statistic[a] - statistic[b]`` in ``column``.

        Raises:
            KeyError: ``a``, ``b`` or ``column`` is not in :attr:`estimate`.
        """
        i, k = self.estimate.index.get_loc(a), self.estimate.index.get_loc(b)
        j = self.estimate.columns.get_loc(column)
        est = float(self.estimate.iloc[i, j] - self.estimate.iloc[k, j])
        low, high = weighted_interval(self.replicates[:, i, j] - self.replicates[:, k, j], self.probabilities, self.level)
        return est, low, high


def seed_bootstrap(
    trials: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    level: float = DEFAULT_LEVEL,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    random_state: int = 0,
) -> SeedBootstrap | None:
    """Recompute ``statistic`` on every seed draw of ``trials`` (paired across optimizers).

    Args:
        trials: the tidy trials frame (its ``seed`` column says which trials belong together).
        statistic: maps a trials frame to a frame of numbers (e.g. one row per optimizer); the
            rows and columns of its value on ``trials`` fix the layout.
        level: coverage of the percentile intervals (0.95).

    Returns:
        A :class:`SeedBootstrap`, or None when the study has fewer than 2 seeds (no estimate).

    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    seeds = bootstrap_seeds(trials, level)
    if seeds is None:
        return None
    estimate = statistic(trials)
    plan = seed_draws(seeds, exact_limit=exact_limit, draws=draws, random_state=random_state)
    reps = np.full((len(plan), *estimate.shape), np.nan)
    for k, draw in enumerate(plan):
        value = statistic(resample_seeds(trials, draw.counts))
        aligned = value.reindex(index=estimate.index, columns=estimate.columns)
        reps[k] = aligned.to_numpy(dtype="float64", na_value=np.nan)
    exact = math.comb(2 * len(seeds) - 1, len(seeds)) <= exact_limit
    probs = np.array([d.probability for d in plan])
    return SeedBootstrap(estimate=estimate, replicates=reps, probabilities=probs, n_seeds=len(seeds),
                         exact=exact, level=level)


def pairwise_differences(boot: SeedBootstrap, columns: Sequence[str]) -> pd.DataFrame:
    """Every ordered-once pair of rows (optimizers) and each column: the paired difference and its interval.

    Returns:
        Long frame with ``metric``, ``a``, ``b``, ``difference`` (a - b on the study), ``low``,
        ``high`` (percentile interval of the paired difference) and ``exceeds`` (the interval
        excludes 0: the difference is larger than the seed uncertainty).
    """
    rows = []
    names = list(boot.estimate.index)
    for column in columns:
        if column not in boot.estimate.columns:
            continue
        for a, b in itertools.combinations(names, 2):
            est, low, high = boot.difference(a, b, column)
            exceeds = bool(math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0))
            rows.append({"metric": column, "a": a, "b": b, "difference": est, "low": low, "high": high,
                         "exceeds": exceeds})
    return pd.DataFrame(rows, columns=["metric", "a", "b", "difference", "low", "high", "exceeds"])
