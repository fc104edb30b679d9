"""The summary table, its seed-bootstrap intervals and the findings paragraph, on frames worked by hand."""

from __future__ import annotations

import dataclasses

import math
import re

import pandas as pd
import pytest

from sensitivity.report import analyze, findings, summarize
from sensitivity.report.summary import UNCERTAIN

NAN = math.nan


def trials_frame(rows: list[dict]) -> pd.DataFrame:
    base = {"state": "COMPLETE", "optimizer": "a", "optimizer_display": "A", "lr": 1e-3,
            "beta1": 0.9, "beta2": NAN, "gamma": NAN, "weight_decay": NAN, "seed": 0,
            "diverged": False, "initial_val_loss": 2.0, "initial_val_acc": 0.1,
            "final_val_loss": 1.0, "final_val_acc": 0.5, "wall_time_s": 1.0}
    return pd.DataFrame([{**base, **r} for r in rows])


LRS = (1e-3, 1e-2, 1e-1)


def two_seed_study() -> pd.DataFrame:
    """A: seed 0 -> 0.6, 0.5, 0.6; seed 1 -> 0.8, 0.5, 0.8.  B: both seeds 0.5, 0.9, diverged.
    C: never learns (2.0 = L0 everywhere)."""
    rows = []
    for seed, vals in ((0, (0.6, 0.5, 0.6)), (1, (0.8, 0.5, 0.8))):
        rows += [{"lr": lr, "seed": seed, "final_val_loss": v} for lr, v in zip(LRS, vals)]
    for seed in (0, 1):
        rows += [{"optimizer": "b", "optimizer_display": "B", "lr": lr, "seed": seed, "final_val_loss": v,
                  "diverged": d} for lr, v, d in zip(LRS, (0.5, 0.9, NAN), (False, False, True))]
        rows += [{"optimizer": "c", "optimizer_display": "C", "lr": lr, "seed": seed, "final_val_loss": 2.0}
                 for lr in LRS]
    return trials_frame(rows)


@pytest.fixture(scope="module")
def analysis():
    return analyze(two_seed_study(), "val_loss", tau=0.1)


@pytest.fixture(scope="module")
def summary(analysis):
    return analysis.summary.set_index("optimizer", drop=False)


def test_summary_figures_on_the_seed_mean_curve(summary):
    a, b = summary.loc["a"], summary.loc["b"]
    # A's curve is the seed mean 0.7, 0.5, 0.7; L0 = 2.0, tau = 0.1 -> threshold 0.5 + 0.15 = 0.65,
    # crossed 0.15 / 0.2 = 0.75 decade on each side -> 1.5 decades
    assert a["tolerance_threshold"] == pytest.approx(0.65)
    assert a["tolerance_width_decades"] == pytest.approx(1.5)
    assert a["best_value"] == pytest.approx(0.5) and a["best_lr"] == 1e-2
    # Wortsman: mean of [0.2, 0, 0.2] = 0.1333
    assert a["lr_sensitivity"] == pytest.approx(0.4 / 3)
    # B: 0.5, 0.9, diverged (L0): 0.15 / 0.4 = 0.375 decade beyond 1e-3, which is the lowest swept lr
    assert b["tolerance_width_decades"] == pytest.approx(0.375) and bool(b["tolerance_censored"])
    assert b["divergence_rate"] == pytest.approx(1 / 3)
    # relative 10%: A 0.55 -> 0.05 / 0.2 = 0.25 decade on each side
    assert a["relative_width_decades"] == pytest.approx(0.5)


def test_an_optimizer_that_never_learned_has_no_best_lr(summary):
    c = summary.loc["c"]
    assert not c["learned"] and c["best_value"] == pytest.approx(2.0)
    assert math.isnan(c["best_lr"]) and math.isnan(c["best_beta1"])
    assert math.isnan(c["tolerance_width_decades"])


def test_seed_bootstrap_bounds_of_every_metric(summary, analysis):
    a = summary.loc["a"]
    # draws {0,0}: 0.6, 0.5, 0.6 -> all within 0.65 -> 2 decades; {1,1}: 0.8, 0.5, 0.8 -> 0.5 each side -> 1.0
    assert (a["tolerance_width_decades_low"], a["tolerance_width_decades_high"]) == pytest.approx((1.0, 2.0))
    # Wortsman per draw: {0,0} mean [0.1, 0, 0.1] = 0.0667; {1,1} mean [0.3, 0, 0.3] = 0.2
    assert (a["lr_sensitivity_low"], a["lr_sensitivity_high"]) == pytest.approx((0.2 / 3, 0.2))
    for col in UNCERTAIN:
        assert f"{col}_low" in summary.columns and f"{col}_high" in summary.columns
    assert analysis.n_seeds == 2 and analysis.bootstrap == "exact"


def test_paired_differences_say_whether_they_exceed_the_seed_uncertainty(analysis):
    diffs = analysis.differences
    ab = diffs[(diffs["metric"] == "tolerance_width_decades") & (diffs["a"] == "a") & (diffs["b"] == "b")].iloc[0]
    # A - B per draw: 2 - 0.375, 1.5 - 0.375, 1 - 0.375 -> interval (0.625, 1.625) excludes 0
    assert ab["difference"] == pytest.approx(1.125)
    assert (ab["low"], ab["high"]) == pytest.approx((0.625, 1.625)) and ab["exceeds"]


def test_findings_rank_the_widths_and_state_the_uncertainty(analysis):
    text = " ".join(findings.study_findings(analysis, task="toy"))
    # B's range reaches an end of the swept lrs: its width is a lower bound, and so the lead is as measured
    assert "Widest tolerated learning rate range: A 1.50, B >=0.38 decades" in text
    # lead 1.5 - 0.375 = 1.125 (printed 1.12 or 1.13 as rounding falls); interval 0.625 .. 1.625
    assert re.search(r"A leads B by 1\.1[23] decades as measured \(B's range reaches an end of the swept lrs, so "
                     r"the true lead may be smaller\); the lead exceeds the seed uncertainty \(95% interval of "
                     r"the paired difference over seed draws: 0\.6[23] to 1\.6[23]\)", text)
    assert "C never improved on its initial value" in text
    assert "The range of B reaches an end of the swept lrs" in text
    assert "Share of trials that diverged: B 33%; A and C never diverged." in text


@pytest.mark.parametrize("widths, censored, expected", [
    # a censored leader: its true width is at least the measured one, so the lead is a lower bound too
    ((2.0, 1.0), (True, False), "Widest tolerated learning rate range: P >=2.00, Q 1.00 decades; P leads Q by at "
                                "least 1.00 decades."),
    # a censored runner-up: its true width may be larger, so the lead is only as measured
    ((2.0, 1.0), (False, True), "Widest tolerated learning rate range: P 2.00, Q >=1.00 decades; P leads Q by 1.00 "
                                "decades as measured (Q's range reaches an end of the swept lrs, so the true lead "
                                "may be smaller)."),
    # both censored: either true width may be larger, so the true lead may be larger or smaller
    ((2.0, 1.0), (True, True), "Widest tolerated learning rate range: P >=2.00, Q >=1.00 decades; P leads Q by 1.00 "
                               "decades as measured (both ranges reach an end of the swept lrs, so the true lead "
                               "may be larger or smaller)."),
    # both censored at the same printed width: level, not "leads by 0.00"
    ((0.1, 0.1), (True, True), "Widest tolerated learning rate range: P >=0.10, Q >=0.10 decades; P and Q are level "
                               "as measured."),
    ((1.5, 1.5), (False, False), "Widest tolerated learning rate range: P 1.50, Q 1.50 decades; P and Q are level."),
    ((1.5, 0.5), (False, False), "Widest tolerated learning rate range: P 1.50, Q 0.50 decades; P leads Q by 1.00 "
                                 "decades."),
])
def test_a_width_that_is_only_a_lower_bound_qualifies_the_lead(widths, censored, expected):
    one = pd.DataFrame({"optimizer": ["p", "q"], "optimizer_display": ["P", "Q"], "learned": [True, True],
                        "tolerance_width_decades": list(widths), "tolerance_censored": list(censored),
                        "divergence_rate": [0.0, 0.0]})
    analysis = dataclasses.replace(analyze(trials_frame([{}]), "val_loss", uncertainty=False), summary=one)
    assert analysis.n_seeds == 1
    assert expected in findings.study_findings(analysis)


def test_one_seed_has_no_bounds_and_says_so():
    one = two_seed_study()
    one = one[one["seed"] == 0]
    analysis = analyze(one, "val_loss", tau=0.1)
    assert not any(f"{c}_low" in analysis.summary.columns for c in UNCERTAIN)
    text = " ".join(findings.study_findings(analysis))
    assert "With one seed these figures carry no uncertainty estimate" in text


def test_swept_pairs_get_a_good_region_share_column():
    rows = [{"lr": lr, "beta1": b1, "final_val_loss": v}
            for (lr, b1), v in zip([(1e-3, 0.8), (1e-2, 0.8), (1e-3, 0.95), (1e-2, 0.95)], [0.5, 1.5, 0.5, 1.5])]
    s = summarize(trials_frame(rows), "val_loss", tau=1 / 3)
    # threshold 0.5 + (2.0 - 0.5) / 3 = 1.0: within for the first half of each row -> share 0.5
    assert s.loc[0, "good_share_lr_beta1"] == pytest.approx(0.5)
    assert analyze(trials_frame(rows), "val_loss", tau=1 / 3).pairs == (("lr", "beta1"),)


def test_compare_findings_count_a_study_for_its_leader_only_when_the_lead_is_established():
    table = pd.DataFrame({
        "task": ["t1", "t1", "t2", "t2", "t3", "t3"],
        "optimizer_display": ["P", "Q"] * 3,
        "tolerance_width_decades": [2.0, 1.0,      # t1: P leads
                                    1.0, 0.5,      # t2: P measures wider, but Q's range reaches an end
                                    0.1, 0.1],     # t3: level
        "tolerance_censored": [False, False, False, True, True, True],
    }, index=[0, 1, 0, 1, 0, 1])  # as concatenated per-study tables may come
    text = findings.compare_findings(table)
    assert "P: widest tolerated lr range in 1 of 3 studies; its width ranges from 0.10 to 2.00 decades over 3 studies " \
           "(one of them a lower bound: the range reaches an end of the swept lrs)." in text
    assert "Q: widest tolerated lr range in 0 of 3 studies; its width ranges from 0.10 to 1.00 decades over 3 studies " \
           "(2 of them lower bounds: the range reaches an end of the swept lrs)." in text
    assert ("Widest range not established on t2 and t3: the top two widths are level, or the runner-up's range "
            "reaches an end of the swept lrs.") in text


def test_every_optimizer_level_with_the_top_is_named():
    one = pd.DataFrame({"optimizer": ["p", "q", "r", "s"], "optimizer_display": ["P", "Q", "R", "S"],
                        "learned": [True] * 4, "tolerance_width_decades": [1.5, 1.5, 1.5, 0.5],
                        "tolerance_censored": [False] * 4, "divergence_rate": [0.0] * 4})
    analysis = dataclasses.replace(analyze(trials_frame([{}]), "val_loss", uncertainty=False), summary=one)
    text = " ".join(findings.study_findings(analysis))
    assert "P 1.50, Q 1.50, R 1.50, S 0.50 decades; P, Q and R are level." in text


def test_task_settings_read_as_words_with_unset_keys_named():
    from sensitivity.report.prose import task_settings_text

    config = {"epochs": 10, "dataset": "digits", "train_size": None, "hidden": 128, "val_size": None,
              "schedule": {"name": "cosine", "warmup": 0.1}, "sizes": [1, 2], "augment": False}
    assert task_settings_text(config) == (
        'augment false, dataset digits, epochs 10, hidden 128, schedule {"name": "cosine", "warmup": 0.1}, '
        "sizes [1, 2] (not set: train_size, val_size)")
    assert task_settings_text({"train_size": None}) == "(not set: train_size)"
    assert task_settings_text({}) == task_settings_text(None) == ""
