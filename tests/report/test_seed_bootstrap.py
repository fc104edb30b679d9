"""The seed bootstrap: draws, percentile intervals and paired differences, by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import uncertainty


def test_exact_draws_of_two_and_three_seeds():
    two = {tuple(sorted(d.counts.items())): d.probability for d in uncertainty.seed_draws([0, 1])}
    assert two == pytest.approx({((0, 2),): 0.25, ((0, 1), (1, 1)): 0.5, ((1, 2),): 0.25})
    three = uncertainty.seed_draws([5, 6, 7])
    assert len(three) == 10  # C(5, 3) multisets of 3 seeds
    probs = sorted(d.probability for d in three)
    # (3,0,0) x3 at 1/27, (2,1,0) x6 at 3/27, (1,1,1) at 6/27
    assert probs == pytest.approx([1 / 27] * 3 + [3 / 27] * 6 + [6 / 27])
    assert sum(probs) == pytest.approx(1.0)


def test_monte_carlo_draws_beyond_the_exact_limit_are_reproducible():
    a = uncertainty.seed_draws(range(8), exact_limit=10, draws=200, random_state=4)
    b = uncertainty.seed_draws(range(8), exact_limit=10, draws=200, random_state=4)
    assert [(d.counts, d.probability) for d in a] == [(d.counts, d.probability) for d in b]
    assert sum(d.probability for d in a) == pytest.approx(1.0)
    assert all(sum(d.counts.values()) == 8 for d in a)


def test_weighted_percentile_interval():
    v, p = np.array([1.0, 2.0, 3.0]), np.array([0.25, 0.5, 0.25])
    assert uncertainty.weighted_interval(v, p, 0.95) == (1.0, 3.0)
    # level 0.4: 30% in each tail; P(X <= 1) = 0.25 < 0.3 <= P(X <= 2); P(X >= 3) = 0.25 < 0.3 -> (2, 2)
    assert uncertainty.weighted_interval(v, p, 0.4) == (2.0, 2.0)
    # NaN atoms dropped, the rest renormalised to {1: 1/3, 3: 2/3}: level 0.8 (10% tails) -> (1, 3);
    # level 0.2 (40% tails): P(X <= 1) = 1/3 < 0.4 -> low 3
    with_nan = np.array([1.0, math.nan, 3.0]), np.array([0.25, 0.25, 0.5])
    assert uncertainty.weighted_interval(*with_nan, 0.8) == (1.0, 3.0)
    assert uncertainty.weighted_interval(*with_nan, 0.2) == (3.0, 3.0)
    assert all(math.isnan(x) for x in uncertainty.weighted_interval(np.array([math.nan]), np.array([1.0])))


def _frame(rows):
    return pd.DataFrame(rows, columns=["optimizer", "seed", "value"])


def mean_by_optimizer(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.groupby("optimizer")[["value"]].mean()


def test_bootstrap_interval_and_paired_difference_on_two_seeds():
    # a: seed 0 -> 1, seed 1 -> 3; b: seed 0 -> 0, seed 1 -> 1.
    # draws {0,0} (1/4): a 1, b 0; {0,1} (1/2): a 2, b 0.5; {1,1} (1/4): a 3, b 1
    trials = _frame([("a", 0, 1.0), ("a", 1, 3.0), ("b", 0, 0.0), ("b", 1, 1.0)])
    boot = uncertainty.seed_bootstrap(trials, mean_by_optimizer)
    assert boot.exact and boot.n_seeds == 2
    low, high = boot.interval()
    assert (low.loc["a", "value"], high.loc["a", "value"]) == (1.0, 3.0)
    assert (low.loc["b", "value"], high.loc["b", "value"]) == (0.0, 1.0)
    # paired a - b: 1, 1.5, 2 -> interval (1, 2), excludes 0
    assert boot.difference("a", "b", "value") == (1.5, 1.0, 2.0)
    diffs = uncertainty.pairwise_differences(boot, ["value"])
    assert diffs.to_dict("records") == [{"metric": "value", "a": "a", "b": "b", "difference": 1.5,
                                         "low": 1.0, "high": 2.0, "exceeds": True}]


def test_a_difference_that_changes_sign_between_seeds_does_not_exceed():
    # a - b per seed: +1 (seed 0), -1 (seed 1): draws give +1, 0, -1 -> interval (-1, 1) holds 0
    trials = _frame([("a", 0, 2.0), ("a", 1, 0.0), ("b", 0, 1.0), ("b", 1, 1.0)])
    diffs = uncertainty.pairwise_differences(uncertainty.seed_bootstrap(trials, mean_by_optimizer), ["value"])
    row = diffs.iloc[0]
    assert (row["low"], row["high"], row["exceeds"]) == (-1.0, 1.0, False)


def test_one_seed_gives_no_estimate_and_draws_repeat_trials():
    assert uncertainty.seed_bootstrap(_frame([("a", 0, 1.0), ("b", 0, 2.0)]), mean_by_optimizer) is None
    trials = _frame([("a", 0, 1.0), ("a", 1, 3.0), ("a", math.nan, 9.0)])
    again = uncertainty.resample_seeds(trials, {1: 2})
    assert sorted(again["value"].tolist()) == [3.0, 3.0, 9.0]
    with pytest.raises(ValueError, match="level"):
        uncertainty.seed_bootstrap(trials, mean_by_optimizer, level=1.5)
