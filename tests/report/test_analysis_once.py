"""The report computes its analysis once and every figure, finding and rendering reads it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sensitivity.report import analysis, build, figures, heatmaps, load_trials, metrics, tolerance
from tests.helpers.toy_studies import make_study, stored_toy_study


def _counting(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records the first argument of every call."""
    calls: list = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(kwargs["table"] if kwargs.get("table") is not None else args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.fixture()
def one_seed(tmp_path):
    return stored_toy_study(tmp_path)


@pytest.mark.slow  # a whole report build
def test_one_build_report_forms_each_lr_curve_and_tolerance_table_once(one_seed, tmp_path, monkeypatch):
    curves = _counting(monkeypatch, metrics, "lr_curve")
    tables = _counting(monkeypatch, tolerance, "tolerance_table")
    analyses = _counting(monkeypatch, analysis, "analyze")
    configs = _counting(monkeypatch, metrics, "config_table")
    monkeypatch.setattr(build, "analyze", analysis.analyze)  # build imported the name before the patch
    paths = build.build_report(one_seed, "toy", tmp_path / "r")
    assert len(analyses) == 1
    assert len(curves) == 1 and curves[0] is paths.analysis.configs  # the config table of the trials shown
    assert len(tables) == 1 and tables[0] is paths.analysis.curve
    # one config table of the trials shown, which the lr curve, the loss curves and the good-region
    # shares read, and one per swept pair of the trials binned for its heatmap
    assert len(configs) == 1 + len(paths.analysis.pairs)


@pytest.mark.slow  # a whole report build with its seed bootstrap
def test_with_seeds_only_the_bootstrap_recomputes_the_curve_on_resampled_seeds(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    make_study(url, "two", seeds=(0, 1), with_other_states=False)
    inside: list[bool] = []
    original = analysis.seed_bootstrap_tables

    def bootstrap(*args, **kwargs):
        inside.append(True)
        try:
            return original(*args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(analysis, "seed_bootstrap_tables", bootstrap)
    outside: list = []
    within: list = []
    lr_curve = metrics.lr_curve
    monkeypatch.setattr(metrics, "lr_curve", lambda t, *a, **k: ((within if inside else outside).append(k.get("table")),
                                                                   lr_curve(t, *a, **k))[1])
    paths = build.build_report(url, "two", tmp_path / "r")
    assert paths.analysis.bootstrap == "exact" and within  # 2 seeds: every draw enumerated
    assert len(outside) == 1 and outside[0] is paths.analysis.configs


def test_figures_draw_the_analysis_without_recomputing_it(one_seed, monkeypatch):
    data = load_trials(one_seed, "toy")
    result = analysis.analyze(data.trials, "val_loss")
    # what the figures draw must come from the result: make a second form of the curve an error
    for module, name in ((metrics, "lr_curve"), (tolerance, "tolerance_table"), (metrics, "relative_performance"),
                         (metrics, "config_table"), (metrics, "pair_table"), (metrics, "best_row"),
                         (metrics, "best_per_group"), (metrics, "higher_is_better")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("a figure recomputed the analysis"))
    # and change the numbers: a figure that recomputed would draw the stored trials' values instead
    halved = result.curve.assign(value=result.curve["value"] / 2)
    widths = result.tolerance.assign(tolerance_width_decades=[1.2345] * len(result.tolerance))
    changed = dataclasses.replace(result, curve=halved, tolerance=widths)
    fig = figures.lr_sensitivity_figure(changed)
    adam = halved[halved["optimizer"] == "adam"].sort_values("lr")
    drawn = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("Adam ")]
    assert len(drawn) == 1 and np.allclose(drawn[0].get_ydata(), adam["value"])
    assert "width 1.23 dec" in drawn[0].get_label()
    figures.relative_performance_figure(changed)
    figures.loss_curves_figure(changed, data.curves)
    # the heatmap draws the analysis's cells of the pair (binned there first when samples are continuous);
    # it outlines the cells within the analysis's thresholds (raised above every value: all within)
    table = result.tolerance.assign(tolerance_threshold=1e9)
    fig = heatmaps.pair_heatmaps(dataclasses.replace(result, tolerance=table), "lr", "beta1")
    lion = next(a for a in fig.axes if a.get_title().startswith("Lion"))
    cells = np.isfinite(np.ma.filled(lion.images[0].get_array(), np.nan)).sum()
    outlined = [p for p in lion.patches if p.get_edgecolor()[:3] == (1.0, 1.0, 1.0)]
    assert len(outlined) == cells
