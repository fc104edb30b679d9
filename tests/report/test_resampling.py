"""The seed bootstrap measured in blocks of draws (report/resampling.py) against the plain one.

The plain bootstrap builds every draw's trials frame and runs the report's pipeline on it; the
fast one sums each (configuration, seed) once and runs the pipeline on stacked tables. They must
give the same replicates (up to the rounding of a sum taken in another order) on every kind of
study: a grid, a grid with a missing seed, diverged and non-finite runs, trials without a seed,
failed trials, random samples, the default aggregation, the effective lr axis, and more seeds than
the exact enumeration allows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analysis, metrics, region, resampling, uncertainty


def _study(seeds=(0, 1, 2), *, random=False, gaps=True, rng_seed=0) -> pd.DataFrame:
    """A tidy trials frame in the loaded frame's columns: adam and nag on lr x beta1, (optionally) holes."""
    rng = np.random.default_rng(rng_seed)
    rows, trial = [], 0
    for optimizer in ("adam", "nag"):
        for seed in seeds:
            if random:
                points = [(10 ** rng.uniform(-4, 0), rng.choice([0.8, 0.9, 0.95])) for _ in range(8)]
            else:
                points = [(lr, b1) for lr in (1e-4, 1e-3, 1e-2, 1e-1, 1.0) for b1 in (0.8, 0.9, 0.95)]
            for lr, b1 in points:
                loss = 0.3 + (math.log10(lr) + 2.2) ** 2 * 0.2 + 0.5 * abs(b1 - 0.9) + 0.05 * rng.standard_normal()
                if optimizer == "nag":
                    loss += 0.1
                diverged = lr >= 1.0 and optimizer == "nag" and seed % 2 == 0
                rows.append(dict(trial=trial, state="COMPLETE", optimizer=optimizer, lr=lr, beta1=b1,
                                 beta2=0.999 if optimizer == "adam" else np.nan, gamma=np.nan, weight_decay=0.0,
                                 seed=seed, final_val_loss=math.inf if diverged else loss, initial_val_loss=2.3,
                                 final_val_acc=0.5, initial_val_acc=0.1, diverged=diverged,
                                 wall_time_s=1.0 + 0.01 * trial))
                trial += 1
    frame = pd.DataFrame(rows)
    if gaps:
        # a configuration without seed 1, a NaN final value, a failed trial, and a trial without a seed
        frame = frame[~((frame["optimizer"] == "adam") & (frame["lr"] == 1e-2) & (frame["beta1"] == 0.8)
                        & (frame["seed"] == 1))].copy()
        frame.loc[frame.index[3], "final_val_loss"] = np.nan
        frame.loc[frame.index[5], "state"] = "FAIL"
        extra = frame.iloc[[0]].assign(trial=10_000, seed=np.nan, final_val_loss=0.25)
        frame = pd.concat([frame, extra], ignore_index=True)
    frame["seed"] = frame["seed"].astype("Int64")
    frame["value"] = frame["final_val_loss"]
    return frame.reset_index(drop=True)


def _both(trials: pd.DataFrame, **settings):
    """(fast, plain) seed bootstraps of the report's numbers, on the same draws."""
    shown = analysis.analyze(trials, "val_loss", uncertainty=False, **settings)
    pairs = shown.pairs
    frame = shown.trials
    estimate = analysis._measure(frame, shown.settings, pairs).numbers
    done = metrics.complete_trials(frame)
    fast = resampling.seed_bootstrap_tables(
        done, metrics.metric_values(done, "val_loss"), metrics.config_table(frame, "val_loss"), "val_loss", estimate,
        lambda c, d, of: analysis._measure_tables(c, d, shown.settings, pairs, optimizer_of=of).numbers)
    plain = uncertainty.seed_bootstrap(frame, lambda t: analysis._measure(t, shown.settings, pairs).numbers)
    return fast, plain


def _same(fast, plain) -> None:
    assert fast.exact == plain.exact and fast.n_seeds == plain.n_seeds
    np.testing.assert_array_equal(fast.probabilities, plain.probabilities)
    assert fast.replicates.shape == plain.replicates.shape
    np.testing.assert_array_equal(np.isnan(fast.replicates), np.isnan(plain.replicates))
    # a mean over seeds summed in another order differs in its last bits; every figure keeps that, except
    # the good-region share, whose contour through a cell amplifies it when a corner lies almost on the
    # threshold (seen: 7e-9 relative)
    share = np.array([c.startswith("good_share_") for c in fast.estimate.columns])
    np.testing.assert_allclose(fast.replicates[:, :, ~share], plain.replicates[:, :, ~share], rtol=1e-12, atol=1e-14,
                               equal_nan=True)
    np.testing.assert_allclose(fast.replicates[:, :, share], plain.replicates[:, :, share], rtol=1e-7, atol=1e-12,
                               equal_nan=True)
    for a, b in zip(fast.interval(), plain.interval()):
        pd.testing.assert_frame_equal(a, b, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("seeds", [(0, 1), (0, 1, 2), pytest.param((3, 7, 8, 9), marks=pytest.mark.slow)])
def test_grid_with_holes_gives_the_plain_replicates(seeds):
    _same(*_both(_study(seeds)))


@pytest.mark.slow
def test_random_samples_each_seed_its_own_points():
    fast, plain = _both(_study((0, 1, 2), random=True))
    _same(fast, plain)
    assert np.isfinite(fast.replicates).any()


def test_default_aggregation_reads_each_stacked_optimizers_catalog_defaults():
    trials = _study((0, 1, 2), gaps=False)
    fast, plain = _both(trials, aggregation="default")
    _same(fast, plain)
    assert np.isfinite(fast.replicates).any()


@pytest.mark.slow
def test_effective_lr_axis():
    _same(*_both(_study((0, 1, 2)), lr_axis="effective"))


@pytest.mark.slow
def test_monte_carlo_draws_beyond_the_exact_limit():
    fast, plain = _both(_study(tuple(range(8)), gaps=True))  # C(15, 8) = 6,435 distinct draws > 2,000
    assert not fast.exact and len(fast.probabilities) > 500
    _same(fast, plain)


@pytest.mark.slow  # two whole bootstraps
def test_blocks_of_draws_give_the_same_replicates(monkeypatch):
    trials = _study((0, 1, 2))
    whole, _ = _both(trials)
    monkeypatch.setattr(resampling, "BLOCK_ROWS", 40)  # 29 configurations: one draw per block
    blocked, _ = _both(trials)
    np.testing.assert_array_equal(blocked.replicates, whole.replicates)


def test_one_draws_table_is_the_config_table_of_its_trials():
    trials = _study((0, 1, 2))
    cells = resampling.SeedCells.from_trials(trials, "val_loss")
    for counts in ({0: 3}, {0: 1, 2: 2}, {1: 2, 2: 1}):
        table = cells.tables(cells.counts(counts)[None, :], first=4)
        expected = metrics.config_table(uncertainty.resample_seeds(trials, counts), "val_loss")
        assert set(table["optimizer"]) == {resampling.draw_name(o, 4) for o in expected["optimizer"].unique()}
        table = table.assign(optimizer=[resampling.split_name(n)[0] for n in table["optimizer"]])
        columns = [c for c in expected.columns if c != "wall_time_s"]  # wall time is not resampled
        pd.testing.assert_frame_equal(table[columns], expected[columns], check_exact=False, rtol=1e-13)
        assert (table["n_seeds"].to_numpy() == expected["n_seeds"].to_numpy()).all()


def test_a_configuration_none_of_whose_seeds_was_drawn_has_no_row():
    trials = _study((0, 1), gaps=False)
    only_seed_0 = trials[~((trials["optimizer"] == "adam") & (trials["lr"] == 1e-3) & (trials["seed"] == 0))]
    cells = resampling.SeedCells.from_trials(only_seed_0, "val_loss")
    table = cells.tables(cells.counts({0: 2})[None, :])
    adam = table[table["optimizer"] == resampling.draw_name("adam", 0)]
    assert 1e-3 not in set(adam["lr"]) and len(adam) == 12


def test_stacked_names_round_trip_and_sort_as_the_optimizers_do():
    for name in ("adam", "adamrag", "my opt", "a\x1fb"):
        assert resampling.split_name(resampling.draw_name(name, 12)) == (name, 12)
    assert sorted([resampling.draw_name("adamrag", 0), resampling.draw_name("adam", 3)])[0].startswith("adam\x1f")
    with pytest.raises(ValueError, match="stacked"):
        resampling.split_name("adam")


def test_fewer_than_two_seeds_gives_no_bootstrap():
    trials = _study((0,), gaps=False)
    estimate = analysis._measure(trials, analysis.analyze(trials, "val_loss", uncertainty=False).settings, ()).numbers
    done = metrics.complete_trials(trials)
    assert resampling.seed_bootstrap_tables(done, metrics.metric_values(done, "val_loss"),
                                            metrics.config_table(trials, "val_loss"), "val_loss", estimate,
                                            lambda *a: estimate) is None


@pytest.mark.slow
def test_the_report_uses_the_fast_bootstrap():
    trials = _study((0, 1, 2))
    result = analysis.analyze(trials, "val_loss")
    fast, _ = _both(trials)
    low, high = fast.interval()
    assert result.bootstrap == "exact"
    summary = result.summary.set_index("optimizer")
    for column in ("tolerance_width_decades", "best_value", "good_share_lr_beta1"):
        for bound, frame in (("low", low), ("high", high)):
            np.testing.assert_allclose(summary[f"{column}_{bound}"].to_numpy(float),
                                       frame[column].reindex(summary.index).to_numpy(float), equal_nan=True)
            assert np.isfinite(summary[f"{column}_{bound}"].to_numpy(float)).all()
    assert region.swept_pairs(metrics.complete_trials(trials))  # the study has an lr x beta1 pair
