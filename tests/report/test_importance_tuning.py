"""Tuning cost and comparisons beside the importance: Tang et al.'s unbiased expected best, rliable's
probability of improvement, and the ablation path, each against an independent computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from sensitivity.report import ablation as A
from sensitivity.report import expected_best as E
from sensitivity.report import improvement as P
from tests.helpers.trial_frames import grid_study


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_unbiased_expected_best_equals_the_mean_over_all_subsets(higher_is_better):
    values = np.array([0.3, 1.7, 0.9, 0.9, 2.4, -0.5, 1.1])
    pick = max if higher_is_better else min
    for n in range(1, len(values) + 1):
        brute = np.mean([pick(s) for s in itertools.combinations(values, n)])
        got = E.expected_best_unbiased(values, n, higher_is_better=higher_is_better)[0]
        assert got == pytest.approx(brute, abs=1e-12)
    # n beyond N has no subset
    assert math.isnan(E.expected_best_unbiased(values, 8, higher_is_better=True)[0])


def test_dodge_is_biased_towards_the_best_where_tang_is_not():
    values = np.arange(10.0)
    dodge = E.expected_best(values, 10, higher_is_better=True)[0]
    tang = E.expected_best_unbiased(values, 10, higher_is_better=True)[0]
    assert tang == 9.0  # the best of all ten, without replacement
    assert dodge < 9.0  # with replacement some draws repeat


def test_expected_best_intervals_hold_both_estimators():
    rng = np.random.default_rng(0)
    v = pd.Series(rng.normal(size=30))
    by = pd.Series(["adam"] * 15 + ["lion"] * 15)
    table = E.expected_best_intervals(v, by, higher_is_better=False, ns=[1, 5, 15])
    assert set(table["estimator"]) == {"dodge", "tang"}
    tang = table[(table["optimizer"] == "lion") & (table["estimator"] == "tang")].set_index("n")
    expect = E.expected_best_unbiased(v[15:].to_numpy(), [1, 5, 15], higher_is_better=False)
    assert tang["expected_best"].to_numpy() == pytest.approx(expect)
    assert (tang["low"] <= tang["high"]).all()


def test_probability_of_improvement_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 9).astype(float)  # ties on purpose
    y = rng.integers(0, 5, 7).astype(float)
    u = mannwhitneyu(x, y, alternative="two-sided").statistic  # counts x > y, ties 1/2
    assert P.probability_of_improvement(x, y, higher_is_better=True) == pytest.approx(u / (9 * 7))
    # a loss: lower beats higher
    assert P.probability_of_improvement(x, y, higher_is_better=False) == pytest.approx(1 - u / (9 * 7))


def test_improvement_table_on_tuned_results_with_the_seed_bootstrap_by_hand():
    # adam's tuned loss per seed (1, 3), lion's (2, 2): P(adam beats lion) = (1 + 0) / 2... over all 4 pairs:
    # S(1,2)=1, S(1,2)=1, S(3,2)=0, S(3,2)=0 -> 1/2. Seed draws (0,0) p 1/4 -> 1; (0,1) p 1/2 -> 1/2; (1,1) -> 0
    adam = grid_study(lambda i, j: [5.0, 1.0][i] + 10 * j, [1e-3, 1e-2], [0.9, 0.95], seeds=(0, 1),
                      noise={0: 0.0, 1: 2.0})
    lion = grid_study(lambda i, j: 2.0 + 10 * i + 10 * j, [1e-4, 1e-3], [0.9, 0.95], seeds=(0, 1),
                      noise={0: 0.0, 1: 0.0}, optimizer="lion")
    tuned = P.tuned_results(pd.concat([adam, lion], ignore_index=True), "val_loss")
    assert tuned.set_index(["optimizer", "seed"])["value"].to_dict() == {
        ("adam", 0): 1.0, ("adam", 1): 3.0, ("lion", 0): 2.0, ("lion", 1): 2.0}
    table = P.improvement_table(tuned, "val_loss").set_index(["a", "b"])
    row = table.loc[("adam", "lion")]
    assert row["probability"] == pytest.approx(0.5)
    assert (row["low"], row["high"]) == (0.0, 1.0)
    assert not row["decided"]
    assert table.loc[("lion", "adam"), "probability"] == pytest.approx(0.5)


def test_probability_across_tasks_is_the_mean_of_the_tasks():
    t1 = pd.DataFrame({"optimizer": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "value": [1.0, 1.0, 2.0, 2.0]})
    t2 = pd.DataFrame({"optimizer": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "value": [3.0, 3.0, 2.0, 2.0]})
    out = P.probability_of_improvement_across_tasks({"x": t1, "y": t2}, {"x": False, "y": False}, "a", "b")
    assert out["probability"] == pytest.approx(0.5)  # a wins x (1), loses y (0)
    assert out["low"] == out["high"] == pytest.approx(0.5)  # no seed noise within either task
    assert out["tasks"] == 2


def test_ablation_path_from_the_defaults_to_the_best():
    # Adam defaults lr 1e-3, beta1 0.9; loss a(lr) + b(beta1) + c * [lr 1e-2 and beta1 0.95]
    a = {1e-4: 3.0, 1e-3: 2.0, 1e-2: 1.0}
    b = {0.8: 0.5, 0.9: 0.4, 0.95: 0.0}
    f = lambda i, j: a[[1e-4, 1e-3, 1e-2][i]] + b[[0.8, 0.9, 0.95][j]]  # noqa: E731
    study = grid_study(f, [1e-4, 1e-3, 1e-2], [0.8, 0.9, 0.95])
    path = A.ablation_path(study, "val_loss")
    assert list(path["step"]) == [0, 1, 2]
    assert path.loc[0, "value"] == pytest.approx(2.4)  # a(1e-3) + b(0.9)
    # the greedy first step is lr (gains 1.0) before beta1 (gains 0.4)
    assert list(path["hyperparameter"][1:]) == ["lr", "beta1"]
    assert path["improvement"][1:].to_list() == pytest.approx([1.0, 0.4])
    assert path["improvement_share"][1:].to_list() == pytest.approx([1.0 / 1.4, 0.4 / 1.4])


def test_ablation_path_says_when_the_study_lacks_a_point():
    study = grid_study(lambda i, j: i + j, [1e-4, 1e-2], [0.8, 0.95])  # no lr 1e-3, no beta1 0.9
    path = A.ablation_path(study, "val_loss")
    assert len(path) == 1
    assert "no point at the library defaults (lr=0.001, beta1=0.9)" in path.loc[0, "note"]
    # the defaults present, but the grid lacks the corner the path needs
    full = grid_study(lambda i, j: [3.0, 2.0, 0.0][i] + [1.0, 0.5][j] - 3.0 * (i == 2) * (j == 0),
                      [1e-4, 1e-3, 1e-2], [0.8, 0.9])
    full = full[~((full["lr"] == 1e-2) & (full["beta1"] == 0.9))]  # best is (1e-2, 0.8)
    path = A.ablation_path(full, "val_loss")
    # from (1e-3, 0.9) the lr step would need (1e-2, 0.9): only the beta1 step (1e-3, 0.8) can be compared
    assert path.loc[1, "hyperparameter"] == "beta1"
    assert path.loc[1, "note"] == "the study lacks the points lr=0.01, beta1=0.9: not compared"
    assert path.loc[1, "improvement"] == pytest.approx(-0.5)  # a step that makes things worse is kept
    assert path.loc[2, "hyperparameter"] == "lr"
    # nothing available at all: the path stops and says so
    corner = full[~((full["lr"] == 1e-3) & (full["beta1"] == 0.8))]
    path = A.ablation_path(corner, "val_loss")
    assert path.iloc[-1]["note"] == ("the study lacks the points lr=0.01, beta1=0.9; lr=0.001, beta1=0.8: "
                                     "the path stops here")
