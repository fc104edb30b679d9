"""One analysis of a study: the tidy trials frame -> :class:`StudyAnalysis`, computed once.

:func:`analyze` is the report's only analysis step. It puts the trials on the lr axis shown
(:mod:`sensitivity.report.effective_lr`), forms each optimizer's lr curve
(:func:`sensitivity.report.metrics.lr_curve`) and its tolerance table
(:func:`sensitivity.report.tolerance.tolerance_table`) once, and from them the summary with its
good-region shares and seed-bootstrap intervals (:mod:`sensitivity.report.summary`), the relative
performance curve and the expected best after n configurations (:mod:`sensitivity.report.expected_best`).
Figures, findings, the summary table and the HTML/Markdown renderers only read the result; the
settings it was computed with travel in :class:`AnalysisSettings` beside the numbers (no side channel
through ``DataFrame.attrs``).

Adding an analysis (e.g. the per-optimizer variance decomposition, ``importance``): add a field to
:class:`StudyAnalysis` and compute it in :func:`analyze`; every reader then gets it from there.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import pandas as pd

from sensitivity.report import effective_lr, expected_best, metrics, region, summary, tolerance
from sensitivity.report.uncertainty import DEFAULT_LEVEL


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """The settings a :class:`StudyAnalysis` was computed with, resolved (no None left).

    Attributes:
        metric: the metric analysed (``val_loss``, ``val_acc``, ...).
        higher_is_better: its direction.
        tau: fraction of the improvement threshold (:data:`sensitivity.report.tolerance.DEFAULT_TAU` by default).
        relative_tolerance: the relative threshold (the metric's default by default).
        aggregation: how an lr curve is formed, a key of :data:`sensitivity.report.metrics.AGGREGATIONS`.
        lr_axis: ``"nominal"`` or ``"effective"`` (:data:`sensitivity.report.effective_lr.LR_AXES`).
        level: coverage of the seed-bootstrap intervals.
        divergence_factor: the study's divergence factor (None when unknown).
        tolerance_text, relative_text, aggregation_text: the thresholds and the aggregation in words.
    """

    metric: str
    higher_is_better: bool
    tau: float
    relative_tolerance: float
    aggregation: str
    lr_axis: str
    level: float
    divergence_factor: float | None
    tolerance_text: str
    relative_text: str
    aggregation_text: str


@dataclasses.dataclass(frozen=True)
class StudyAnalysis:
    """Everything the report shows about one study, computed once by :func:`analyze`.

    Attributes:
        settings: what the numbers were computed with.
        trials: the tidy trials frame, every state, ``lr`` on ``settings.lr_axis`` (the nominal lr in
            ``lr_nominal`` on the effective axis).
        complete: the COMPLETE trials of ``trials``.
        nominal: the COMPLETE trials on the nominal lr (the loss curves are drawn per stored lr).
        configs: :func:`sensitivity.report.metrics.config_table` of ``nominal``: one row per
            configuration, mean over seeds (the loss curves pick their lines from it).
        display: optimizer name -> display name.
        n_seeds: distinct seeds among the completed trials.
        varying: hyperparameters besides lr that take more than one value for some optimizer.
        swept_axes: :func:`sensitivity.report.region.swept_axes`; ``pairs``: the swept pairs.
        pair_optimizers: each swept pair -> the optimizers that varied both of its hyperparameters
            (catalog order), whether or not they have a good region in it.
        never_improved: the optimizers whose lr curve never improved on its initial value (no best
            lr, no width, no good region): the findings say so, and the figures title them so,
            never with a "best" value.
        curve: :func:`sensitivity.report.metrics.lr_curve`, one row per optimizer and lr.
        tolerance: :func:`sensitivity.report.tolerance.tolerance_table` of ``curve``, indexed by optimizer.
        relative_performance: :func:`sensitivity.report.metrics.relative_performance` of ``curve``.
        regions: :func:`sensitivity.report.region.good_region_table` of the swept pairs.
        summary: :func:`sensitivity.report.summary.summarize`'s frame, one row per optimizer.
        bootstrap: ``"exact"``, ``"monte carlo"`` or ``""`` (one seed).
        differences: paired differences between optimizers under the seed bootstrap (empty with one seed).
        expected_best: :func:`sensitivity.report.expected_best.expected_best_table` of the completed trials.
    """

    settings: AnalysisSettings
    trials: pd.DataFrame
    complete: pd.DataFrame
    nominal: pd.DataFrame
    configs: pd.DataFrame
    display: Mapping[str, str]
    n_seeds: int
    varying: tuple[str, ...]
    swept_axes: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    pair_optimizers: Mapping[tuple[str, str], tuple[str, ...]]
    never_improved: tuple[str, ...]
    curve: pd.DataFrame
    tolerance: pd.DataFrame
    relative_performance: pd.DataFrame
    regions: pd.DataFrame
    summary: pd.DataFrame
    bootstrap: str
    differences: pd.DataFrame
    expected_best: pd.DataFrame

    def aggregation_words(self, exclude: tuple[str, ...] = (), aggregation: str | None = None) -> str:
        """What one plotted value is, in words, for this study (only what actually varies):
        ``"best over beta1/beta2, mean over 3 seeds"``; hyperparameters in ``exclude`` left out;
        ``aggregation`` overrides the analysis's own (the loss curves always pick the best)."""
        aggregation = aggregation or self.settings.aggregation
        seed_part = f"mean over {self.n_seeds} seeds" if self.n_seeds > 1 else "1 seed"
        hps = [h for h in self.varying if h not in exclude]
        if not hps:
            return seed_part
        names = "/".join(h.replace("weight_decay", "weight decay") for h in hps)
        if aggregation == "default":
            return f"at default {names}, {seed_part}"
        return f"best over {names}, {seed_part}"


def _varying(done: pd.DataFrame) -> tuple[str, ...]:
    return tuple(hp for hp in metrics.HP_COLUMNS if (done.groupby("optimizer")[hp].nunique(dropna=True) > 1).any())


def _pair_optimizers(done: pd.DataFrame, pairs: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], tuple[str, ...]]:
    out = {}
    for x, y in pairs:
        counts = done.groupby("optimizer")[[x, y]].nunique(dropna=True)
        out[(x, y)] = tuple(metrics.optimizer_order(counts.index[(counts[x] > 1) & (counts[y] > 1)]))
    return out


def _display(trials: pd.DataFrame) -> dict[str, str]:
    if "optimizer_display" not in trials:
        return {}
    pairs = trials[["optimizer", "optimizer_display"]].drop_duplicates("optimizer")
    return dict(zip(pairs["optimizer"], pairs["optimizer_display"]))


def analyze(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float | None = None,
    relative_tolerance: float | None = None,
    aggregation: str = "best",
    lr_axis: str = "nominal",
    uncertainty: bool = True,
    level: float = DEFAULT_LEVEL,
    divergence_factor: float | None = None,
) -> StudyAnalysis:
    """Analyse a study's tidy trials frame once (see the module docstring).

    Args:
        trials: the tidy trials frame as loaded (:attr:`sensitivity.report.frame.TrialsData.trials`,
            nominal lrs, every state).
        metric: the metric analysed.
        tau: fraction of the improvement threshold; :data:`~sensitivity.report.tolerance.DEFAULT_TAU` when None.
        relative_tolerance: the relative threshold; :func:`~sensitivity.report.metrics.default_tolerance` when None.
        aggregation: how the lr curve is formed (:data:`~sensitivity.report.metrics.AGGREGATIONS`).
        lr_axis: ``"nominal"`` or ``"effective"``; every figure that depends on the axis is computed on it.
        uncertainty: compute seed-bootstrap intervals when the study has two seeds or more.
        level: coverage of those intervals.
        divergence_factor: the study's divergence factor, for the evaluation-far-above-training rate.

    Raises:
        ValueError: unknown metric, aggregation or lr axis; a negative tolerance.
    """
    hib = metrics.higher_is_better(metric)
    rel = metrics.default_tolerance(metric) if relative_tolerance is None else float(relative_tolerance)
    relative_text = metrics.describe_tolerance(metric, rel)
    tau = tolerance.DEFAULT_TAU if tau is None else float(tau)
    settings = AnalysisSettings(
        metric=metric, higher_is_better=hib, tau=tau, relative_tolerance=rel, aggregation=aggregation,
        lr_axis=lr_axis, level=level, divergence_factor=divergence_factor,
        tolerance_text=tolerance.describe_threshold("improvement", tau, higher_is_better=hib),
        relative_text=relative_text,
        aggregation_text=metrics.AGGREGATIONS[aggregation],
    )
    shown = effective_lr.on_lr_axis(trials, lr_axis)
    # the metrics first, in one block: the lr curve and the tables every figure reads
    complete = metrics.complete_trials(shown)
    nominal = complete if shown is trials else metrics.complete_trials(trials)
    curve = metrics.lr_curve(shown, metric, aggregation)
    configs = metrics.config_table(nominal, metric)
    relative = metrics.relative_performance(curve, metric)
    values = metrics.metric_values(complete, metric)
    points = metrics.absolute_tolerance(metric)
    pairs = tuple(region.swept_pairs(shown))
    axes = tuple(region.swept_axes(shown))
    tolerances = tolerance.tolerance_table(curve, higher_is_better=hib, tau=tau, relative_tolerance=rel, points=points)
    result = summary.summary_result(shown, metric, tau=tau, relative_tolerance=rel, aggregation=aggregation,
                                    pairs=pairs, uncertainty=uncertainty, level=level,
                                    divergence_factor=divergence_factor, curve=curve, tolerances=tolerances)
    return StudyAnalysis(
        settings=settings,
        trials=shown,
        complete=complete,
        nominal=nominal,
        configs=configs,
        display=_display(trials),
        n_seeds=result.n_seeds,
        varying=_varying(complete),
        swept_axes=axes,
        pairs=pairs,
        pair_optimizers=_pair_optimizers(complete, pairs),
        never_improved=tuple(metrics.optimizer_order(tolerances.index[~tolerances["learned"].astype(bool)])),
        curve=curve,
        tolerance=tolerances,
        relative_performance=relative,
        regions=result.regions,
        summary=result.frame,
        bootstrap=result.bootstrap,
        differences=result.differences,
        expected_best=expected_best.expected_best_table(values, complete["optimizer"], higher_is_better=hib),
    )
