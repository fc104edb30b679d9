"""The seed bootstrap of the report's figures, all draws measured together.

The plain seed bootstrap (:func:`sensitivity.report.uncertainty.seed_bootstrap`) builds each draw's
trials frame (every drawn seed's trials, repeated as often as it was drawn) and recomputes the
statistic on it. For the report's statistic, a pandas pipeline from the configuration table to the
summary numbers, that costs about 0.3 s a draw: 1,000 Monte Carlo draws of a 93-seed study took
minutes. Two facts make it cheap:

* **A draw changes only the weights of seeds.** Every column of
  :func:`sensitivity.report.metrics.config_table` is a sum, a count, a minimum or a maximum over a
  configuration's trials. So :class:`SeedCells` sums each (configuration, seed) once, and the
  tables of a block of draws are sums over seeds weighted by the draws' seed counts, shape
  ``(draws, seeds)`` (minima and maxima over the seeds a draw contains).
* **Every later step is per optimizer.** The lr curve, best points, tolerance widths, good-region
  shares, LR sensitivity and divergence rate of an optimizer read only that optimizer's rows. So the
  block's tables are stacked into one table in which optimizer ``o`` of draw ``k`` is named
  :func:`draw_name` ``(o, k)``, and the unchanged pipeline runs once per block; its rows are split
  back with :func:`split_name`.

The draws and their probabilities are :func:`~sensitivity.report.uncertainty.seed_draws`', so the
result is the plain bootstrap's: the same replicates up to the rounding of a sum taken in another
order (1e-12 relative; the good-region share, whose contour through a cell amplifies that rounding
when a corner lies almost on the threshold, 1e-7) (tests/report/test_resampling.py compares the two on grids, random samples, missing seeds,
diverged runs and NaN values), and the same :class:`~sensitivity.report.uncertainty.SeedBootstrap`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from sensitivity.report import metrics
from sensitivity.report.uncertainty import (
    DEFAULT_LEVEL,
    EXACT_LIMIT,
    MONTE_CARLO_DRAWS,
    SeedBootstrap,
    bootstrap_seeds,
    seed_draws,
)

SEPARATOR = "\x1f"
"""Between an optimizer's name and its draw number in a stacked table (the ASCII unit separator:
below every printable character, so stacked names sort as the optimizers do)."""

BLOCK_ROWS = 200_000
"""At most this many configuration rows per block of draws measured together."""

BLOCK_ELEMENTS = 20_000_000
"""At most this many (draw, configuration, seed) elements in a block's minimum/maximum step."""

KEYS = ("optimizer", "lr", *metrics.HP_COLUMNS)


def draw_name(optimizer: str, draw: int) -> str:
    """Optimizer ``optimizer`` of draw ``draw`` in a stacked table: ``"adam\\x1f12"``."""
    return f"{optimizer}{SEPARATOR}{draw}"


def split_name(name: str) -> tuple[str, int]:
    """Inverse of :func:`draw_name`.

    Raises:
        ValueError: ``name`` has no draw number.
    """
    optimizer, sep, draw = str(name).rpartition(SEPARATOR)
    if not sep:
        raise ValueError(f"{name!r} is not a stacked optimizer name (optimizer{SEPARATOR!r}draw)")
    return optimizer, int(draw)


@dataclasses.dataclass(frozen=True)
class SeedCells:
    """Per configuration and seed sums of a study's completed trials, from which any seed draw's
    :func:`~sensitivity.report.metrics.config_table` follows.

    Attributes:
        keys: the configurations, shape ``(C,)`` rows of :data:`KEYS`, in ``config_table``'s order.
        seeds: the stored seeds, shape ``(S,)``; trials without a seed form one more column, last,
            that every draw counts once (as :func:`~sensitivity.report.uncertainty.resample_seeds` keeps them).
        has_unseeded: whether that last column exists.
        rows, n_metric, metric_sum, metric_min, metric_max, n_diverged, n_initial, initial_sum:
            shape ``(C, S')`` with ``S' = S + has_unseeded``: the number of trials, of trials with a
            metric value, the sum/min/max of those values (``metric_sum`` without infinite values,
            which ``pos_inf``/``neg_inf`` count), diverged trials, trials with an initial value, and
            the sum of those. ``wall_time_s``: shape ``(C,)``, the stored study's median (not
            resampled: no resampled figure reads it).
    """

    keys: pd.DataFrame
    seeds: np.ndarray
    has_unseeded: bool
    rows: np.ndarray
    n_metric: np.ndarray
    metric_sum: np.ndarray
    pos_inf: np.ndarray
    neg_inf: np.ndarray
    metric_min: np.ndarray
    metric_max: np.ndarray
    n_diverged: np.ndarray
    n_initial: np.ndarray
    initial_sum: np.ndarray
    wall_time_s: np.ndarray

    @classmethod
    def from_trials(cls, trials: pd.DataFrame, metric: str) -> SeedCells:
        """Sum the completed trials of ``trials`` (the tidy frame) per configuration and seed, on ``metric``
        (:func:`~sensitivity.report.metrics.metric_values`: clipped at L0, diverged runs at L0)."""
        done = metrics.complete_trials(trials)
        return cls.from_tables(done, metrics.metric_values(done, metric), metrics.config_table(trials, metric), metric)

    @classmethod
    def from_tables(cls, done: pd.DataFrame, value: pd.Series, configs: pd.DataFrame, metric: str) -> SeedCells:
        """:meth:`from_trials` from what the analysis already formed: the completed trials ``done``, their
        objective values ``value`` (aligned with ``done``) and their
        :func:`~sensitivity.report.metrics.config_table` ``configs``."""
        keys = list(KEYS)
        frame = done[keys].copy()
        value = value.to_numpy(float)
        initial = done[f"initial_{metric}"].astype("float64").to_numpy()
        seed = pd.to_numeric(done["seed"], errors="coerce").to_numpy(float) if "seed" in done else np.full(len(done), np.nan)
        seeds = np.unique(seed[~np.isnan(seed)]).astype(int)
        has_unseeded = bool(np.isnan(seed).any())
        column = np.where(np.isnan(seed), len(seeds), np.searchsorted(seeds, np.nan_to_num(seed, nan=0)))
        table_keys = configs[keys]  # the order, and (wall time) the one column not resampled
        # each trial's configuration number: the row of config_table it falls in (NaN keys match NaN)
        marker = table_keys.assign(_row=np.arange(len(table_keys)))
        frame["_i"] = np.arange(len(frame))
        merged = frame.merge(marker, on=keys, how="left", sort=False).sort_values("_i")
        row = merged["_row"].to_numpy()
        if np.isnan(row.astype(float)).any():  # cannot happen: config_table groups these same trials
            raise RuntimeError("a completed trial matched no configuration")
        row = row.astype(int)
        shape = (len(configs), len(seeds) + int(has_unseeded))

        def total(weights: np.ndarray) -> np.ndarray:
            out = np.zeros(shape)
            np.add.at(out, (row, column), weights)
            return out

        has = ~np.isnan(value)
        finite = np.isfinite(value)
        v_min = np.full(shape, np.inf)
        v_max = np.full(shape, -np.inf)
        np.minimum.at(v_min, (row[has], column[has]), value[has])
        np.maximum.at(v_max, (row[has], column[has]), value[has])
        diverged = done["diverged"].fillna(False).astype(bool).to_numpy() if "diverged" in done else np.zeros(len(done), bool)
        return cls(
            keys=table_keys.reset_index(drop=True), seeds=seeds, has_unseeded=has_unseeded,
            rows=total(np.ones(len(done))), n_metric=total(has.astype(float)),
            metric_sum=total(np.where(finite, value, 0.0)),
            pos_inf=total((value == np.inf).astype(float)), neg_inf=total((value == -np.inf).astype(float)),
            metric_min=v_min, metric_max=v_max, n_diverged=total(diverged.astype(float)),
            n_initial=total((~np.isnan(initial)).astype(float)), initial_sum=total(np.nan_to_num(initial, nan=0.0)),
            wall_time_s=configs["wall_time_s"].to_numpy(float),
        )

    def counts(self, draw_counts: Mapping[int, int]) -> np.ndarray:
        """One draw's weight of every seed column, shape ``(S',)`` (the unseeded column: 1)."""
        out = np.array([float(draw_counts.get(int(s), 0)) for s in self.seeds] + ([1.0] if self.has_unseeded else []))
        return out

    def tables(self, weights: np.ndarray, first: int = 0) -> pd.DataFrame:
        """The stacked configuration table of a block of draws.

        Args:
            weights: shape ``(B, S')``, each draw's :meth:`counts`.
            first: the draw number of the block's first row (the names say ``first`` .. ``first + B - 1``).

        Returns:
            The :func:`~sensitivity.report.metrics.config_table` of each draw's trials frame, optimizer
            ``o`` of draw ``first + b`` named :func:`draw_name` ``(o, first + b)``, stacked draw after
            draw; a configuration none of whose trials was drawn has no row.
        """
        w = np.asarray(weights, dtype="float64")
        n_draws, n_configs = w.shape[0], len(self.keys)
        used = [s for s in range(w.shape[1]) if (w[:, s] > 0).any()]

        def weighted(x: np.ndarray) -> np.ndarray:
            # sum over seeds, one seed after another: the same bits whatever the block of draws
            out = np.zeros((n_draws, n_configs))
            for s in used:
                out += w[:, s, None] * x[None, :, s]
            return out

        n = weighted(self.rows)  # (B, C)
        n_metric = weighted(self.n_metric)
        pos = weighted(self.pos_inf)
        neg = weighted(self.neg_inf)
        n_initial = weighted(self.n_initial)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = weighted(self.metric_sum) / n_metric
            value = np.where(pos > 0, np.where(neg > 0, np.nan, np.inf), np.where(neg > 0, -np.inf, value))
            value = np.where(n_metric > 0, value, np.nan)
            initial = np.where(n_initial > 0, weighted(self.initial_sum) / n_initial, np.nan)
        drawn = w > 0  # (B, S')
        v_min = np.where(drawn[:, None, :], self.metric_min[None, :, :], np.inf).min(axis=2)
        v_max = np.where(drawn[:, None, :], self.metric_max[None, :, :], -np.inf).max(axis=2)
        v_min = np.where(np.isposinf(v_min), np.nan, v_min)
        v_max = np.where(np.isneginf(v_max), np.nan, v_max)
        keep = (n > 0).ravel()
        draw = np.repeat(np.arange(first, first + n_draws), n_configs)[keep]
        config = np.tile(np.arange(n_configs), n_draws)[keep]
        out = self.keys.iloc[config].reset_index(drop=True)
        names = out["optimizer"].astype(str).to_numpy()
        out["optimizer"] = [draw_name(o, d) for o, d in zip(names, draw)]
        out["value"] = value.ravel()[keep]
        out["value_min"] = v_min.ravel()[keep]
        out["value_max"] = v_max.ravel()[keep]
        out["n_seeds"] = np.rint(n.ravel()[keep]).astype("int64")
        out["n_diverged"] = np.rint(weighted(self.n_diverged).ravel()[keep]).astype("int64")
        out["initial"] = initial.ravel()[keep]
        out["wall_time_s"] = self.wall_time_s[config]
        return out


def divergence_rates(table: pd.DataFrame) -> pd.Series:
    """Each (stacked) optimizer's share of diverged runs, from its configuration table: what
    :func:`~sensitivity.report.metrics.divergence_rate` gives on the trials the table came from."""
    sums = table.groupby("optimizer", sort=False)[["n_diverged", "n_seeds"]].sum()
    return (sums["n_diverged"] / sums["n_seeds"]).astype("float64").rename("divergence_rate")


StackedStatistic = Callable[[pd.DataFrame, pd.Series, Mapping[str, str]], pd.DataFrame]
"""``statistic(configs, divergence, optimizer_of)``: a stacked configuration table, its
:func:`divergence_rates`, and stacked name -> optimizer; returns a frame of numbers indexed by the
stacked names (one row per optimizer and draw)."""


def seed_bootstrap_tables(
    done: pd.DataFrame,
    values: pd.Series,
    configs: pd.DataFrame,
    metric: str,
    estimate: pd.DataFrame,
    statistic: StackedStatistic,
    *,
    level: float = DEFAULT_LEVEL,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    random_state: int = 0,
) -> SeedBootstrap | None:
    """The seed bootstrap of a statistic of the configuration table, every draw measured in blocks.

    What :func:`~sensitivity.report.uncertainty.seed_bootstrap` returns for the statistic
    ``lambda t: statistic(config_table(t), divergence_rate(t), identity)``, with the same draws.

    Args:
        done: the completed trials of the tidy frame (its ``seed`` column says which belong together).
        values: their objective values on ``metric`` (:func:`~sensitivity.report.metrics.metric_values`).
        configs: their :func:`~sensitivity.report.metrics.config_table`.
        metric: the metric the configuration tables are on.
        estimate: the statistic on the stored study: one row per optimizer (its index), which fixes
            the replicates' layout.
        statistic: see :data:`StackedStatistic`; it must treat each stacked optimizer on its own.
        level, exact_limit, draws, random_state: as :func:`~sensitivity.report.uncertainty.seed_bootstrap`.

    Returns:
        A :class:`~sensitivity.report.uncertainty.SeedBootstrap`, or None with fewer than 2 seeds.

    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    seeds = bootstrap_seeds(done, level)
    if seeds is None:
        return None
    cells = SeedCells.from_tables(done, values, configs, metric)
    plan = seed_draws(seeds, exact_limit=exact_limit, draws=draws, random_state=random_state)
    weights = np.stack([cells.counts(d.counts) for d in plan]) if plan else np.zeros((0, len(cells.seeds)))
    n_configs = max(len(cells.keys), 1)
    block = max(1, min(BLOCK_ROWS // n_configs, BLOCK_ELEMENTS // (n_configs * max(weights.shape[1], 1))))
    row_of = {name: i for i, name in enumerate(estimate.index)}
    reps = np.full((len(plan), *estimate.shape), np.nan)
    for start in range(0, len(plan), block):
        table = cells.tables(weights[start:start + block], first=start)
        if table.empty:
            continue
        optimizer_of = {name: split_name(name)[0] for name in table["optimizer"].unique()}
        value = statistic(table, divergence_rates(table), optimizer_of)
        value = value.reindex(columns=estimate.columns)
        numbers = value.to_numpy(dtype="float64", na_value=np.nan)
        for name, line in zip(value.index, numbers):
            optimizer, k = split_name(name)
            if optimizer in row_of:
                reps[k, row_of[optimizer]] = line
    exact = math.comb(2 * len(seeds) - 1, len(seeds)) <= exact_limit
    probs = np.array([d.probability for d in plan])
    return SeedBootstrap(estimate=estimate, replicates=reps, probabilities=probs, n_seeds=len(seeds),
                         exact=exact, level=level)
