"""Interpolated tolerance widths and thresholds against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import tolerance

NAN = math.nan


# ---- thresholds ---------------------------------------------------------------------------------

def test_improvement_threshold_keeps_all_but_tau_of_the_improvement():
    # loss: L* = 0.5, L0 = 2.5, tau = 0.05 -> 0.5 + 0.05 * 2.0 = 0.6
    assert tolerance.improvement_threshold(0.5, 2.5, 0.05, higher_is_better=False) == pytest.approx(0.6)
    # accuracy: A* = 0.9, A0 = 0.1, tau = 0.1 -> 0.9 - 0.1 * 0.8 = 0.82
    assert tolerance.improvement_threshold(0.9, 0.1, 0.1, higher_is_better=True) == pytest.approx(0.82)
    # a return (maximised, any scale): A* = 500, A0 = 20, tau = 0.05 -> 476
    assert tolerance.improvement_threshold(500.0, 20.0, 0.05, higher_is_better=True) == pytest.approx(476.0)
    assert math.isnan(tolerance.improvement_threshold(0.5, NAN, 0.05, higher_is_better=False))
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        tolerance.improvement_threshold(0.5, 2.5, -0.1, higher_is_better=False)


def test_relative_threshold_is_a_fraction_of_a_loss_and_points_of_an_accuracy():
    assert tolerance.relative_threshold(0.5, 0.1, higher_is_better=False) == pytest.approx(0.55)
    assert tolerance.relative_threshold(-2.0, 0.1, higher_is_better=False) == pytest.approx(-1.8)  # |L*|
    assert tolerance.relative_threshold(0.95, 0.01, higher_is_better=True) == pytest.approx(0.94)


def test_threshold_descriptions_state_the_rule():
    text = tolerance.describe_threshold("improvement", 0.05, higher_is_better=False)
    assert "95% of the improvement" in text and "L <= L* + 0.05 (L0 - L*)" in text
    assert "within 10% of the best" in tolerance.describe_threshold("relative", 0.1, higher_is_better=False)
    with pytest.raises(ValueError):
        tolerance.describe_threshold("absolute", 0.1, higher_is_better=False)


# ---- the interpolated interval -----------------------------------------------------------------

def test_a_single_good_point_with_close_neighbours_has_a_width():
    # 0.6 at 1e-3, 0.5 at 1e-2, 0.6 at 1e-1, threshold 0.55: the straight lines in log10(lr) cross
    # 0.55 half-way to each neighbour, half a decade on each side -> [10^-2.5, 10^-1.5], 1 decade.
    got = tolerance.interpolated_interval([1e-3, 1e-2, 1e-1], [0.6, 0.5, 0.6], 0.55, higher_is_better=False)
    assert got.width_decades == pytest.approx(1.0)
    assert got.lr_low == pytest.approx(10**-2.5) and got.lr_high == pytest.approx(10**-1.5)
    assert not got.censored


def test_unequal_neighbours_on_an_accuracy_curve():
    # acc 0.8, 0.9, 0.85 at 1e-3, 1e-2, 1e-1; within: acc >= 0.86.
    # left: 0.9 -> 0.8 crosses 0.86 after 0.04 / 0.1 = 0.4 decade; right: 0.9 -> 0.85 after 0.04 / 0.05 = 0.8.
    got = tolerance.interpolated_interval([1e-3, 1e-2, 1e-1], [0.8, 0.9, 0.85], 0.86, higher_is_better=True)
    assert got.width_decades == pytest.approx(1.2)
    assert math.log10(got.lr_low) == pytest.approx(-2.4) and math.log10(got.lr_high) == pytest.approx(-1.2)


def test_runs_of_grid_points_within_and_the_widest_one_wins():
    # half-decade grid; values within 0.6 at x = -4, and at -3, -2.5 (joined), outside between:
    # piece A around -4: 0.55 -> 0.9 crosses 0.6 at 0.05 / 0.35 of half a decade = 0.0714
    # piece B: -3 (0.58) .. -2.5 (0.5); on the left 0.58 -> 0.9 crosses 0.6 after 0.02 / 0.32 of half a
    #   decade = 0.03125 before -3; on the right 0.5 -> 1.5 crosses after 0.1 / 1.0 of half a decade = 0.05.
    lrs = 10 ** np.array([-4.0, -3.5, -3.0, -2.5, -2.0])
    got = tolerance.interpolated_interval(lrs, [0.55, 0.9, 0.58, 0.5, 1.5], 0.6, higher_is_better=False)
    assert got.width_decades == pytest.approx(0.03125 + 0.5 + 0.05)
    assert math.log10(got.lr_low) == pytest.approx(-3.03125)


def test_a_diverged_neighbour_is_never_within_and_is_interpolated_towards_l0():
    # 0.5 at 1e-2, every run at 1e-1 diverged (clipped to L0 = 2.5); threshold 0.6:
    # crossing 0.1 / 2.0 = 0.05 of the decade towards the diverged point; 1e-2 is the lowest lr -> censored.
    got = tolerance.interpolated_interval([1e-2, 1e-1], [0.5, 2.5], 0.6, higher_is_better=False,
                                  usable=[True, False], fill=2.5)
    assert got.width_decades == pytest.approx(0.05)
    assert got.censored
    # without a fill value the crossing stays at the good point
    assert tolerance.interpolated_interval([1e-2, 1e-1], [0.5, NAN], 0.6, higher_is_better=False).width_decades == 0.0
    # a diverged point stays outside even when its clipped value would pass the threshold (tau = 1)
    wide = tolerance.interpolated_interval([1e-2, 1e-1], [0.5, 2.5], 2.5, higher_is_better=False,
                                   usable=[True, False], fill=2.5)
    assert wide.width_decades == 0.0 and wide.lr_high == pytest.approx(1e-2)


def test_equal_width_pieces_prefer_the_one_holding_the_best_point():
    # lrs 10^-3 .. 10^-1 in half decades, threshold 0.15:
    # piece at 10^-3: 0.14 -> 0.9 crosses after 0.01 / 0.76 of half a decade;
    # piece at 10^-1 (the best, 0.13): 1.65 -> 0.13 crosses 0.02 / 1.52 = 0.01 / 0.76 before it: equal widths.
    lrs = 10 ** np.array([-3.0, -2.5, -2.0, -1.5, -1.0])
    got = tolerance.interpolated_interval(lrs, [0.14, 0.9, 0.9, 1.65, 0.13], 0.15, higher_is_better=False)
    assert got.width_decades == pytest.approx(0.5 * 0.01 / 0.76)
    assert got.lr_high == pytest.approx(0.1)


def test_unsorted_input_and_nothing_within():
    got = tolerance.interpolated_interval([1e-1, 1e-3, 1e-2], [0.6, 0.6, 0.5], 0.55, higher_is_better=False)
    assert got.width_decades == pytest.approx(1.0)
    none = tolerance.interpolated_interval([1e-3], [NAN], 0.55, higher_is_better=False)
    assert math.isnan(none.width_decades)
    with pytest.raises(ValueError, match="> 0"):
        tolerance.interpolated_interval([0.0, 1e-3], [0.5, 0.5], 0.55, higher_is_better=False)


# ---- one row per optimizer ---------------------------------------------------------------------

def test_tolerance_row_on_a_loss_curve():
    # curve 2.0, 0.7, 0.5, 0.9 at 1e-4 .. 1e-1; L0 = 2.5, tau = 0.1 -> threshold 0.5 + 0.2 = 0.7:
    # left: 0.7 at 1e-3 is on the threshold -> whole decade [1e-3, 1e-2] plus 0 beyond (2.0 > 0.7 at 1e-4
    # crossing at (0.7 - 0.7)/(2.0 - 0.7) = 0); right: 0.5 -> 0.9 crosses 0.7 half-way -> 0.5 decade.
    # relative 10%: 0.55 -> left 0.5 -> 0.7 crosses at 0.05 / 0.2 = 0.25, right 0.05 / 0.4 = 0.125.
    row = tolerance.tolerance_row([1e-4, 1e-3, 1e-2, 1e-1], [2.0, 0.7, 0.5, 0.9], 2.5, higher_is_better=False,
                          tau=0.1, relative_tolerance=0.1)
    assert row["learned"] and row["best_value"] == 0.5 and row["best_lr"] == 1e-2
    assert row["tolerance_threshold"] == pytest.approx(0.7)
    assert row["tolerance_width_decades"] == pytest.approx(1.5)
    assert row["relative_threshold"] == pytest.approx(0.55)
    assert row["relative_width_decades"] == pytest.approx(0.375)
    assert row["tolerance_censored"] is False


def test_an_optimizer_that_never_learned_has_no_best_lr_and_no_width():
    row = tolerance.tolerance_row([1e-3, 1e-2], [2.5, 2.6], 2.5, higher_is_better=False)
    assert row["learned"] is False
    for key in ("best_value", "best_lr", "tolerance_width_decades", "relative_width_decades"):
        assert math.isnan(row[key]), key
    # every run diverged: the clipped values equal L0 but are not usable
    row = tolerance.tolerance_row([1e-3, 1e-2], [2.5, 2.5], 2.5, higher_is_better=False, usable=[False, False])
    assert row["learned"] is False and math.isnan(row["best_lr"])


def test_tolerance_table_reads_divergence_from_the_curve_columns():
    # optimizer a: 0.5 at 1e-2, all runs diverged at 1e-1 (value L0 = 2.5): threshold (tau 0.05) 0.6;
    # crossing 0.1 / 2.0 = 0.05 decade towards 1e-1; left 1e-3 at 0.6 is exactly on the threshold -> 1 decade.
    curve = pd.DataFrame({
        "optimizer": ["a", "a", "a", "b", "b"],
        "lr": [1e-3, 1e-2, 1e-1, 1e-3, 1e-2],
        "value": [0.6, 0.5, 2.5, 2.5, 2.5],
        "initial": [2.5, 2.5, 2.5, 2.5, 2.5],
        "n_seeds": [1, 1, 1, 1, 1],
        "n_diverged": [0, 0, 1, 0, 0],
    })
    table = tolerance.tolerance_table(curve, higher_is_better=False, tau=0.05)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "tolerance_width_decades"] == pytest.approx(1.05)
    assert bool(table.loc["a", "tolerance_censored"])  # reaches the lowest swept lr within the threshold
    # within 10 % of the best (0.55): 1e-2 alone, half-way towards 1e-3 (0.6) and towards 1e-1 (2.5)
    assert not bool(table.loc["a", "relative_censored"])
    assert not bool(table.loc["b", "relative_censored"])
    assert not table.loc["b", "learned"] and math.isnan(table.loc["b", "tolerance_width_decades"])


def test_a_relative_interval_reaching_an_end_of_the_grid_is_censored():
    # every point within 10 % of the best (0.50): the relative width spans the grid and may be wider;
    # the improvement threshold (0.5 + 0.05 * 2.0 = 0.6) holds too, so both are censored
    row = tolerance.tolerance_row([1e-4, 1e-3, 1e-2], [0.52, 0.50, 0.54], 2.5, higher_is_better=False)
    assert row["relative_width_decades"] == pytest.approx(2.0)
    assert row["relative_censored"] is True and row["tolerance_censored"] is True
    # an interior best with steep sides: neither reaches an end
    row = tolerance.tolerance_row([1e-4, 1e-3, 1e-2], [2.4, 0.50, 2.4], 2.5, higher_is_better=False)
    assert row["relative_censored"] is False and row["tolerance_censored"] is False
