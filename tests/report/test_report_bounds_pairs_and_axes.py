"""The report end to end on small stored studies: bounds with seeds, a heatmap
per swept pair, the effective lr axis, figure formats, expected best for a random study."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from sensitivity.report import build_report, load_trials
from sensitivity.report.summary import UNCERTAIN
from sensitivity.report.expected_best import expected_best
from tests.helpers.toy_studies import add, make_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('s3') / 's.db'}"
    make_study(url, "s3", seeds=(0, 1, 2), with_other_states=False)
    return url


@pytest.mark.slow
def test_three_seeds_give_bounds_for_every_metric_and_bands(three_seeds, tmp_path):
    paths = build_report(three_seeds, "s3", tmp_path / "r")
    summary = pd.read_csv(paths.summary_csv)
    for col in (*UNCERTAIN, "good_share_lr_beta1"):
        low, high = summary[f"{col}_low"], summary[f"{col}_high"]
        assert (low.notna() == summary[col].notna()).all(), col
        ok = summary[col].notna()
        assert (low[ok] <= high[ok] + 1e-12).all(), col
    assert paths.differences_csv is not None and paths.differences_csv.is_file()
    text = paths.report_md.read_text()
    assert "95% seed-bootstrap interval (exact, 3 seeds)" in text


@pytest.mark.slow
def test_a_study_sweeping_beta2_and_gamma_gets_those_heatmaps(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=url, study_name="p")
    study.set_user_attr("task", "toy-task")
    for lr in (1e-4, 1e-3, 1e-2):
        for b2 in (0.99, 0.999):
            for g in (0.3, 0.5):
                add(study, "adamrag", lr, beta1=0.9, beta2=b2, gamma=g)
            add(study, "adam", lr, beta1=0.9, beta2=b2)
    paths = build_report(url, "p", tmp_path / "r", formats=("png", "svg", "pdf"))
    assert {"heatmap_lr_beta2", "heatmap_lr_gamma", "heatmap_beta2_gamma"} <= set(paths.figures)
    assert "heatmap_lr_beta1" not in paths.figures  # beta1 was not varied
    for stem in ("heatmap_lr_gamma", "lr_sensitivity"):
        assert (tmp_path / "r" / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
        assert (tmp_path / "r" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    summary = pd.read_csv(paths.summary_csv).set_index("optimizer")
    assert math.isnan(summary.loc["adam", "good_share_lr_gamma"])
    assert 0 <= summary.loc["adamrag", "good_share_lr_gamma"] <= 1


@pytest.mark.slow
def test_the_effective_lr_axis_rescales_adamrag_and_nag(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    make_study(url, "e", with_other_states=False)
    nominal = pd.read_csv(build_report(url, "e", tmp_path / "n").summary_csv).set_index("optimizer")
    effective = pd.read_csv(build_report(url, "e", tmp_path / "f", lr_axis="effective").summary_csv).set_index("optimizer")
    # AdamRAG: lr / (1 - 0.5); Adam and Lion unchanged; NAG: lr / (1 - beta1) at its best beta1
    assert effective.loc["adamrag", "best_lr"] == pytest.approx(2 * nominal.loc["adamrag", "best_lr"])
    assert effective.loc["adam", "best_lr"] == pytest.approx(nominal.loc["adam", "best_lr"])
    b1 = nominal.loc["nag", "best_beta1"]
    assert effective.loc["nag", "best_lr"] == pytest.approx(nominal.loc["nag", "best_lr"] / (1 - b1))
    # a constant factor does not change AdamRAG's width in decades
    assert effective.loc["adamrag", "tolerance_width_decades"] == pytest.approx(
        nominal.loc["adamrag", "tolerance_width_decades"])
    assert "lr axis: effective" in (tmp_path / "f" / "report.md").read_text()


@pytest.mark.slow
def test_a_random_study_gets_the_expected_best_curve(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(storage=url, study_name="rnd")
    study.set_user_attr("sampler", "random")
    rng = np.random.default_rng(0)
    for _ in range(12):
        add(study, "adam", float(10 ** rng.uniform(-4, -1)), beta1=float(rng.uniform(0.8, 0.99)), beta2=0.999)
    paths = build_report(url, "rnd", tmp_path / "r")
    assert paths.figures["expected_best"].is_file()
    curve = pd.read_csv(paths.expected_best_csv)
    assert curve["n"].tolist() == list(range(1, 13))
    values = load_trials(url, "rnd").complete["value"].to_numpy()
    # n = 1 is the mean of the stored values; n = 3 follows Dodge et al.'s formula for these values
    assert curve["expected_best"].iloc[0] == pytest.approx(values.mean())
    assert curve["expected_best"].iloc[2] == pytest.approx(expected_best(values, 3, higher_is_better=False)[0])
    assert curve["expected_best"].is_monotonic_decreasing
    # the random samples are scattered, so the lr x beta1 share is the share of sampled points
    summary = pd.read_csv(paths.summary_csv)
    threshold = summary.loc[0, "tolerance_threshold"]
    assert summary.loc[0, "good_share_lr_beta1"] == pytest.approx(np.mean(values <= threshold))
