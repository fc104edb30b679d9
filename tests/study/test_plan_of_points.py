"""The plan of points: grid products, paired random/qmc points, seeds as a dimension, run order."""

from __future__ import annotations

import itertools
import math

import pytest

from sensitivity.study.space import plan_points, point_key
from sensitivity.study.spec import StudySpec


def _spec(**kw) -> StudySpec:
    return StudySpec(**kw).validate()


def test_grid_is_the_cartesian_product_per_optimizer_times_seeds():
    spec = _spec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2, 1e-1), beta1=(0.8, 0.9), seeds=2)
    plan = plan_points(spec)
    # adam: 3 lr x 2 beta1 (beta2 fixed); nag: 3 lr x 2 momentum; both x 2 seeds
    assert len(plan) == (3 * 2 + 3 * 2) * 2
    expected = {
        (opt, lr, b1, seed)
        for opt, lr, b1, seed in itertools.product(("adam", "nag"), (1e-3, 1e-2, 1e-1), (0.8, 0.9), (0, 1))
    }
    assert {(p["optimizer"], p["lr"], p["beta1"], p["seed"]) for p in plan} == expected
    assert len({point_key(p) for p in plan}) == len(plan)
    assert all(p["beta2"] == 0.999 for p in plan if p["optimizer"] == "adam")
    assert all("beta2" not in p for p in plan if p["optimizer"] == "nag")


def test_grid_order_is_seed_major_and_interleaves_optimizers():
    plan = plan_points(_spec(optimizers=("adam", "nag", "lion"), lr=(1e-3, 1e-2), beta1=(0.9,), seeds=2))
    assert [p["seed"] for p in plan] == [0] * 6 + [1] * 6
    assert [p["optimizer"] for p in plan[:6]] == ["adam", "nag", "lion"] * 2


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_random_points_are_paired_across_optimizers_and_seeds(sampler):
    spec = _spec(optimizers=("adamrag", "adam", "lion"), sampler=sampler, lr=(1e-4, 1e-1), beta1=(0.8, 0.99),
                 n_trials=8, seeds=3, sampler_seed=5)
    plan = plan_points(spec)
    assert len(plan) == 8 * 3 * 3
    # interleaved: optimizer cycles fastest, as in grid mode
    assert [p["optimizer"] for p in plan[:6]] == ["adamrag", "adam", "lion"] * 2
    by = {}
    for p in plan:
        by.setdefault((p["seed"], p["optimizer"]), []).append((p["lr"], p["beta1"]))
    reference = by[(0, "adamrag")]
    assert len(set(reference)) == 8  # 8 distinct points
    for seed in range(3):
        for opt in ("adamrag", "adam", "lion"):
            assert by[(seed, opt)] == reference  # same lr and beta1, point for point
    for lr, b1 in reference:
        assert 1e-4 <= lr <= 1e-1 and 0.8 <= b1 <= 0.99


def test_random_points_with_default_ranges_take_the_same_quantiles():
    spec = _spec(optimizers=("adam", "nag"), sampler="random", n_trials=5, beta1=(0.9,))
    plan = plan_points(spec)
    adam = [p["lr"] for p in plan if p["optimizer"] == "adam"]
    nag = [p["lr"] for p in plan if p["optimizer"] == "nag"]
    # adam's range 1e-5..1e-1, nag's 1e-3..1e1: the same position on a log axis, two decades apart
    for a, n in zip(adam, nag):
        assert math.log10(n) - math.log10(a) == pytest.approx(2.0, abs=2e-3)


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_more_random_trials_keep_the_earlier_points(sampler):
    small = plan_points(_spec(optimizers=("adam",), sampler=sampler, n_trials=4, lr=(1e-4, 1e-1)))
    large = plan_points(_spec(optimizers=("adam",), sampler=sampler, n_trials=8, lr=(1e-4, 1e-1)))
    assert large[:4] == small  # resuming with --n-trials 8 adds 4 points and keeps the 4 done


def test_point_key_is_independent_of_dict_order():
    assert point_key({"lr": 0.001, "optimizer": "adam", "seed": 0}) == point_key({"seed": 0, "optimizer": "adam", "lr": 0.001})
