"""One optimizer's trials as cells, and the variances a draw of seeds gives them: functional ANOVA on a grid.

A cell is one hyperparameter point. :func:`cells_of` sums each (cell, seed) once; every draw of the
seed bootstrap is then a weighting of those sums (:func:`draw_weights`), so the study and all its
draws are computed at once as matrix products. On a full grid :func:`grid_draws` gives the exact
functional-ANOVA effect variances (:func:`grid_effects`: closed variances of the marginal means,
then Moebius inversion; Hooker 2007, JCGS 16:709), the noise (mean within-cell variance over seeds)
and the total; on points that are not a grid :func:`point_draws` gives the noise, the total and the
cell means that a surrogate estimator is fitted on (:mod:`sensitivity.report.importance`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd

from sensitivity.report import uncertainty as U


@dataclasses.dataclass
class Cells:
    """Per-(cell, seed) sums of one optimizer's trials: what every draw of seeds is computed from.

    ``sums``, ``squares``, ``counts``: shape ``(cells, seed columns)``; the last column holds trials
    without a seed (taken once in every draw). ``codes``: per hyperparameter, the level index of
    each cell, shape ``(cells,)``; ``shape``: levels per hyperparameter; ``cell_of_trial`` and
    ``seed_of_trial``: each trial's cell and seed column, shape ``(trials,)``.
    """

    hps: list[str]
    keys: pd.DataFrame
    codes: list[np.ndarray]
    shape: tuple[int, ...]
    seeds: list[int]
    sums: np.ndarray
    squares: np.ndarray
    counts: np.ndarray
    cell_of_trial: np.ndarray
    seed_of_trial: np.ndarray


def cells_of(frame: pd.DataFrame, y: np.ndarray, hps: Sequence[str]) -> Cells:
    """The cells of one optimizer's trials ``frame``, with the objective ``y`` (shape ``(trials,)``)
    summed per (cell, seed); a cell is a distinct combination of the values of ``hps``."""
    keys = frame[list(hps)].reset_index(drop=True)
    codes, uniques = [], []
    for hp in hps:
        c, u = pd.factorize(keys[hp], sort=True)
        codes.append(c)
        uniques.append(u)
    cell_keys = pd.MultiIndex.from_arrays(codes) if len(hps) > 1 else pd.Index(codes[0])
    cell_of_trial, cell_index = pd.factorize(cell_keys, sort=True)
    seed = pd.to_numeric(frame["seed"], errors="coerce").to_numpy(float) if "seed" in frame else np.full(len(frame), np.nan)
    seeds = sorted(int(s) for s in np.unique(seed[np.isfinite(seed)]))
    lookup = {s: i for i, s in enumerate(seeds)}
    seed_of_trial = np.array([lookup[int(s)] if math.isfinite(s) else len(seeds) for s in seed], dtype=int)
    n_cells, n_cols = len(cell_index), len(seeds) + 1
    flat = cell_of_trial * n_cols + seed_of_trial
    sums = np.bincount(flat, weights=y, minlength=n_cells * n_cols).reshape(n_cells, n_cols)
    squares = np.bincount(flat, weights=y * y, minlength=n_cells * n_cols).reshape(n_cells, n_cols)
    counts = np.bincount(flat, minlength=n_cells * n_cols).reshape(n_cells, n_cols).astype(float)
    if len(hps) > 1:
        level_codes = [np.asarray(cell_index.get_level_values(i)) for i in range(len(hps))]
    else:
        level_codes = [np.asarray(cell_index)]
    cell_frame = pd.DataFrame({hp: np.asarray(uniques[i])[level_codes[i]] for i, hp in enumerate(hps)})
    return Cells(list(hps), cell_frame, level_codes, tuple(len(u) for u in uniques), seeds, sums, squares, counts,
                  cell_of_trial, seed_of_trial)


def draw_weights(cells: Cells, draws: Sequence[U.SeedDraw] | None) -> np.ndarray:
    """Shape ``(D, seed columns)``: how often each seed column is taken (the study itself when None)."""
    if draws is None:
        return np.ones((1, len(cells.seeds) + 1))
    w = np.zeros((len(draws), len(cells.seeds) + 1))
    w[:, -1] = 1.0
    where = {s: i for i, s in enumerate(cells.seeds)}
    for d, draw in enumerate(draws):
        for s, c in draw.counts.items():
            if s in where:
                w[d, where[s]] = c
    return w


# ---- the exact decomposition --------------------------------------------------------------------

def _subsets(k: int) -> list[tuple[int, ...]]:
    return [u for r in range(1, k + 1) for u in itertools.combinations(range(k), r)]


def grid_effects(means: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """The functional-ANOVA effect variances of full-grid cell means, cells weighted equally.

    Args:
        means: shape ``(D, L_1, ..., L_k)``: D independent grids (the study and its bootstrap
            draws), ``L_i`` levels of hyperparameter i; NaN in a grid makes its variances NaN.

    Returns:
        ``{u: V_u}`` for every non-empty subset u of ``range(k)`` (tuples of axis numbers), each of
        shape ``(D,)``, in the objective's units squared; ``sum_u V_u`` is the variance of the cells.
    """
    k = means.ndim - 1
    closed: dict[tuple[int, ...], np.ndarray] = {(): np.zeros(means.shape[0])}
    for u in _subsets(k):
        others = tuple(1 + i for i in range(k) if i not in u)
        marginal = means.mean(axis=others) if others else means
        closed[u] = marginal.reshape(means.shape[0], -1).var(axis=1)
    effects = {}
    for u in _subsets(k):
        total = np.zeros(means.shape[0])
        for r in range(len(u) + 1):
            for v in itertools.combinations(u, r):
                total = total + (-1) ** (len(u) - r) * closed[v]
        effects[u] = total
    return effects


def grid_draws(cells: Cells, weights: np.ndarray, indicator_cut: np.ndarray | None = None,
                y: np.ndarray | None = None, hib: bool = False):
    """Effect variances, noise and total variance for each row of ``weights`` (shape ``(D, cols)``).

    With ``indicator_cut`` (shape ``(D,)``) the objective is replaced by the indicator that a trial is
    within the cut (``y <= cut``, or ``>=`` when ``hib``), recomputed per draw from the trials ``y``.
    """
    if indicator_cut is None:
        sums, squares = cells.sums, cells.squares
        n = weights @ cells.counts.T  # (D, C)
        s = weights @ sums.T
        q = weights @ squares.T
    else:
        n = weights @ cells.counts.T
        n_cells = cells.counts.shape[0]
        s = np.empty_like(n)
        slack = 1e-12 * np.maximum(1.0, np.abs(indicator_cut))
        chunk = max(1, 4_000_000 // max(len(y), 1))  # draws per block: at most ~4e6 trial x draw entries
        for start in range(0, len(indicator_cut), chunk):
            cut = indicator_cut[start:start + chunk, None]
            inside = (y[None, :] >= cut - slack[start:start + chunk, None]) if hib else (
                y[None, :] <= cut + slack[start:start + chunk, None])
            taken = inside * weights[start:start + chunk][:, cells.seed_of_trial]  # (d, trials)
            rows = np.arange(taken.shape[0])[:, None] * n_cells + cells.cell_of_trial[None, :]
            s[start:start + chunk] = np.bincount(rows.ravel(), weights=taken.ravel(),
                                                 minlength=taken.shape[0] * n_cells).reshape(-1, n_cells)
        q = s  # an indicator's square is itself
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        within = np.maximum(q / n - mean * mean, 0.0)
    mean = np.where(n > 0, mean, np.nan)
    grid = np.full((weights.shape[0], *cells.shape), np.nan)
    grid[(slice(None), *cells.codes)] = mean
    effects = grid_effects(grid)
    noise = np.where((n > 0).all(axis=1), np.nanmean(np.where(n > 0, within, np.nan), axis=1), np.nan)
    between = sum(effects.values())
    return effects, noise, between + noise, mean


def point_draws(cells: Cells, weights: np.ndarray):
    """Noise, total variance and cell means per draw for points that are not a grid (no effects).

    Returns ``(None, noise, total, mean)`` in :func:`grid_draws`' order: ``noise`` and ``total``
    shape ``(D,)`` for ``weights`` of shape ``(D, seed columns)``, ``mean`` shape ``(D, cells)``.
    """
    n = weights @ cells.counts.T
    s = weights @ cells.sums.T
    q = weights @ cells.squares.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        within = np.maximum(q / n - mean * mean, 0.0)
    noise = np.nanmean(np.where(n > 0, within, np.nan), axis=1)
    between = np.nanvar(mean, axis=1)
    return None, noise, between + noise, mean
