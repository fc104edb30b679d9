"""Which hyperparameter matters, for each optimizer: a variance decomposition of the stored objective.

Functional ANOVA (Hooker 2007, "Generalized functional ANOVA diagnostics", JCGS 16:709; Hutter, Hoos &
Leyton-Brown 2014, "An Efficient Approach for Assessing Hyperparameter Importance", ICML) splits the
variance of the objective y over the swept box into the variances V_u of its effects, one per
non-empty subset u of the hyperparameters: main effects (|u| = 1), pairwise interactions (|u| = 2)
and higher ones. Everything here is per optimizer (never pooled: each optimizer has its own
hyperparameters and lr range) and reads the objective the report uses everywhere,
:func:`sensitivity.report.metrics.metric_values` (``min(L, L0)``, a diverged run at L0).
This module assembles ``importance.csv`` and runs the surrogate estimators; the cells and the exact
grid decomposition are :mod:`sensitivity.report.cell_anova`.

**Full grid: exact from cell means.** A cell is one hyperparameter point; on a full grid (every
combination of the swept values present, decided from the data) with cells weighted equally, the
marginal mean ``m_u`` of a subset u is the mean of the cell means over the other hyperparameters, its
*closed* variance ``Vc_u = Var(m_u)`` (over u's levels, equally weighted), and the effect variances
follow by Moebius inversion ``V_u = sum_{v subset u} (-1)^{|u| - |v|} Vc_v``. Seeds are not a
hyperparameter: the mean over cells of the within-cell variance (``ddof=0``) is the *noise* term, and

    Var(y) = sum_u V_u + noise,        Var(y) the variance over all trials, cells weighted equally,

so the shares ``V_u / Var(y)`` and ``noise / Var(y)`` sum to 1. The main share of x is thus
``Var_x(E[y | x]) / Var(y)``, recomputable from ``trials.csv``. The *total* effect of x is the sum of
the V_u of every u holding x (Homma & Saltelli 1996). The decomposition is descriptive: with S seeds
the cell means still carry noise variance sigma^2 / S, which lands in the highest-order interaction.
With one trial per cell the noise is not separable and its share is NaN (undefined).

**Random or quasi-random samples: a given-data estimator from Optuna.** The points are not a grid,
so a surrogate estimates the main effects: :class:`optuna.importance.FanovaImportanceEvaluator`
(a random forest, then fANOVA's marginals over the box; Hutter et al. 2014), run on an in-memory
Optuna study built from this optimizer's points (each point the mean over its seeds; no training).
Its fraction of the forest's variance is scaled by the share of the variance between points, so
main shares and the noise share are on the same scale as on a grid. Optuna's public API gives main
effects only (pairwise fANOVA was removed in Optuna PR #3543), so interaction and total rows are
absent for these studies. The forest sees each hyperparameter on the axis the report measures shares
on (:func:`sensitivity.report.region.axis_positions`: log10 lr, ``-log10(1 - beta)``), over the box
spanned by the samples.

**The good region.** A badly diverging corner at L0 dominates every variance. ``region="good"``
decomposes instead the indicator ``b = 1[trial within the tolerance threshold]``
(:func:`sensitivity.report.tolerance.improvement_threshold`, ``L <= L* + tau (L0 - L*)``, L* the best
cell mean), or ``b = 1[trial among the best target_quantile of trials]``: the share of x is then
how much of "landing in the good region" x decides. This is the quantity PED-ANOVA estimates
(Watanabe, Bansal & Hutter 2023, "PED-ANOVA", IJCAI, arXiv 2304.10255: its local importance is
``Var_x(E[b | x]) = gamma'^2 D_Pearson``, and ``Var(b) = gamma' (1 - gamma')``); on a full grid it is
computed exactly as above, on samples by :class:`optuna.importance.PedAnovaImportanceEvaluator`
(``target_quantile`` = the share of good trials) divided by ``gamma' (1 - gamma')``.

**Intervals.** With two seeds or more every index gets the percentile interval of the seed bootstrap
of :mod:`sensitivity.report.uncertainty` (the report's own draws, the same for every optimizer); on a
grid all draws are computed at once from per-(cell, seed) sums. A surrogate's index varies also with
the evaluator's seed: it is refitted with :data:`REFITS` seeds (``share`` is their mean, ``fit_low``/
``fit_high`` their range), and each bootstrap draw is fitted with another evaluator seed so that its
interval holds both sources; surrogates use :data:`SURROGATE_DRAWS` Monte Carlo seed draws (a fit
costs about a second).

**Scale.** A share says what matters within one optimizer; ``variance_normalised`` ``= V_u /
(L0 - L*)^2`` (L0 the mean initial value, L* the best cell mean) is unit-free and compares across
optimizers and tasks (an optimizer whose loss hardly moves with lr still has lr explain most of that
little variance).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from sensitivity.report import metrics as M
from sensitivity.report import tolerance as T
from sensitivity.report import uncertainty as U
from sensitivity.report.cell_anova import Cells, cells_of, draw_weights, grid_draws, point_draws
from sensitivity.report.region import PAIR_AXES, axis_positions

HYPERPARAMETERS = PAIR_AXES
"""Hyperparameters an optimizer may sweep, in display order (``lr, beta1, beta2, gamma, weight_decay``)."""

NOISE = "seed"
"""The ``term`` of the noise row."""

KINDS = ("main", "interaction", "total", "noise")
"""Values of the ``kind`` column."""

REGIONS = ("all", "good")
"""Values of the ``region`` column: the objective itself, or the good-region indicator."""

EXACT = "exact functional ANOVA (full grid, cell means)"
FANOVA = "optuna FanovaImportanceEvaluator (random forest fANOVA, main effects)"
PED_ANOVA = "optuna PedAnovaImportanceEvaluator (PED-ANOVA, main effects)"

REFITS = 3
"""Evaluator seeds a surrogate estimator is fitted with on the stored data."""

SURROGATE_DRAWS = 10
"""Monte Carlo seed-bootstrap draws for a surrogate estimator (each one a refit)."""

PED_ANOVA_MIN_GOOD = 5
"""Fewest good trials PED-ANOVA is run on (Optuna's documentation: "it is preferable to include at least 5
trials above target_quantile"; with fewer, its kernel estimate can exceed the indicator's variance)."""

FANOVA_TREES = 16
"""Trees of the fANOVA forest. Optuna's default (64 trees of depth up to 64) computes its marginals in
Python: a fit on 200 points took 11 s with 32 trees of depth 16, 1.6 s with 16 trees of depth 6
(measured 2026-12-02 on the shared 2-core machine)."""

FANOVA_DEPTH = 8
"""Maximum depth of the fANOVA trees (at most 256 leaves, whatever the number of points)."""

COLUMNS = ("optimizer", "region", "term", "kind", "share", "share_low", "share_high", "variance",
           "variance_normalised", "variance_normalised_low", "variance_normalised_high", "fit_low",
           "fit_high", "estimator", "interval", "n_points", "n_trials", "note")
"""Columns of :func:`importance_table` (``importance.csv``)."""


def pair_term(x: str, y: str) -> str:
    """The ``term`` of a pairwise interaction: ``"lr x beta1"``."""
    return f"{x} x {y}"


# ---- one optimizer's design --------------------------------------------------------------------

def swept_hyperparameters(trials: pd.DataFrame) -> list[str]:
    """The hyperparameters that take more than one value among ``trials`` (one optimizer's), in
    :data:`HYPERPARAMETERS` order."""
    return [hp for hp in HYPERPARAMETERS if hp in trials and trials[hp].nunique(dropna=True) > 1]


def is_full_grid(trials: pd.DataFrame, hps: Sequence[str]) -> bool:
    """Whether every combination of the swept values of ``hps`` has a trial (one optimizer's trials).

    A study with one swept hyperparameter is a grid by this test; one with none is not.
    """
    if not hps:
        return False
    keys = trials[list(hps)]
    if keys.isna().any().any():
        return False
    levels = math.prod(int(keys[hp].nunique()) for hp in hps)
    return len(keys.drop_duplicates()) == levels


# ---- the table --------------------------------------------------------------------------------

def importance_table(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float = T.DEFAULT_TAU,
    target_quantile: float | None = None,
    level: float = U.DEFAULT_LEVEL,
    uncertainty: bool = True,
    regions: Sequence[str] = REGIONS,
    refits: int = REFITS,
    surrogate_draws: int = SURROGATE_DRAWS,
) -> pd.DataFrame:
    """Every importance index of every optimizer: ``importance.csv``.

    Args:
        trials: the tidy trials frame (:func:`sensitivity.report.frame.load_trials`; COMPLETE rows used).
        metric: the metric analysed (``val_loss``, ``val_acc``, ...).
        tau: the tolerance threshold of the good region, ``L <= L* + tau (L0 - L*)``.
        target_quantile: when given (in (0, 1)), the good region is instead the best
            ``target_quantile`` of each optimizer's trials (PED-ANOVA's gamma').
        level: coverage of the intervals.
        uncertainty: compute seed-bootstrap intervals (two seeds or more).
        regions: which of :data:`REGIONS` to compute.
        refits, surrogate_draws: see :data:`REFITS` and :data:`SURROGATE_DRAWS`.

    Returns:
        Long frame, columns :data:`COLUMNS`: one row per optimizer (catalog order), region and term.
        ``term`` is a hyperparameter (``lr``), a pair (``lr x beta1``) or ``seed`` (the noise);
        ``kind`` one of :data:`KINDS`; ``share`` in [0, 1] of the objective's variance
        (``share_low``/``share_high`` its percentile interval, NaN without seeds or on a grid
        without seeds); ``variance`` in the metric's units squared and ``variance_normalised``
        ``= variance / (L0 - L*)^2`` (region ``all`` only); ``fit_low``/``fit_high`` the range over
        the surrogate's refits; ``estimator`` one of :data:`EXACT`, :data:`FANOVA`,
        :data:`PED_ANOVA`; ``interval`` how the bounds were made; ``note`` why an index is missing
        or undefined (a constant objective: every share NaN, "undefined: the objective does not vary").

    Raises:
        ValueError: unknown region, ``target_quantile`` outside (0, 1), ``level`` outside (0, 1).
    """
    for r in regions:
        if r not in REGIONS:
            raise ValueError(f"unknown region {r!r}; choose from {REGIONS}")
    if target_quantile is not None and not 0.0 < target_quantile < 1.0:
        raise ValueError(f"target_quantile must lie in (0, 1), got {target_quantile}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    done = M.complete_trials(trials)
    done = done.assign(_y=M.metric_values(done, metric).to_numpy(float))
    done = done[np.isfinite(done["_y"].to_numpy(float))]
    hib = M.higher_is_better(metric)
    seeds = sorted(int(s) for s in pd.Series(done["seed"]).dropna().unique()) if "seed" in done else []
    boot = uncertainty and len(seeds) >= 2
    plan = U.seed_draws(seeds) if boot else None
    mc_plan = U.seed_draws(seeds, exact_limit=0, draws=surrogate_draws) if boot else None
    rows: list[dict] = []
    for name in M.optimizer_order(done["optimizer"]):
        mine = done[done["optimizer"] == name].reset_index(drop=True)
        ctx = _Context(name, metric, mine, hib, tau, target_quantile, level, plan, mc_plan, refits)
        for region in regions:
            rows.extend(ctx.rows(region))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table


@dataclasses.dataclass
class _Context:
    name: str
    metric: str
    trials: pd.DataFrame
    hib: bool
    tau: float
    target_quantile: float | None
    level: float
    plan: list | None
    mc_plan: list | None
    refits: int

    def __post_init__(self) -> None:
        self.y = self.trials["_y"].to_numpy(float)
        self.hps = swept_hyperparameters(self.trials)
        self.grid = is_full_grid(self.trials, self.hps)
        initial = self.trials[f"initial_{self.metric}"].astype(float)
        self.initial = float(initial.mean()) if initial.notna().any() else math.nan
        if self.hps:
            self.cells = cells_of(self.trials, self.y, self.hps)
        else:
            self.cells = None

    def _row(self, region, term, kind, share, low=math.nan, high=math.nan, *, variance=math.nan, norm=math.nan,
             norm_low=math.nan, norm_high=math.nan, fit_low=math.nan, fit_high=math.nan, estimator="", interval="",
             note="") -> dict:
        n_points = 0 if self.cells is None else len(self.cells.keys)
        return {"optimizer": self.name, "region": region, "term": term, "kind": kind, "share": share,
                "share_low": low, "share_high": high, "variance": variance, "variance_normalised": norm,
                "variance_normalised_low": norm_low, "variance_normalised_high": norm_high,
                "fit_low": fit_low, "fit_high": fit_high, "estimator": estimator, "interval": interval,
                "n_points": n_points, "n_trials": len(self.trials), "note": note}

    # the scale (L0 - L*)^2 of one set of cell means, shape (D,)
    def _scale(self, mean: np.ndarray) -> np.ndarray:
        return (self.initial - self._best(mean)) ** 2

    def _best(self, mean: np.ndarray) -> np.ndarray:
        """Each draw's best cell mean, shape (D,); NaN for a draw without one (no warning: that is the answer)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmax(mean, axis=1) if self.hib else np.nanmin(mean, axis=1)

    def _cuts(self, mean: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The good-region cut of each draw, shape (D,)."""
        if self.target_quantile is None:
            best = self._best(mean)
            return np.array([T.improvement_threshold(b, self.initial, self.tau, higher_is_better=self.hib)
                             for b in best])
        cuts = []
        col = self.cells.seed_of_trial
        for w in weights:
            reps = w[col]
            order = np.argsort(-self.y if self.hib else self.y, kind="stable")
            cum = np.cumsum(reps[order]) / reps.sum()
            i = int(np.searchsorted(cum, self.target_quantile - 1e-12))
            cuts.append(self.y[order][min(i, len(order) - 1)])
        return np.array(cuts)

    def rows(self, region: str) -> list[dict]:
        if self.cells is None:
            return [self._row(region, NOISE, "noise", math.nan, note="no swept hyperparameter")]
        if self.grid:
            return self._grid_rows(region)
        return self._surrogate_rows(region)

    def _interval_text(self) -> str:
        if self.plan is None:
            return ""
        size = len({s for d in self.plan for s in d.counts})
        exact = math.comb(2 * size - 1, size) <= U.EXACT_LIMIT
        return f"seed bootstrap ({'exact' if exact else 'monte carlo'}, {len(self.plan)} draws)"

    def _grid_rows(self, region: str) -> list[dict]:
        cells = self.cells
        w0 = draw_weights(cells, None)
        wb = draw_weights(cells, self.plan) if self.plan is not None else None
        probs = np.array([d.probability for d in self.plan]) if self.plan is not None else None
        plain0 = grid_draws(cells, w0)  # the objective itself: effects, noise, total, cell means
        plainb = grid_draws(cells, wb) if wb is not None else None
        if region == "all":
            eff, noise, total, _ = plain0
            beff = bnoise = btotal = None
            if plainb is not None:
                beff, bnoise, btotal, _ = plainb
        else:
            cut = self._cuts(plain0[3], w0)
            eff, noise, total, _ = grid_draws(cells, w0, cut, self.y, self.hib)
            beff = bnoise = btotal = None
            if plainb is not None:
                bcut = self._cuts(plainb[3], wb)
                beff, bnoise, btotal, _ = grid_draws(cells, wb, bcut, self.y, self.hib)
        separable = bool((cells.counts.sum(axis=1) >= 2).all())
        scale = self._scale(plain0[3]) if region == "all" else np.array([math.nan])
        bscale = self._scale(plainb[3]) if (region == "all" and plainb is not None) else None
        k = len(cells.hps)
        terms: list[tuple[str, str, np.ndarray, np.ndarray | None]] = []
        for i, hp in enumerate(cells.hps):
            terms.append((hp, "main", eff[(i,)], None if beff is None else beff[(i,)]))
        for i, j in itertools.combinations(range(k), 2):
            terms.append((pair_term(cells.hps[i], cells.hps[j]), "interaction", eff[(i, j)],
                          None if beff is None else beff[(i, j)]))
        for i, hp in enumerate(cells.hps):
            tot = sum(v for u, v in eff.items() if i in u)
            btot = None if beff is None else sum(v for u, v in beff.items() if i in u)
            terms.append((hp, "total", tot, btot))
        terms.append((NOISE, "noise", noise, bnoise))
        out = []
        constant = not (total[0] > 1e-15 * max(1.0, float(np.nanmean(np.abs(self.y))) ** 2))
        for term, kind, v, bv in terms:
            note = ""
            if constant:
                out.append(self._row(region, term, kind, math.nan, variance=float(v[0]), estimator=EXACT,
                                     note="undefined: the objective does not vary" if region == "all"
                                     else "undefined: every trial is on the same side of the good-region cut"))
                continue
            if kind == "noise" and not separable:
                out.append(self._row(region, term, kind, math.nan, estimator=EXACT,
                                     note="one trial per cell: the noise is not separable from the interactions"))
                continue
            share = float(v[0] / total[0])
            low = high = nlow = nhigh = math.nan
            if bv is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    low, high = U.weighted_interval(bv / btotal, probs, self.level)
                    if bscale is not None and kind != "noise":
                        nlow, nhigh = U.weighted_interval(bv / bscale, probs, self.level)
            norm = float(v[0] / scale[0]) if (region == "all" and kind != "noise" and scale[0] > 0) else math.nan
            out.append(self._row(region, term, kind, share, low, high, variance=float(v[0]) if region == "all" else math.nan,
                                 norm=norm, norm_low=nlow, norm_high=nhigh, estimator=EXACT,
                                 interval=self._interval_text() if bv is not None else "", note=note))
        return out

    # ---- samples: Optuna's evaluators ----
    def _surrogate_rows(self, region: str) -> list[dict]:
        cells = self.cells
        w0 = draw_weights(cells, None)
        eff, noise, total, mean = point_draws(cells, w0)
        separable = bool((cells.counts.sum(axis=1) >= 2).all())
        positions = _positions(cells)
        estimator = FANOVA if region == "all" else PED_ANOVA
        constant = not (total[0] > 1e-15 * max(1.0, float(np.nanmean(np.abs(self.y))) ** 2))
        if region == "good":
            cut = self._cuts(mean, w0)[0]
            inside = self._inside(cut)
            constant = inside.all() or not inside.any()
        if constant:
            note = ("undefined: the objective does not vary" if region == "all"
                    else "undefined: every trial is on the same side of the good-region cut")
            return [self._row(region, t, k, math.nan, estimator=estimator, note=note)
                    for t, k in [*((hp, "main") for hp in cells.hps), (NOISE, "noise")]]
        if region == "good" and int(inside.sum()) < PED_ANOVA_MIN_GOOD:
            return [self._row(region, hp, "main", math.nan, estimator=estimator,
                              note=f"{int(inside.sum())} good trials: PED-ANOVA needs at least {PED_ANOVA_MIN_GOOD}")
                    for hp in cells.hps]
        noise_share = float(noise[0] / total[0]) if separable else math.nan
        fits = []
        for r in range(self.refits if region == "all" else 1):  # PED-ANOVA has no random state
            fits.append(self._fit(region, positions, mean[0], w0[0], seed=r))
        fits = np.array(fits)  # (R, k) shares
        share = fits.mean(axis=0)
        boots = None
        if self.mc_plan is not None:
            wb = draw_weights(cells, self.mc_plan)
            _, bnoise, btotal, bmean = point_draws(cells, wb)
            boots = []
            for d in range(wb.shape[0]):
                boots.append(self._fit(region, positions, bmean[d], wb[d], seed=d % max(self.refits, 1),
                                       noise=(bnoise[d] / btotal[d]) if separable else None))
            boots = np.array(boots)
        scale = self._scale(mean)[0]
        out = []
        interval = ""
        if boots is not None:
            interval = f"seed bootstrap (monte carlo, {len(self.mc_plan)} draws, each a refit)"
        elif region == "all" and self.refits > 1:
            interval = f"refits ({self.refits} evaluator seeds)"
        probs = None if self.mc_plan is None else np.array([d.probability for d in self.mc_plan])
        for i, hp in enumerate(cells.hps):
            low = high = math.nan
            if boots is not None:
                low, high = U.weighted_interval(boots[:, i], probs, self.level)
            elif region == "all" and self.refits > 1:
                low, high = float(fits[:, i].min()), float(fits[:, i].max())
            var = float(share[i] * total[0]) if region == "all" else math.nan
            norm = var / scale if region == "all" and scale > 0 else math.nan
            out.append(self._row(region, hp, "main", float(share[i]), low, high, variance=var, norm=norm,
                                 fit_low=float(fits[:, i].min()), fit_high=float(fits[:, i].max()),
                                 estimator=estimator, interval=interval))
        if region == "all":
            nlow = nhigh = math.nan
            if boots is not None and separable:
                wb = draw_weights(cells, self.mc_plan)
                _, bnoise, btotal, _ = point_draws(cells, wb)
                nlow, nhigh = U.weighted_interval(bnoise / btotal, probs, self.level)
            out.append(self._row(region, NOISE, "noise", noise_share, nlow, nhigh, variance=float(noise[0]) if separable else math.nan,
                                 estimator="within-point variance over seeds", interval=interval if separable else "",
                                 note="" if separable else "one trial per point: the noise is not separable"))
        return out

    def _inside(self, cut: float) -> np.ndarray:
        slack = 1e-12 * max(1.0, abs(cut))
        return self.y >= cut - slack if self.hib else self.y <= cut + slack

    def _fit(self, region, positions, means, weights, *, seed, noise=None) -> np.ndarray:
        """Main-effect shares of one surrogate fit, shape (k,)."""
        import optuna  # the report already imports Optuna to load the frame
        from optuna.distributions import FloatDistribution

        hps = self.cells.hps
        dists = {hp: FloatDistribution(float(positions[hp].min()), float(positions[hp].max())) for hp in hps}
        if region == "all":
            keep = np.isfinite(means)
            values = means[keep]
            cols = {hp: positions[hp][keep] for hp in hps}
            target_fraction = None
        else:
            mean_y = means
            cut = self._cuts(mean_y[None, :], weights[None, :])[0]
            reps = weights[self.cells.seed_of_trial].astype(int)
            inside = self._inside(cut)
            cell = np.repeat(self.cells.cell_of_trial, reps)
            values = np.repeat(np.where(inside, 0.0, 1.0), reps)
            cols = {hp: positions[hp][cell] for hp in hps}
            target_fraction = float(values.size - values.sum()) / values.size
            if target_fraction <= 0 or target_fraction >= 1:
                return np.full(len(hps), np.nan)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per fit
        try:
            return self._evaluate(region, hps, dists, cols, values, seed, noise)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _evaluate(self, region, hps, dists, cols, values, seed, noise) -> np.ndarray:
        import optuna
        from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

        study = optuna.create_study(direction="minimize")
        study.add_trials([
            optuna.trial.create_trial(params={hp: float(cols[hp][t]) for hp in hps}, distributions=dists,
                                      value=float(values[t]))
            for t in range(values.size)
        ])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if region == "all":
                evaluator = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed)
                raw = evaluator.evaluate(study, params=list(hps))
                between = 1.0 - (noise if noise is not None else self._noise_share_or_zero())
                return np.array([raw[hp] for hp in hps]) * between
            n_good = values.size - values.sum()
            q = (n_good - 0.5) / values.size
            evaluator = PedAnovaImportanceEvaluator(target_quantile=q)
            raw = evaluator.evaluate(study, params=list(hps))
            gamma = n_good / values.size
            return np.array([raw[hp] for hp in hps]) / (gamma * (1.0 - gamma))

    def _noise_share_or_zero(self) -> float:
        cells = self.cells
        if not (cells.counts.sum(axis=1) >= 2).all():
            return 0.0
        _, noise, total, _ = point_draws(cells, draw_weights(cells, None))
        return float(noise[0] / total[0]) if total[0] > 0 else 0.0



def _positions(cells: Cells) -> dict[str, np.ndarray]:
    """Each cell's coordinate on the report's axes (log10 lr, -log10(1 - beta)), shape (cells,) per hp."""
    out = {}
    for hp in cells.hps:
        values = cells.keys[hp].to_numpy(float)
        distinct = np.unique(values)
        pos, _ = axis_positions(hp, distinct)
        out[hp] = pos[np.searchsorted(distinct, values)]
    return out
