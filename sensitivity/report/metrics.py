"""Sensitivity metrics on the tidy trials frame (pure pandas/numpy; definitions from the field).

Every function reads the frame :func:`sensitivity.report.frame.load_trials` returns and uses only
its COMPLETE rows. One ordering for bad runs: a trial's *final metric* is its last validation loss
clipped at its initial loss, ``min(L, L0)`` (Wortsman et al. 2023), and a diverged run (or a
non-finite final value) is counted at the initial value L0, as the stored objective does
(:meth:`sensitivity.records.TrialResult.objective`); accuracies likewise, ``max(acc, acc0)``. A
diverged run and one that ended worse than its start are thus alike in every metric and figure, and
where two points tie the one that did not diverge ranks first. Diverged runs stay, never dropped.

Aggregation. A study may vary beta1, beta2, gamma, weight decay and the seed besides the learning
rate. The per-optimizer learning-rate curve L(lr) that the metrics use is, by default, "the lr curve
at the best betas": first the mean over seeds of each hyperparameter point, then, at each lr, the
best of those means over beta1/beta2/gamma/weight decay (``aggregation="best"``). With
``aggregation="default"`` only the points at the optimizer's default betas/gamma/weight decay
(:data:`sensitivity.catalog.OPTIMIZERS`) are kept (the mean over seeds at each lr).

Metrics:

* :func:`wortsman_sensitivity` / :func:`lr_sensitivity` -- Wortsman et al. 2023, "Small-scale
  proxies for large-scale Transformer training instabilities", arXiv 2309.14322, sec. 2.2:
  ``E_lr[min(L(lr), L0) - L*]`` over the lr grid, L* the best final loss on the grid and L0 the
  loss at initialisation. Lower is better (0 = every lr reaches the best loss).
* :func:`lr_curve` / :func:`grid_table` / :func:`pair_table` / :func:`config_table` -- the
  aggregations above; the tolerance widths read the lr curve (:mod:`sensitivity.report.tolerance`),
  the good-region shares (:mod:`sensitivity.report.region`) and heatmaps the pair tables, and
  :mod:`sensitivity.report.summary` assembles the report's table. :func:`sensitivity.report.analysis.analyze`
  computes each of them once and hands them on; none of those modules calls back into this one.
* :func:`relative_performance` -- DeepOBS (Schneider, Balles & Hennig 2019, "DeepOBS: A Deep
  Learning Optimizer Benchmark Suite", ICLR): best/metric for losses, metric/best for accuracies,
  per lr, NaN -> 0.
* :func:`divergence_rate` -- the share of completed trials that diverged (training blew up);
  :func:`evaluation_far_above_training` flags, apart, stable runs whose evaluation blew up.
* :func:`performance_profile` -- Dolan & More 2002, "Benchmarking optimization software with
  performance profiles", Math. Program. 91:201-213, as used by AlgoPerf (Dahl et al. 2023,
  arXiv 2306.07179): rho_s(tau), the share of tasks on which optimizer s is within a factor tau
  of the best optimizer.

Maximised metrics (accuracy, an RL return) use loss semantics on 1 - value: Wortsman's sensitivity
on accuracy is ``E_lr[min(1 - acc(lr), 1 - acc0) - (1 - acc*)] = E_lr[acc* - max(acc, acc0)]``, in
the metric's own units. Which metrics are maximised, and their labels and units, come from the
metric declarations a study stores (:data:`sensitivity.records.METRICS`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sensitivity.catalog import OPTIMIZERS, display_order
from sensitivity.records import METRICS, metric_direction

HP_COLUMNS = ("beta1", "beta2", "gamma", "weight_decay")
"""Hyperparameters besides lr that a study may vary; aggregated over as the module says."""

AGGREGATIONS = {
    "best": "best over beta1/beta2/gamma/weight decay at each lr, mean over seeds",
    "default": "at the default beta1/beta2/gamma/weight decay, mean over seeds",
}
"""How the lr curve is formed from the trials, in words for titles and legends."""

# ---- the final metric of each trial ------------------------------------------------------------

def higher_is_better(metric: str) -> bool:
    """True for metrics declared ``maximize`` (``val_acc``, ``return``), False for losses.

    Directions come from the metric declarations (:data:`sensitivity.records.METRICS`: the
    built-in names, and those of every study :func:`~sensitivity.report.frame.load_trials` read).

    Raises:
        ValueError: unknown metric.
    """
    return metric_direction(metric) == "maximize"


def metric_label(metric: str) -> str:
    """What the metric is, in words, as its study declared it (``validation loss``)."""
    return METRICS[metric].label if metric in METRICS else metric.replace("_", " ")


def metric_unit(metric: str) -> str:
    """The metric's declared unit (``nats/char``, ``reward/episode``), "" when unknown."""
    return METRICS[metric].unit if metric in METRICS else ""


def absolute_tolerance(metric: str) -> bool:
    """True when the relative tolerance of a maximised metric is in absolute points: metrics whose
    declared unit is ``fraction`` (accuracy). Every other maximised metric (a return) is judged
    relative to its best value, as losses are."""
    return higher_is_better(metric) and metric_unit(metric) == "fraction"


def default_tolerance(metric: str) -> float:
    """The default *relative* tolerance: 0.10 for losses and returns (within 10% of the best:
    L <= 1.1 L*, R >= 0.9 R*), 0.01 for accuracies (1 point)."""
    return 0.01 if absolute_tolerance(metric) else 0.10


def describe_tolerance(metric: str, tolerance: float) -> str:
    """The tolerance in words, e.g. ``"loss within 10% of the best (L <= 1.1 L*)"``."""
    if absolute_tolerance(metric):
        points = f"{100 * tolerance:g} point" + ("" if math.isclose(100 * tolerance, 1) else "s")
        what = "accuracy" if metric == "val_acc" else metric_label(metric)
        return f"{what} within {points} of the best (acc >= acc* - {tolerance:g})"
    if higher_is_better(metric):
        return f"{metric_label(metric)} within {100 * tolerance:g}% of the best (v >= {1 - tolerance:g} v*)"
    what = "loss" if metric == "val_loss" else metric_label(metric)
    return f"{what} within {100 * tolerance:g}% of the best (L <= {1 + tolerance:g} L*)"


def complete_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE rows of a trials frame (all rows if it has no ``state`` column)."""
    if "state" not in trials.columns:
        return trials
    return trials[trials["state"] == "COMPLETE"]


def metric_values(trials: pd.DataFrame, metric: str) -> pd.Series:
    """Each trial's final metric clipped at its initial value; diverged or non-finite runs count as
    their initial value.

    ``min(final, initial)`` for losses and ``max(final, initial)`` for accuracies: the objective
    :meth:`sensitivity.records.TrialResult.objective` stores (:func:`sensitivity.records.clip_to_initial`),
    recomputed from the frame so that either metric can be analysed whatever the study optimised.
    """
    hib = higher_is_better(metric)
    final = trials[f"final_{metric}"].astype("float64")
    initial = trials[f"initial_{metric}"].astype("float64")
    diverged = trials["diverged"].fillna(False).astype(bool) if "diverged" in trials else False
    bad = diverged | ~np.isfinite(final)
    clipped = final.where(~np.isfinite(initial), np.maximum(final, initial) if hib else np.minimum(final, initial))
    return clipped.where(~bad, initial)


def evaluation_far_above_training(trials: pd.DataFrame, factor: float, reference: str = "val_loss") -> pd.Series:
    """Runs whose training was stable but whose evaluation blew up: boolean Series by row.

    True for a run that did not diverge whose final ``reference`` loss (the validation loss) is
    non-finite or above ``factor`` x its initial value L0 (the factor of the divergence rule,
    which reads training losses only). Typical cause: BatchNorm running statistics that lag
    fast-moving weights after a short budget. Such runs count at L0 like every run worse than its
    start, and are not diverged: they stay out of :func:`divergence_rate`. All False when the
    trials record no ``reference`` (e.g. a reinforcement-learning task).
    """
    if f"final_{reference}" not in trials or f"initial_{reference}" not in trials:
        return pd.Series(False, index=trials.index, name="evaluation_far_above_training")
    diverged = trials["diverged"].fillna(False).astype(bool)
    final = trials[f"final_{reference}"].astype("float64")
    initial = trials[f"initial_{reference}"].astype("float64")
    blown = ~np.isfinite(final) | (final > factor * initial)
    has_result = trials["epochs_run"].fillna(0).astype(int) > 0 if "epochs_run" in trials else True
    return (~diverged & blown & has_result).rename("evaluation_far_above_training")


def optimizer_order(names: Iterable[str]) -> list[str]:
    """Optimizer names in catalog order (unknown names after, alphabetically)."""
    return display_order(names)


# ---- aggregation -------------------------------------------------------------------------------

def config_table(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per optimizer and hyperparameter point (lr, betas, gamma, weight decay).

    Columns: optimizer, lr, beta1, beta2, gamma, weight_decay (NaN where an optimizer lacks
    one), ``value`` (mean final metric over seeds), ``value_min``/``value_max`` (over seeds),
    ``n_seeds``, ``n_diverged``, ``initial`` (mean initial metric), ``wall_time_s`` (median).
    """
    done = complete_trials(trials)
    frame = done[["optimizer", "lr", *HP_COLUMNS]].copy()
    frame["metric"] = metric_values(done, metric)
    frame["initial"] = done[f"initial_{metric}"].astype("float64")
    frame["div"] = done["diverged"].fillna(False).astype(bool).astype(int)
    frame["wall"] = done["wall_time_s"].astype("float64")
    keys = ["optimizer", "lr", *HP_COLUMNS]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    table = grouped.agg(
        value=("metric", "mean"),
        value_min=("metric", "min"),
        value_max=("metric", "max"),
        n_seeds=("metric", "size"),
        n_diverged=("div", "sum"),
        initial=("initial", "mean"),
        wall_time_s=("wall", "median"),
    ).reset_index()
    return table


def best_per_group(table: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Within each ``by`` group, the row with the best ``value`` (NaN values last); at equal values
    the row with the smaller share of diverged runs (a diverged run never outranks a finished one)."""
    if table.empty:
        return table
    ascending = not higher_is_better(metric)
    ordered = table.assign(_div=table["n_diverged"] / table["n_seeds"] if "n_diverged" in table else 0.0)
    ordered = ordered.sort_values(["value", "_div"], ascending=[ascending, True], na_position="last", kind="stable")
    return ordered.groupby(list(by), dropna=False, sort=True).head(1).drop(columns="_div")


def best_row(table: pd.DataFrame, metric: str) -> pd.Series:
    """The best row of a :func:`config_table`-like frame (finite ``value``), ties broken as
    :func:`best_per_group` breaks them.

    Raises:
        ValueError: no row has a finite value.
    """
    finite = table[table["value"].notna()]
    if finite.empty:
        raise ValueError("no row with a finite value")
    return best_per_group(finite.assign(_all=0), ["_all"], metric).drop(columns="_all").iloc[0]


def best_points(curve: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each optimizer's best point of an :func:`lr_curve`, one row per optimizer (indexed by it).

    A point whose value is not finite or whose runs all diverged is counted at the initial value L0 and can beat runs
    that made things worse without diverging; it is the best only where the optimizer has no other
    finite point. Ties are broken as :func:`best_per_group` breaks them. An optimizer without a
    finite value has no row.
    """
    value = curve["value"].to_numpy(float)
    usable = np.isfinite(value) & (curve["n_diverged"].to_numpy(float) < curve["n_seeds"].to_numpy(float))
    finite = curve[curve["value"].notna()]
    kept = curve[usable]
    candidates = pd.concat([kept, finite[~finite["optimizer"].isin(kept["optimizer"])]])
    return best_per_group(candidates, ["optimizer"], metric).set_index("optimizer")


def lines_at_best_beta1(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The points the loss curves draw (:func:`sensitivity.report.figures.loss_curves_figure`).

    For each optimizer, beta1 fixed at that of its best point (:func:`best_row`) and, at each lr,
    the best point with that beta1 (:func:`best_per_group`).

    Args:
        table: a :func:`config_table`.

    Returns:
        Rows of ``table``, one per optimizer and lr, plus ``best_beta1`` (the fixed beta1, NaN for
        an optimizer without one). An optimizer without a finite value has no rows.
    """
    parts = []
    for name in table["optimizer"].unique():
        mine = table[(table["optimizer"] == name) & table["value"].notna()]
        if mine.empty:
            continue
        beta1 = best_row(mine, metric)["beta1"]
        at = mine[mine["beta1"].isna()] if math.isnan(beta1) else mine[np.isclose(mine["beta1"], beta1)]
        parts.append(best_per_group(at, ["lr"], metric).assign(best_beta1=beta1))
    if not parts:
        return table.iloc[:0].assign(best_beta1=pd.Series(dtype="float64"))
    return pd.concat(parts, ignore_index=True)


def catalog_defaults(optimizers: Iterable[str]) -> dict[str, dict[str, float]]:
    """Each named optimizer's hyperparameter defaults from the catalog (unknown names left out)."""
    return {n: dict(OPTIMIZERS[n].defaults) for n in optimizers if n in OPTIMIZERS}


def lr_curve(
    trials: pd.DataFrame | None,
    metric: str,
    aggregation: str = "best",
    defaults: Mapping[str, Mapping[str, float]] | None = None,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each optimizer's final metric as a function of the learning rate.

    Args:
        trials: the tidy trials frame (only COMPLETE rows are used); None when ``table`` is given.
        metric: one of the study's declared metrics (``val_loss``, ``val_acc``, ``return``, ...).
        aggregation: ``"best"`` (at each lr the best hyperparameter point, each point averaged
            over seeds) or ``"default"`` (only points at the optimizer's default betas, gamma and
            weight decay; an optimizer without such points has no rows). See :data:`AGGREGATIONS`.
        defaults: optimizer name -> hyperparameter defaults for ``"default"``; the catalog's
            when None.
        table: the trials' :func:`config_table`, when already computed.

    Returns:
        One row per optimizer and lr, sorted by lr: the :func:`config_table` columns of the point
        used (so ``beta1`` etc. say which betas each lr is shown at), plus ``n_points`` (points
        at that lr) and ``cell_diverged`` (share of all trials at that lr that diverged).

    Raises:
        ValueError: unknown aggregation or metric.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {sorted(AGGREGATIONS)}")
    if table is None:
        if trials is None:
            raise ValueError("lr_curve needs the trials or their config table")
        table = config_table(trials, metric)
    if aggregation == "default":
        defaults = catalog_defaults(table["optimizer"].unique()) if defaults is None else defaults
        keep = np.zeros(len(table), dtype=bool)
        for i, row in enumerate(table.itertuples(index=False)):
            d = defaults.get(row.optimizer)
            if d is None:
                continue
            keep[i] = all(
                math.isnan(getattr(row, hp)) or hp not in d or math.isclose(getattr(row, hp), d[hp], rel_tol=1e-9)
                for hp in HP_COLUMNS
            )
        table = table[keep]
    return _collapse(table, ["optimizer", "lr"], metric)


def _collapse(table: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Best point per ``by`` group, with the group's point count and divergence share."""
    cols = list(table.columns) + ["n_points", "cell_diverged"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    best = best_per_group(table, by, metric)
    stats = table.groupby(by, dropna=False).agg(
        n_points=("value", "size"), div=("n_diverged", "sum"), n=("n_seeds", "sum")
    )
    stats["cell_diverged"] = stats["div"] / stats["n"]
    out = best.merge(stats[["n_points", "cell_diverged"]].reset_index(), on=by, how="left")
    return out.sort_values(by, kind="stable").reset_index(drop=True)[cols]


def grid_table(trials: pd.DataFrame, metric: str, rows: str = "beta1") -> pd.DataFrame:
    """The lr x ``rows`` grid of each optimizer, for robustness heatmaps.

    Each cell is the best point over the remaining hyperparameters (beta2, gamma, weight decay
    when ``rows="beta1"``), each point averaged over seeds; ``cell_diverged`` is the share of
    all trials in the cell that diverged. Columns as :func:`lr_curve`.
    """
    if rows not in HP_COLUMNS:
        raise ValueError(f"rows must be one of {HP_COLUMNS}, got {rows!r}")
    return _collapse(config_table(trials, metric), ["optimizer", "lr", rows], metric)


def pair_table(table: pd.DataFrame, metric: str, x: str, y: str) -> pd.DataFrame:
    """One row per optimizer and (x, y) cell: the best point over the other hyperparameters.

    Args:
        table: a :func:`config_table` (of the completed trials, or of trials binned for a heatmap).
        x, y: two hyperparameter columns (``lr`` or one of :data:`HP_COLUMNS`).

    Returns:
        Columns as :func:`lr_curve` (``value`` the mean over seeds of the chosen point, ``n_seeds``,
        ``n_diverged``, ``cell_diverged`` the share of all runs in the cell that diverged). Only
        optimizers that have both hyperparameters (non-NaN) appear.
    """
    table = table[table[x].notna() & table[y].notna()]
    if table.empty:
        return table.assign(n_points=pd.Series(dtype=int), cell_diverged=pd.Series(dtype=float))
    return _collapse(table, ["optimizer", x, y], metric)


# ---- the metrics -------------------------------------------------------------------------------

def wortsman_sensitivity(values: Sequence[float], initial: float, higher_is_better: bool = False) -> float:
    """Wortsman et al. 2023 (arXiv 2309.14322, sec. 2.2) LR sensitivity of one lr curve.

    ``mean over the grid of [min(L(lr), L0) - L*]`` with ``L* = min L(lr)``. A NaN value counts
    as L0 (no progress). With ``higher_is_better`` (accuracies) the values are read as errors
    ``1 - acc`` (and L0 = ``1 - initial``), which gives ``mean[acc* - max(acc, acc0)]``.

    Args:
        values: the final metric at each grid lr (shape ``(n_lr,)``).
        initial: the metric at initialisation (L0 or acc0).

    Returns:
        The sensitivity in the metric's units (nats for losses, accuracy as a fraction);
        NaN when no value is finite.
    """
    v = np.asarray(values, dtype="float64")
    if higher_is_better:
        v, initial = 1.0 - v, 1.0 - initial
    if v.size == 0 or not np.isfinite(v).any():
        return math.nan
    if math.isfinite(initial):
        v = np.where(np.isfinite(v), np.minimum(v, initial), initial)
    else:
        v = v[np.isfinite(v)]
    best = float(np.min(v))
    return float(np.mean(v - best))


def lr_sensitivity(curve: pd.DataFrame, metric: str) -> pd.Series:
    """:func:`wortsman_sensitivity` of each optimizer's :func:`lr_curve`.

    L0 is the mean initial metric over the optimizer's points (one seed: its initial loss).
    Returns a Series indexed by optimizer, in the metric's units.
    """
    hib = higher_is_better(metric)
    out = {}
    values, initials = curve["value"].to_numpy(float), curve["initial"].to_numpy(float)
    codes, names = pd.factorize(curve["optimizer"], sort=False)
    order = np.argsort(codes, kind="stable")  # each optimizer's rows in order, as groupby(sort=False) gives them
    for name, at in zip(names, np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if order.size else []):
        initial = float(np.nanmean(initials[at])) if (~np.isnan(initials[at])).any() else math.nan
        out[name] = wortsman_sensitivity(values[at], initial, hib)
    return pd.Series(out, name="lr_sensitivity", dtype="float64")


def relative_performance(curve: pd.DataFrame, metric: str, reference: str = "optimizer") -> pd.DataFrame:
    """DeepOBS relative performance of each point of an :func:`lr_curve`.

    ``best / value`` for losses and ``value / best`` for accuracies, NaN -> 0, so 1 marks the
    best lr. ``reference="optimizer"`` takes each optimizer's own best (the shape of its lr
    sensitivity); ``"all"`` takes the best over all optimizers (shape and level).

    Returns a copy of ``curve`` with a ``relative_performance`` column in [0, 1].
    """
    if reference not in ("optimizer", "all"):
        raise ValueError(f"reference must be 'optimizer' or 'all', got {reference!r}")
    hib = higher_is_better(metric)
    out = curve.copy()
    values = out["value"].astype("float64")
    if reference == "all":
        best = pd.Series(values.max() if hib else values.min(), index=out.index)
    else:
        best = values.groupby(out["optimizer"]).transform("max" if hib else "min")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = values / best if hib else best / values
    rel = rel.where(np.isfinite(rel), 0.0).fillna(0.0)
    out["relative_performance"] = rel.astype("float64")
    return out


def divergence_rate(trials: pd.DataFrame) -> pd.Series:
    """Share of each optimizer's completed trials with ``diverged`` True (Series by optimizer)."""
    done = complete_trials(trials)
    flags = done["diverged"].fillna(False).astype(bool).astype(float)
    return flags.groupby(done["optimizer"]).mean().rename("divergence_rate")


def performance_profile(
    table: pd.DataFrame, *, higher_is_better: bool, taus: Sequence[float] | None = None
) -> pd.DataFrame:
    """Dolan-More performance profiles (as in AlgoPerf) of a figure of merit.

    Args:
        table: optimizers (rows) x tasks (columns) of one figure, e.g. tolerance width in decades
            (``higher_is_better=True``) or LR sensitivity (``False``). NaN marks a failure.
        higher_is_better: whether larger entries are better.
        taus: ratios at which to evaluate rho (>= 1); 200 log-spaced points from 1 to the
            largest finite ratio (at least 2) when None.

    The performance ratio of optimizer s on task p is ``r = t / min_s t`` for lower-is-better
    figures and ``r = max_s t / t`` for higher-is-better ones (equal values give 1, a zero
    competing with a positive best and NaN entries give inf). ``rho_s(tau)`` is the share of tasks
    with ``r <= tau``.

    Returns:
        A frame indexed by ``tau`` with one column per optimizer, values in [0, 1].
    """
    t = table.astype("float64").to_numpy()
    ratios = np.full_like(t, np.inf)
    for j in range(t.shape[1]):
        col = t[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        best = col[ok].max() if higher_is_better else col[ok].min()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = best / col if higher_is_better else col / best
        r = np.where(col == best, 1.0, r)
        ratios[:, j] = np.where(ok & np.isfinite(r), r, np.inf)
    if taus is None:
        finite = ratios[np.isfinite(ratios)]
        top = max(2.0, float(finite.max()) * 1.05) if finite.size else 2.0
        taus = np.geomspace(1.0, top, 200)
    taus = np.asarray(taus, dtype="float64")
    n_tasks = max(t.shape[1], 1)
    rho = (ratios[:, None, :] <= taus[None, :, None]).sum(axis=2) / n_tasks
    frame = pd.DataFrame(rho.T, index=pd.Index(taus, name="tau"), columns=table.index)
    return frame
