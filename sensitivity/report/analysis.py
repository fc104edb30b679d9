"""One analysis of a study: the tidy trials frame -> :class:`StudyAnalysis`, computed once.

:func:`analyze` is the report's only analysis step, and data flows through it one way: the trials
are put on the lr axis shown (:mod:`sensitivity.report.effective_lr`); the metrics
(:mod:`sensitivity.report.metrics`) form, once, the completed trials, each optimizer's lr curve and
configuration table, the pair tables and the lines the figures draw; the tolerance tables
(:mod:`sensitivity.report.tolerance`), good-region shares (:mod:`sensitivity.report.region`) and the
summary (:mod:`sensitivity.report.summary`) are computed from those tables, never calling back into
the metrics; the seed bootstrap (:mod:`sensitivity.report.uncertainty`) repeats that one step,
:func:`_measure_tables`, on the configuration tables of resampled seeds, every draw at once
(:mod:`sensitivity.report.resampling`); then the expected best after n configurations
(:mod:`sensitivity.report.expected_best`), the variance decomposition per optimizer
(:mod:`sensitivity.report.importance`) and the ablation path (:mod:`sensitivity.report.ablation`). Figures, findings, the summary table and the HTML/Markdown
renderers only read the result; the settings it was computed with (the metric's direction among
them) travel in :class:`AnalysisSettings` beside the numbers (no side channel through ``DataFrame.attrs``).

Adding an analysis: add a field to :class:`StudyAnalysis` and compute it in :func:`analyze`; every
reader then gets it from there.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import pandas as pd

from sensitivity.records import Metric
from sensitivity.report import ablation, effective_lr, expected_best, importance, metrics, region, summary, tolerance
from sensitivity.report.resampling import seed_bootstrap_tables
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
        absolute_points: the relative tolerance is in absolute points (an accuracy), not relative to
            the best value (:func:`sensitivity.report.metrics.absolute_tolerance`).
        tolerance_text, relative_text, aggregation_text: the thresholds and the aggregation in words.
        metric_label, metric_unit: the metric as the analysed study declared it (``validation loss``,
            ``nats/char``; unit "" when none). Labels come from here, not from the process-wide
            registry, in which the last study loaded declares a shared name (``val_loss`` is
            nats/example for a classifier, nats/char for char-lm).
    """

    metric: str
    higher_is_better: bool
    tau: float
    relative_tolerance: float
    aggregation: str
    lr_axis: str
    level: float
    divergence_factor: float | None
    absolute_points: bool
    tolerance_text: str
    relative_text: str
    aggregation_text: str
    metric_label: str = ""
    metric_unit: str = ""


@dataclasses.dataclass(frozen=True)
class PairCells:
    """What the heatmap of one swept pair draws, computed once by :func:`analyze`.

    Attributes:
        cells: :func:`sensitivity.report.metrics.pair_table` of the completed trials, binned first on an
            axis with many distinct values (:func:`sensitivity.report.region.bin_samples`).
        best: each optimizer's best cell with a finite value, indexed by optimizer
            (:func:`sensitivity.report.metrics.best_per_group`).
        notes: one note per binned axis.
    """

    cells: pd.DataFrame
    best: pd.DataFrame
    notes: tuple[str, ...]


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
            configuration, mean over seeds.
        loss_lines: :func:`sensitivity.report.metrics.lines_at_best_beta1` of ``configs``: the
            configurations whose loss curves are drawn.
        optimizers: the optimizers with a completed trial, in catalog order.
        display: optimizer name -> display name.
        n_seeds: distinct seeds among the completed trials.
        varying: hyperparameters besides lr that take more than one value for some optimizer.
        swept_axes: :func:`sensitivity.report.region.swept_axes`; ``pairs``: the swept pairs.
        pair_optimizers: each swept pair -> the optimizers that varied both of its hyperparameters
            (catalog order), whether or not they have a good region in it.
        never_improved: the optimizers whose lr curve never improved on its initial value (no best
            lr, no width, no good region): the findings say so, and the figures title them so,
            never with a "best" value.
        heatmap_cells: swept pair -> its :class:`PairCells`.
        curve: :func:`sensitivity.report.metrics.lr_curve`, one row per optimizer and lr.
        tolerance: :func:`sensitivity.report.tolerance.tolerance_table` of ``curve``, indexed by optimizer.
        relative_performance: :func:`sensitivity.report.metrics.relative_performance` of ``curve``.
        regions: :func:`sensitivity.report.region.good_region_table` of the swept pairs.
        summary: the summary table (:func:`sensitivity.report.summary.summary_result`), one row per optimizer.
        bootstrap: ``"exact"``, ``"monte carlo"`` or ``""`` (one seed).
        differences: paired differences between optimizers under the seed bootstrap (empty with one seed).
        expected_best: :func:`sensitivity.report.expected_best.expected_best_table` of the completed trials.
        importance: :func:`sensitivity.report.importance.importance_table` of ``nominal`` (the variance
            decomposition per optimizer on the stored lr grid, with seed-bootstrap intervals).
        ablation: :func:`sensitivity.report.ablation.ablation_path` of ``nominal`` (library defaults ->
            best configuration, one hyperparameter at a time).
        curve_pooled: optimizer -> the hyperparameters besides lr that take several values among the
            configurations sharing one point of its lr curve (on ``settings.lr_axis``): the point is the
            best of those.
        curve_apart: optimizer -> the hyperparameters it varied that never share a point: each value
            is a point of its own (on the effective axis NAG's beta1, which moves its effective lr;
            on random samples every hyperparameter, each sampled lr coming with its own values).
    """

    settings: AnalysisSettings
    trials: pd.DataFrame
    complete: pd.DataFrame
    nominal: pd.DataFrame
    configs: pd.DataFrame
    loss_lines: pd.DataFrame
    optimizers: tuple[str, ...]
    display: Mapping[str, str]
    n_seeds: int
    varying: tuple[str, ...]
    swept_axes: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    pair_optimizers: Mapping[tuple[str, str], tuple[str, ...]]
    never_improved: tuple[str, ...]
    heatmap_cells: Mapping[tuple[str, str], PairCells]
    curve: pd.DataFrame
    tolerance: pd.DataFrame
    relative_performance: pd.DataFrame
    regions: pd.DataFrame
    summary: pd.DataFrame
    bootstrap: str
    differences: pd.DataFrame
    expected_best: pd.DataFrame
    importance: pd.DataFrame
    ablation: pd.DataFrame
    curve_pooled: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    curve_apart: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def aggregation_words(self, exclude: tuple[str, ...] = (), aggregation: str | None = None, *,
                          nominal: bool = False, seeds: bool = True) -> str:
        """What one plotted value of the lr curve is, in words, for this study (only what actually
        varies): ``"best over beta1/beta2, mean over 3 seeds"``; hyperparameters in ``exclude`` left out;
        ``aggregation`` overrides the analysis's own (the loss curves always pick the best).

        Where an optimizer's points are not the best over everything else it varied
        (:attr:`curve_apart`: NAG's beta1 on the effective axis), each optimizer is named with what
        its points are, the most optimizers' first: ``"best over beta1; NAG: one lr, beta1
        configuration; 1 seed"``. ``nominal``: the lines drawn per stored lr (the loss curves), where every other
        hyperparameter shares the lr's point; ``seeds``: end with the seed part (``"1 seed"``).
        """
        aggregation = aggregation or self.settings.aggregation
        seed_part = (f"mean over {self.n_seeds} seeds" if self.n_seeds > 1 else "1 seed") if seeds else ""
        tail = f", {seed_part}" if seed_part else ""
        hps = [h for h in self.varying if h not in exclude]
        if not hps:
            return seed_part
        names = "/".join(_hp_words(hps))
        if aggregation == "default":
            return f"at default {names}{tail}"
        apart = {o: [h for h in self.curve_apart.get(o, ()) if h not in exclude] for o in self.optimizers}
        if nominal or not any(apart.values()):
            return f"best over {names}{tail}"
        phrases: dict[str, list[str]] = {}  # what a point is -> the optimizers whose points it describes
        for o in self.optimizers:
            pooled = [h for h in self.curve_pooled.get(o, ()) if h not in exclude]
            if apart[o]:
                what = f"one {', '.join(['lr', *_hp_words(apart[o])])} configuration"
                what = f"best over {'/'.join(_hp_words(pooled))}, {what} each" if pooled else what
            else:
                what = f"best over {'/'.join(_hp_words(pooled))}" if pooled else "one configuration"
            phrases.setdefault(what, []).append(str(self.display.get(o, o)))
        main = max(phrases, key=lambda what: len(phrases[what]))  # the most optimizers' (the first of equals)
        if len(phrases) == 1:
            return f"{main}{tail}"
        parts = [main, *(f"{', '.join(who)}: {what}" for what, who in phrases.items() if what != main)]
        return "; ".join(parts + ([seed_part] if seed_part else []))


def _hp_words(hps) -> list[str]:
    return [h.replace("weight_decay", "weight decay") for h in hps]


def _curve_points(configs: pd.DataFrame) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(pooled, apart) of :class:`StudyAnalysis`, from the configuration table the lr curve is formed
    of: per optimizer, the hyperparameters that vary among configurations of one lr, and those it
    varies that never do."""
    pooled: dict[str, tuple[str, ...]] = {}
    apart: dict[str, tuple[str, ...]] = {}
    for name, g in configs.groupby("optimizer", sort=False):
        varied = [h for h in metrics.HP_COLUMNS if g[h].nunique(dropna=True) > 1]
        within = g.groupby("lr", dropna=False)[varied].nunique(dropna=True).gt(1).any() if varied else pd.Series(dtype=bool)
        pooled[name] = tuple(h for h in varied if bool(within[h]))
        apart[name] = tuple(h for h in varied if not bool(within[h]))
    return pooled, apart


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


@dataclasses.dataclass(frozen=True)
class _Measured:
    """What :func:`_measure` computes for one trials frame."""

    configs: pd.DataFrame
    curve: pd.DataFrame
    tolerance: pd.DataFrame
    regions: pd.DataFrame
    numbers: pd.DataFrame


def _measure(trials: pd.DataFrame, settings: AnalysisSettings, pairs: tuple[tuple[str, str], ...]) -> _Measured:
    """The figures of one trials frame that the seed bootstrap recomputes: the configuration table
    and divergence rate of its completed trials, then :func:`_measure_tables`."""
    complete = metrics.complete_trials(trials)
    configs = metrics.config_table(trials, settings.metric)
    return _measure_tables(configs, metrics.divergence_rate(complete), settings, pairs,
                           names=metrics.optimizer_order(complete["optimizer"]))


def _measure_tables(configs: pd.DataFrame, divergence: pd.Series, settings: AnalysisSettings,
                    pairs: tuple[tuple[str, str], ...], *, names: list[str] | None = None,
                    optimizer_of: Mapping[str, str] | None = None) -> _Measured:
    """The figures of one configuration table: the lr curve and pair tables first, in one block,
    then the tolerance table, the good-region shares and the summary's numbers read them.

    ``optimizer_of`` maps the table's optimizer names to catalog names when they differ (the seed
    bootstrap's stacked tables, :mod:`sensitivity.report.resampling`), for the catalog defaults of
    the ``default`` aggregation; ``names`` are the rows (every optimizer of the table by default).
    """
    metric, hib = settings.metric, settings.higher_is_better
    defaults = None
    if optimizer_of is not None and settings.aggregation == "default":
        catalog = metrics.catalog_defaults(set(optimizer_of.values()))
        defaults = {name: catalog[o] for name, o in optimizer_of.items() if o in catalog}
    curve = metrics.lr_curve(None, metric, settings.aggregation, defaults=defaults, table=configs)
    cells = {(x, y): metrics.pair_table(configs, metric, x, y) for x, y in pairs}
    best = metrics.best_points(curve, metric)
    sensitivity = metrics.lr_sensitivity(curve, metric)
    names = list(configs["optimizer"].unique()) if names is None else names
    tolerances = tolerance.tolerance_table(curve, higher_is_better=hib, tau=settings.tau,
                                           relative_tolerance=settings.relative_tolerance,
                                           points=settings.absolute_points)
    regions = region.good_region_table(cells, tolerances["tolerance_threshold"].to_dict(),
                                       tolerances["initial_value"].to_dict(), higher_is_better=hib)
    numbers = summary.summary_numbers(names, tolerances, best, sensitivity, divergence, regions, pairs)
    return _Measured(configs=configs, curve=curve, tolerance=tolerances, regions=regions, numbers=numbers)


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
    declaration: Metric | None = None,
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
        declaration: the study's own declaration of ``metric`` (label, unit), from
            ``TrialsData.declaration(metric)``; the process-wide registry's when None.

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
        absolute_points=metrics.absolute_tolerance(metric),
        tolerance_text=tolerance.describe_threshold("improvement", tau, higher_is_better=hib),
        relative_text=relative_text,
        aggregation_text=metrics.AGGREGATIONS[aggregation],
        metric_label=declaration.label if declaration is not None else metrics.metric_label(metric),
        metric_unit=declaration.unit if declaration is not None else metrics.metric_unit(metric),
    )
    shown = effective_lr.on_lr_axis(trials, lr_axis)
    # the trials' own tables, in one block: what the measuring step and the seed bootstrap start from
    complete = metrics.complete_trials(shown)
    shown_configs = metrics.config_table(shown, metric)
    values = metrics.metric_values(complete, metric)
    divergence = metrics.divergence_rate(complete)
    names = metrics.optimizer_order(complete["optimizer"])
    axes = tuple(region.swept_axes(complete))
    pairs = tuple(region.swept_pairs(complete))
    binned = {pair: region.bin_samples(complete, pair) for pair in pairs}
    measured = _measure_tables(shown_configs, divergence, settings, pairs, names=names)
    # the rest of the metrics, in one block: the tables the figures and the findings read
    nominal = complete if shown is trials else metrics.complete_trials(trials)
    configs = measured.configs if shown is trials else metrics.config_table(nominal, metric)
    loss_lines = metrics.lines_at_best_beta1(configs, metric)
    heat = {}
    for (x, y), (done, notes) in binned.items():
        cells = metrics.pair_table(metrics.config_table(done, metric), metric, x, y)
        best = metrics.best_per_group(cells[cells["value"].notna()], ["optimizer"], metric).set_index("optimizer")
        heat[(x, y)] = PairCells(cells=cells, best=best, notes=tuple(notes))
    relative = metrics.relative_performance(measured.curve, metric)
    far = (metrics.evaluation_far_above_training(complete, divergence_factor).groupby(complete["optimizer"]).mean()
           if divergence_factor is not None and not complete.empty else None)
    optimizers = tuple(measured.numbers.index)
    n_seeds = int(pd.Series(complete["seed"]).nunique()) if "seed" in complete else 1
    boot = None
    if uncertainty and n_seeds >= 2:
        boot = seed_bootstrap_tables(
            complete, values, shown_configs, metric, measured.numbers,
            lambda configs_k, divergence_k, of: _measure_tables(configs_k, divergence_k, settings, pairs,
                                                                optimizer_of=of).numbers,
            level=level)
    result = summary.summary_result(measured.numbers, complete, pairs=pairs, evaluation_far=far, boot=boot)
    pooled, apart = _curve_points(shown_configs)
    return StudyAnalysis(
        settings=settings,
        trials=shown,
        complete=complete,
        nominal=nominal,
        configs=configs,
        loss_lines=loss_lines,
        optimizers=optimizers,
        display=_display(trials),
        n_seeds=n_seeds,
        varying=_varying(complete),
        swept_axes=axes,
        pairs=pairs,
        pair_optimizers=_pair_optimizers(complete, pairs),
        never_improved=tuple(metrics.optimizer_order(
            measured.tolerance.index[~measured.tolerance["learned"].astype(bool)])),
        heatmap_cells=heat,
        curve=measured.curve,
        tolerance=measured.tolerance,
        relative_performance=relative,
        regions=measured.regions,
        summary=result.frame,
        bootstrap=result.bootstrap,
        differences=result.differences,
        expected_best=expected_best.expected_best_table(values, complete["optimizer"], higher_is_better=hib),
        # on the stored (nominal) lr: an effective lr moves every point of a grid off its cell
        importance=importance.importance_table(nominal, metric, tau=tau, level=level, uncertainty=uncertainty),
        ablation=ablation.ablation_path(nominal, metric, table=configs, higher_is_better=hib),
        curve_pooled=pooled,
        curve_apart=apart,
    )


def summarize(
    trials: pd.DataFrame,
    metric: str,
    *,
    tau: float | None = None,
    relative_tolerance: float | None = None,
    aggregation: str = "best",
    uncertainty: bool = True,
    level: float = DEFAULT_LEVEL,
    divergence_factor: float | None = None,
) -> pd.DataFrame:
    """One row per optimizer: the report's table of tolerance metrics (:mod:`sensitivity.report.summary`).

    The :attr:`StudyAnalysis.summary` of :func:`analyze` on the nominal lr axis (the report reads it
    there, beside the settings it was computed with).

    Args:
        trials: the tidy trials frame.
        metric, tau, relative_tolerance, aggregation, uncertainty, level, divergence_factor: as :func:`analyze`.

    Returns:
        The frame (:data:`~sensitivity.report.summary.BASE_COLUMNS`, share columns, interval columns).

    Raises:
        ValueError: unknown metric or aggregation; tau or the relative tolerance negative.
    """
    return analyze(trials, metric, tau=tau, relative_tolerance=relative_tolerance, aggregation=aggregation,
                   uncertainty=uncertainty, level=level, divergence_factor=divergence_factor).summary
