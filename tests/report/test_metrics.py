"""Sensitivity metrics against values computed by hand (pure pandas frames, no Optuna)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analyze, metrics, summarize

NAN = math.nan


def trials_frame(rows: list[dict]) -> pd.DataFrame:
    """A tidy trials frame with the columns the metrics read; unspecified fields get defaults."""
    base = {"state": "COMPLETE", "optimizer": "adam", "optimizer_display": "Adam", "lr": 1e-3,
            "beta1": 0.9, "beta2": 0.999, "gamma": NAN, "weight_decay": NAN, "seed": 0,
            "diverged": False, "initial_val_loss": 2.0, "initial_val_acc": 0.1,
            "final_val_loss": 1.0, "final_val_acc": 0.5, "wall_time_s": 1.0}
    return pd.DataFrame([{**base, **r} for r in rows])


# ---- Wortsman LR sensitivity on a 5-point grid -------------------------------

GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def test_wortsman_sensitivity_on_a_five_point_grid():
    # L = [2.0, 1.0, 0.5, 0.6, 3.0], L0 = 2.3: min(L, L0) = [2.0, 1.0, 0.5, 0.6, 2.3], L* = 0.5,
    # differences [1.5, 0.5, 0, 0.1, 1.8], mean 3.9 / 5 = 0.78.
    assert metrics.wortsman_sensitivity([2.0, 1.0, 0.5, 0.6, 3.0], 2.3) == pytest.approx(0.78)


def test_wortsman_sensitivity_counts_nan_as_no_progress():
    # NaN -> L0 = 2.3: [2.3, 1.0, 0.5, 0.6, 2.3] - 0.5 = [1.8, 0.5, 0, 0.1, 1.8], mean 4.2 / 5.
    assert metrics.wortsman_sensitivity([NAN, 1.0, 0.5, 0.6, 3.0], 2.3) == pytest.approx(0.84)
    assert math.isnan(metrics.wortsman_sensitivity([NAN, NAN], 2.3))


def test_wortsman_sensitivity_on_accuracy_uses_the_error():
    # acc [0.5, 0.9, 0.95, 0.945, 0.05], acc0 0.1 -> error [0.5, 0.1, 0.05, 0.055, 0.95], e0 0.9:
    # min(e, e0) = [0.5, 0.1, 0.05, 0.055, 0.9], e* = 0.05 -> [0.45, 0.05, 0, 0.005, 0.85], mean 0.271.
    got = metrics.wortsman_sensitivity([0.5, 0.9, 0.95, 0.945, 0.05], 0.1, higher_is_better=True)
    assert got == pytest.approx(0.271)


def test_default_tolerances():
    assert metrics.default_tolerance("val_loss") == 0.10
    assert metrics.default_tolerance("val_acc") == 0.01
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.default_tolerance("loss")


# ---- aggregation over betas and seeds -----------------------------------------------------------

def two_beta_two_seed_frame() -> pd.DataFrame:
    rows = []
    # lr 1e-3: beta1 0.8 -> seeds 1.0, 1.2 (mean 1.1); beta1 0.9 -> 0.8, 1.0 (mean 0.9) -> best 0.9 @ 0.9
    # lr 1e-2: beta1 0.8 -> 0.5, 0.7 (mean 0.6);   beta1 0.9 -> diverged both (L0 = 2.0) -> best 0.6 @ 0.8
    for lr, b1, seed, final, div in [
        (1e-3, 0.8, 0, 1.0, False), (1e-3, 0.8, 1, 1.2, False),
        (1e-3, 0.9, 0, 0.8, False), (1e-3, 0.9, 1, 1.0, False),
        (1e-2, 0.8, 0, 0.5, False), (1e-2, 0.8, 1, 0.7, False),
        (1e-2, 0.9, 0, NAN, True), (1e-2, 0.9, 1, NAN, True),
    ]:
        rows.append({"lr": lr, "beta1": b1, "seed": seed, "final_val_loss": final, "diverged": div})
    rows.append({"lr": 1e-2, "beta1": 0.9, "state": "FAIL", "final_val_loss": NAN})  # ignored
    return trials_frame(rows)


def test_lr_curve_takes_the_best_betas_of_the_seed_means():
    curve = metrics.lr_curve(two_beta_two_seed_frame(), "val_loss")
    assert curve["lr"].tolist() == [1e-3, 1e-2]
    assert curve["value"].tolist() == pytest.approx([0.9, 0.6])
    assert curve["beta1"].tolist() == [0.9, 0.8]
    assert curve["value_min"].tolist() == pytest.approx([0.8, 0.5])
    assert curve["value_max"].tolist() == pytest.approx([1.0, 0.7])
    assert curve["n_seeds"].tolist() == [2, 2]
    assert curve["cell_diverged"].tolist() == pytest.approx([0.0, 0.5])  # 2 of the 4 runs at 1e-2


def test_lr_curve_at_default_betas():
    curve = metrics.lr_curve(two_beta_two_seed_frame(), "val_loss", "default", defaults={"adam": {"beta1": 0.9}})
    # beta1 = 0.9 only: 0.9 at 1e-3; at 1e-2 both seeds diverged -> clipped to L0 = 2.0
    assert curve["value"].tolist() == pytest.approx([0.9, 2.0])
    assert curve["n_diverged"].tolist() == [0, 2]
    none = metrics.lr_curve(two_beta_two_seed_frame(), "val_loss", "default", defaults={"adam": {"beta1": 0.95}})
    assert none.empty


def test_grid_table_is_one_cell_per_lr_and_beta1():
    grid = metrics.grid_table(two_beta_two_seed_frame(), "val_loss")
    assert len(grid) == 4
    cell = grid[(grid["lr"] == 1e-2) & (grid["beta1"] == 0.9)].iloc[0]
    assert cell["value"] == pytest.approx(2.0) and cell["cell_diverged"] == 1.0


def test_metric_values_clip_diverged_and_non_finite_runs_to_the_initial_value():
    t = trials_frame([
        {"final_val_loss": 0.7},
        {"final_val_loss": 0.3, "diverged": True},  # diverged later: still counts as L0
        {"final_val_loss": math.inf},
        {"final_val_loss": NAN, "diverged": pd.NA},
    ])
    assert metrics.metric_values(t, "val_loss").tolist() == [0.7, 2.0, 2.0, 2.0]


def test_metric_values_clip_runs_worse_than_their_start_at_the_initial_value():
    # Wortsman's min(L, L0): a finished run that ended at 9.18 > L0 = 2.0 counts as 2.0, as a
    # diverged run does; accuracies max(acc, acc0): 0.05 below acc0 = 0.1 counts as 0.1
    t = trials_frame([
        {"final_val_loss": 9.18, "final_val_acc": 0.05},
        {"final_val_loss": 1.5, "final_val_acc": 0.6},
        {"final_val_loss": 1.5, "final_val_acc": 0.6, "diverged": True},
        {"final_val_loss": 2.5, "initial_val_loss": NAN},  # no L0 recorded: nothing to clip at
    ])
    assert metrics.metric_values(t, "val_loss").tolist()[:3] == [2.0, 1.5, 2.0]
    assert metrics.metric_values(t, "val_loss").tolist()[3] == 2.5
    assert metrics.metric_values(t, "val_acc").tolist()[:3] == [0.1, 0.6, 0.1]


def test_a_diverged_point_never_outranks_a_finished_one_at_equal_value():
    # at lr 1e-3 beta1 0.8 diverged (-> L0 2.0) and beta1 0.9 ended at 9.0 (-> min(9, 2) = 2.0):
    # equal values, so the lr curve shows the finished point, in either row order
    rows = [{"beta1": 0.8, "diverged": True, "final_val_loss": NAN},
            {"beta1": 0.9, "final_val_loss": 9.0}]
    for order in (rows, rows[::-1]):
        curve = metrics.lr_curve(trials_frame(order), "val_loss")
        assert curve["beta1"].tolist() == [0.9] and curve["n_diverged"].tolist() == [0]
        assert curve["value"].tolist() == [2.0] and curve["cell_diverged"].tolist() == [0.5]
    # and the best point of a table: 1e-2 diverged, 1e-3 finished worse than L0 -> both 2.0; 1e-3 wins
    for order in ([{"lr": 1e-2, "diverged": True}, {"lr": 1e-3, "final_val_loss": 4.0}],
                  [{"lr": 1e-3, "final_val_loss": 4.0}, {"lr": 1e-2, "diverged": True}]):
        best = metrics.best_row(metrics.config_table(trials_frame(order), "val_loss"), "val_loss")
        assert best["lr"] == 1e-3 and best["value"] == 2.0 and best["n_diverged"] == 0


def test_evaluation_far_above_training_is_flagged_apart_from_divergence():
    # factor 5, L0 2.0: flagged when the run did not diverge and its final validation loss is
    # above 10 or not finite; the divergence rate counts only the diverged row
    t = trials_frame([
        {"final_val_loss": 11.0},                    # stable training, evaluation blew up: flagged
        {"final_val_loss": 9.0},                     # poor, but under 5 x L0
        {"final_val_loss": NAN},                     # non-finite evaluation: flagged
        {"final_val_loss": 50.0, "diverged": True},  # training diverged: a divergence, not flagged
    ])
    assert metrics.evaluation_far_above_training(t, 5.0).tolist() == [True, False, True, False]
    s = summarize(t, "val_loss", divergence_factor=5.0).iloc[0]
    assert s["divergence_rate"] == pytest.approx(1 / 4)
    assert s["eval_far_above_training_rate"] == pytest.approx(2 / 4)
    assert math.isnan(summarize(t, "val_loss").iloc[0]["eval_far_above_training_rate"])


# ---- summary --------------------------------------------------------------------------------

def test_summarize_keeps_diverged_trials_in_every_figure():
    s = summarize(two_beta_two_seed_frame(), "val_loss").set_index("optimizer").loc["adam"]
    assert s["trials"] == 8  # the FAIL row is not counted
    assert s["best_value"] == pytest.approx(0.6) and s["best_lr"] == 1e-2 and s["best_beta1"] == 0.8
    # curve [0.9, 0.6], L0 = 2.0: mean([0.3, 0]) = 0.15
    assert s["lr_sensitivity"] == pytest.approx(0.15)
    # tau 0.05: threshold 0.6 + 0.05 * 1.4 = 0.67, crossed 0.07 / 0.3 of the decade towards 1e-3;
    # the interval reaches the highest swept lr (1e-2) -> censored
    assert s["tolerance_width_decades"] == pytest.approx(0.07 / 0.3)
    assert bool(s["tolerance_censored"])
    assert s["divergence_rate"] == pytest.approx(2 / 8)
    assert s["median_wall_time_s"] == 1.0 and s["lr_points"] == 2


def test_summarize_orders_optimizers_as_the_catalog_and_records_its_settings():
    t = pd.concat([trials_frame([{"optimizer": "lion", "optimizer_display": "Lion"}]),
                   trials_frame([{"optimizer": "adamrag", "optimizer_display": "AdamRAG", "gamma": 0.5}])])
    s = summarize(t, "val_acc", relative_tolerance=0.02)
    assert s["optimizer"].tolist() == ["adamrag", "lion"]
    assert s.loc[0, "best_gamma"] == 0.5 and math.isnan(s.loc[1, "best_gamma"])
    settings = analyze(t, "val_acc", relative_tolerance=0.02).settings
    assert settings.metric == "val_acc" and settings.relative_tolerance == 0.02
    assert s["best_value"].tolist() == [0.5, 0.5]


def test_divergence_rate_is_the_share_of_completed_trials():
    t = trials_frame([{"diverged": True}, {"diverged": False}, {"diverged": False}, {"diverged": True},
                      {"state": "FAIL", "diverged": True}, {"optimizer": "nag", "diverged": False}])
    rate = metrics.divergence_rate(t)
    assert rate["adam"] == pytest.approx(0.5) and rate["nag"] == 0.0


# ---- relative performance and performance profiles ------------------------------------------------

def test_relative_performance_is_best_over_metric_for_losses_with_nan_as_zero():
    curve = pd.DataFrame({"optimizer": ["a", "a", "a", "b", "b"], "lr": [1, 2, 3, 1, 2],
                          "value": [0.5, 1.0, NAN, 0.25, 0.5]})
    own = metrics.relative_performance(curve, "val_loss")["relative_performance"].tolist()
    assert own == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.5])
    overall = metrics.relative_performance(curve, "val_loss", reference="all")["relative_performance"].tolist()
    assert overall == pytest.approx([0.5, 0.25, 0.0, 1.0, 0.5])


def test_relative_performance_is_metric_over_best_for_accuracies():
    curve = pd.DataFrame({"optimizer": ["a", "a"], "lr": [1, 2], "value": [0.8, 0.4]})
    assert metrics.relative_performance(curve, "val_acc")["relative_performance"].tolist() == pytest.approx([1.0, 0.5])


def test_performance_profile_lower_is_better():
    # task1: a=1, b=2, c=4 -> ratios 1, 2, 4; task2: a=3, b=3, c=NaN -> ratios 1, 1, inf
    table = pd.DataFrame({"t1": [1.0, 2.0, 4.0], "t2": [3.0, 3.0, NAN]}, index=["a", "b", "c"])
    rho = metrics.performance_profile(table, higher_is_better=False, taus=[1.0, 2.0, 4.0, 10.0])
    assert rho["a"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert rho["b"].tolist() == [0.5, 1.0, 1.0, 1.0]
    assert rho["c"].tolist() == [0.0, 0.0, 0.5, 0.5]


def test_performance_profile_higher_is_better_and_zero_widths():
    # widths: task1 a=2, b=1 -> ratios 1, 2; task2 a=0, b=0 -> both best (1); task3 a=1, b=0 -> 1, inf
    table = pd.DataFrame({"t1": [2.0, 1.0], "t2": [0.0, 0.0], "t3": [1.0, 0.0]}, index=["a", "b"])
    rho = metrics.performance_profile(table, higher_is_better=True, taus=[1.0, 2.0])
    assert rho["a"].tolist() == pytest.approx([1.0, 1.0])
    assert rho["b"].tolist() == pytest.approx([1 / 3, 2 / 3])
    default = metrics.performance_profile(table, higher_is_better=True)
    assert default.index[0] == 1.0 and np.all(np.diff(default["b"].to_numpy()) >= 0)


# ---- the best points the summary and the loss curves read ---------------------------------------

def test_best_point_skips_points_whose_runs_all_diverged_unless_nothing_else_is_finite():
    rows = [
        # adam: lr 1e-3 diverged from a lower start and counts at its L0 = 1.0, below every other point;
        # it is still not the best: the best point whose runs did not all diverge is lr 1e-2 at 1.2
        {"lr": 1e-3, "diverged": True, "final_val_loss": NAN, "initial_val_loss": 1.0},
        {"lr": 1e-2, "final_val_loss": 1.2},
        {"lr": 1e-1, "final_val_loss": 2.5},
        # nag: every run diverged; its best is its best finite point (all at L0 = 2.0): the first lr
        {"optimizer": "nag", "lr": 1e-2, "diverged": True, "final_val_loss": NAN},
        {"optimizer": "nag", "lr": 1e-1, "diverged": True, "final_val_loss": NAN},
    ]
    best = metrics.best_points(metrics.lr_curve(trials_frame(rows), "val_loss"), "val_loss")
    assert best.loc["adam", "lr"] == 1e-2 and best.loc["adam", "value"] == 1.2
    assert best.loc["nag", "lr"] == 1e-2 and best.loc["nag", "value"] == 2.0


def test_loss_curve_lines_fix_beta1_at_the_best_point_and_take_the_best_at_each_lr():
    rows = [
        # beta1 0.9 holds the best point (lr 1e-2, 0.3); at lr 1e-3 beta1 0.8 would be better (0.4 < 0.6),
        # but the lines keep beta1 at 0.9; beta2 varies: the best at each lr over it
        {"lr": 1e-3, "beta1": 0.8, "final_val_loss": 0.4},
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "final_val_loss": 0.6},
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "final_val_loss": 0.7},
        {"lr": 1e-2, "beta1": 0.9, "final_val_loss": 0.3},
        {"lr": 1e-2, "beta1": 0.8, "final_val_loss": 0.5},
    ]
    lines = metrics.lines_at_best_beta1(metrics.config_table(trials_frame(rows), "val_loss"), "val_loss")
    lines = lines.sort_values("lr")
    assert list(lines["lr"]) == [1e-3, 1e-2]
    assert list(lines["beta1"]) == [0.9, 0.9] and list(lines["best_beta1"]) == [0.9, 0.9]
    assert list(lines["beta2"]) == [0.99, 0.999] and list(lines["value"]) == [0.6, 0.3]
