"""Expected best after n configurations (Dodge et al. 2019) against hand values and enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report.expected_best import expected_best, expected_best_moments, expected_best_table


def test_expected_best_of_two_draws_from_three_accuracies():
    # the 9 ordered pairs from {1, 2, 3} have maxima 1,2,3, 2,2,3, 3,3,3: sum 22 -> 22 / 9
    got = expected_best([3.0, 1.0, 2.0], [1, 2], higher_is_better=True)
    assert got.tolist() == pytest.approx([2.0, 22 / 9])


def test_for_a_loss_the_best_is_the_smallest():
    # pairs from {0.3, 0.1, 0.2}: minima 0.3,0.1,0.2, 0.1,0.1,0.1, 0.2,0.1,0.2: sum 1.4 -> 1.4 / 9
    assert expected_best([0.3, 0.1, 0.2], 2, higher_is_better=False)[0] == pytest.approx(1.4 / 9)


def test_expected_best_matches_enumerating_every_draw():
    rng = np.random.default_rng(1)
    values = np.round(rng.uniform(0, 1, 5), 2)
    values[3] = values[1]  # a tie
    for n in (1, 2, 3):
        draws = list(itertools.product(values, repeat=n))
        brute_min = np.mean([min(d) for d in draws])
        brute_max = np.mean([max(d) for d in draws])
        assert expected_best(values, n, higher_is_better=False)[0] == pytest.approx(brute_min)
        assert expected_best(values, n, higher_is_better=True)[0] == pytest.approx(brute_max)


def test_standard_deviation_of_the_best():
    # {0, 1}: n = 1 -> mean 1/2, sd 1/2; n = 2 -> P(max = 1) = 3/4, var = 3/4 - 9/16 = 3/16
    mean, std = expected_best_moments([0.0, 1.0], [1, 2], higher_is_better=True)
    assert mean.tolist() == pytest.approx([0.5, 0.75])
    assert std.tolist() == pytest.approx([0.5, math.sqrt(3 / 16)])


def test_non_finite_values_are_dropped_and_n_must_be_positive():
    assert expected_best([math.nan, 2.0], 5, higher_is_better=False)[0] == pytest.approx(2.0)
    assert math.isnan(expected_best([math.nan], 1, higher_is_better=False)[0])
    with pytest.raises(ValueError, match=">= 1"):
        expected_best([1.0], 0, higher_is_better=False)


def test_table_has_one_curve_per_optimizer_up_to_its_draws():
    values = pd.Series([0.3, 0.1, 0.2, 1.0, 2.0])
    by = pd.Series(["a", "a", "a", "b", "b"])
    table = expected_best_table(values, by, higher_is_better=False)
    a = table[table["optimizer"] == "a"]
    assert a["n"].tolist() == [1, 2, 3] and (a["draws"] == 3).all()
    assert a["expected_best"].iloc[1] == pytest.approx(1.4 / 9)
    b = table[table["optimizer"] == "b"]
    # {1, 2}: n = 1 -> 1.5, n = 2 -> P(min = 1) = 3/4 -> 1.25
    assert b["expected_best"].tolist() == pytest.approx([1.5, 1.25])
