"""Good-region shares in two dimensions against areas worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import region


def test_axes_are_decades_of_lr_and_of_the_averaging_horizon():
    pos, text = region.axis_positions("lr", [1e-3, 1e-2])
    assert pos.tolist() == pytest.approx([-3.0, -2.0]) and text == "log10(lr)"
    pos, _ = region.axis_positions("beta1", [0.8, 0.9, 0.95])  # 1 - beta1 = 0.2, 0.1, 0.05
    assert pos.tolist() == pytest.approx([-math.log10(0.2), 1.0, -math.log10(0.05)])
    assert np.diff(pos) == pytest.approx([math.log10(2)] * 2)  # equally spaced
    pos, text = region.axis_positions("weight_decay", [0.0, 1e-4, 1e-2])
    assert pos.tolist() == [0.0, 1.0, 2.0] and "grid steps" in text
    pos, _ = region.axis_positions("weight_decay", [1e-4, 1e-2])
    assert pos.tolist() == pytest.approx([-4.0, -2.0])
    with pytest.raises(ValueError):
        region.axis_positions("beta2", [1.0])


def test_share_of_a_field_that_varies_along_lr_only():
    # f = x on the unit square; within f <= 0.25 is a strip of width 0.25
    values = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert region.bilinear_share([0, 1], [0, 1], values, 0.25, higher_is_better=False) == pytest.approx(0.25)
    # the same for an accuracy-like field, within f >= 0.75
    assert region.bilinear_share([0, 1], [0, 1], values, 0.75, higher_is_better=True) == pytest.approx(0.25)


def test_share_of_a_saddle_cell_is_the_closed_form_area():
    # corners f(0,0) = 0, others 1: f = 1 - (1 - x)(1 - y); f <= 1/2 <=> (1 - x)(1 - y) >= 1/2.
    # With u = 1 - y: area = int_{1/2}^{1} (1 - 1/(2u)) du = 1/2 - (ln 2)/2.
    values = np.array([[0.0, 1.0], [1.0, 1.0]])
    assert region.bilinear_share([0, 1], [0, 1], values, 0.5, higher_is_better=False) == pytest.approx(0.5 - math.log(2) / 2)


def test_share_weights_cells_by_their_area():
    # x positions 0, 1, 3 (cells of width 1 and 2); f = 0, 0, 2 in both rows; within f <= 1:
    # the first cell whole (area 1), the second half (area 1 of 2) -> 2 / 3 of the box.
    values = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    assert region.bilinear_share([0, 1, 3], [0, 1], values, 1.0, higher_is_better=False) == pytest.approx(2 / 3)


def test_share_agrees_with_a_fine_sampling_of_the_interpolant():
    rng = np.random.default_rng(3)
    x, y = np.array([0.0, 0.5, 1.5]), np.array([0.0, 1.0, 1.2, 2.0])
    values = rng.uniform(0, 1, size=(4, 3))
    got = region.bilinear_share(x, y, values, 0.45, higher_is_better=False)
    # independent estimate: evaluate the bilinear interpolant on a 1200 x 1200 midpoint grid
    gx = (np.arange(1200) + 0.5) / 1200 * 1.5
    gy = (np.arange(1200) + 0.5) / 1200 * 2.0
    rows = np.array([np.interp(gx, x, r) for r in values])  # interpolate along x in every row
    field = np.array([np.interp(gy, y, rows[:, k]) for k in range(gx.size)]).T
    assert got == pytest.approx((field <= 0.45).mean(), abs=3e-3)


def test_a_diverged_corner_is_outside_and_interpolated_towards_l0():
    # 1-D in effect: row values 0.5 and (diverged) L0 = 2.5; threshold 0.6: within for x <= 0.1 / 2.0
    values = np.array([[0.5, np.nan], [0.5, np.nan]])
    usable = np.array([[True, False], [True, False]])
    assert region.bilinear_share([0, 1], [0, 1], values, 0.6, higher_is_better=False, usable=usable,
                            fill=2.5) == pytest.approx(0.05)
    assert region.bilinear_share([0, 1], [0, 1], values, 0.6, higher_is_better=False, usable=usable) == 0.0


def test_a_box_with_one_value_on_an_axis_is_a_line():
    # one beta1 value: lr only, 0.5 -> 1.5 over one decade, threshold 1.0 -> half of it
    assert region.bilinear_share([0, 1], [0], np.array([[0.5, 1.5]]), 1.0, higher_is_better=False) == pytest.approx(0.5)


def test_good_region_share_of_a_grid_and_of_samples():
    # a 2 x 2 grid in lr x beta1: lr 1e-3, 1e-2; beta1 0.8, 0.95; value 0 at lr 1e-3 and 1 at lr 1e-2
    cells = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-3, 1e-2], "beta1": [0.8, 0.8, 0.95, 0.95],
                          "value": [0.0, 1.0, 0.0, 1.0], "n_seeds": 1, "n_diverged": 0})
    share, how = region.good_region_share(cells, "lr", "beta1", 0.25, 2.0, higher_is_better=False)
    assert how == "bilinear grid" and share == pytest.approx(0.25)
    # scattered samples (a random study): two points have 0.1 <= 0.15, but one of them diverged and
    # is outside, so 1 of 5 points is within
    samples = pd.DataFrame({"lr": [1e-3, 2e-3, 5e-3, 7e-3, 9e-3], "beta1": [0.81, 0.9, 0.93, 0.85, 0.97],
                            "value": [0.1, 0.2, 0.9, 0.8, 0.1], "n_seeds": 1, "n_diverged": [0, 0, 0, 0, 1]})
    share, how = region.good_region_share(samples, "lr", "beta1", 0.15, 2.0, higher_is_better=False)
    assert how == "sampled points" and share == pytest.approx(1 / 5)
    assert math.isnan(region.good_region_share(cells, "lr", "beta1", math.nan, 2.0, higher_is_better=False)[0])
