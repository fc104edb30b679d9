"""The variance decomposition against closed forms derived by hand, an independent least-squares ANOVA
and the plain seed bootstrap of the report."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import importance as I
from sensitivity.report import uncertainty as U
from tests.helpers.trial_frames import grid_study, trials_frame

LRS = [1e-4, 1e-3, 1e-2]
BETA1S = [0.8, 0.9]


def _row(table, term, kind, region="all", optimizer=None):
    sel = (table["term"] == term) & (table["kind"] == kind) & (table["region"] == region)
    if optimizer is not None:
        sel &= table["optimizer"] == optimizer
    rows = table[sel]
    assert len(rows) == 1, (term, kind, region, len(rows))
    return rows.iloc[0]


def test_additive_function_on_a_grid_has_no_interaction():
    a, b = [0.3, 2.0, 5.0], [1.0, -1.5]
    table = I.importance_table(grid_study(lambda i, j: a[i] + b[j], LRS, BETA1S), "val_loss")
    var_a, var_b = np.var(a), np.var(b)
    assert abs(_row(table, "lr x beta1", "interaction")["share"]) < 1e-9
    assert _row(table, "lr", "main")["share"] == pytest.approx(var_a / (var_a + var_b), abs=1e-12)
    assert _row(table, "beta1", "main")["share"] == pytest.approx(var_b / (var_a + var_b), abs=1e-12)
    # total = main when nothing interacts; the variance is in the loss's units squared
    assert _row(table, "lr", "total")["share"] == pytest.approx(var_a / (var_a + var_b), abs=1e-12)
    assert _row(table, "lr", "main")["variance"] == pytest.approx(var_a)


def test_pure_interaction_on_a_grid_matches_the_closed_form():
    # f = a(lr) * b(beta1), a = (-1, 1) (mean 0, var 1), b = (1, 2, 3) (mean 2, var 2/3):
    # V_lr = mean(b)^2 var(a) = 4, V_beta1 = mean(a)^2 var(b) = 0, V_lr x beta1 = var(a) var(b) = 2/3,
    # Var f = 14/3 -> shares 6/7, 0, 1/7; total effects 1 and 1/7.
    a, b = [-1.0, 1.0], [1.0, 2.0, 3.0]
    table = I.importance_table(grid_study(lambda i, j: a[i] * b[j], [1e-3, 1e-2], [0.8, 0.9, 0.95]), "val_loss")
    assert _row(table, "lr", "main")["share"] == pytest.approx(6 / 7, abs=1e-12)
    assert _row(table, "beta1", "main")["share"] == pytest.approx(0.0, abs=1e-12)
    assert _row(table, "lr x beta1", "interaction")["share"] == pytest.approx(1 / 7, abs=1e-12)
    assert _row(table, "lr", "total")["share"] == pytest.approx(1.0, abs=1e-12)
    assert _row(table, "beta1", "total")["share"] == pytest.approx(1 / 7, abs=1e-12)
    # both factors centred: all of the variance is interaction
    c = [-1.0, 1.0]
    table = I.importance_table(grid_study(lambda i, j: c[i] * c[j], [1e-3, 1e-2], [0.8, 0.9]), "val_loss")
    assert _row(table, "lr x beta1", "interaction")["share"] == pytest.approx(1.0, abs=1e-12)
    assert _row(table, "lr", "main")["share"] == pytest.approx(0.0, abs=1e-12)


def test_a_function_of_lr_alone():
    a = [3.0, 1.0, 2.5]
    table = I.importance_table(grid_study(lambda i, j: a[i], LRS, BETA1S), "val_loss")
    assert _row(table, "lr", "main")["share"] == pytest.approx(1.0, abs=1e-12)
    assert _row(table, "beta1", "total")["share"] == pytest.approx(0.0, abs=1e-12)
    # normalised variance: var(a) / (L0 - L*)^2 with L* = 1 and L0 = 100
    assert _row(table, "lr", "main")["variance_normalised"] == pytest.approx(np.var(a) / 99.0**2)


def test_a_constant_objective_is_undefined_not_a_division_by_zero():
    with np.errstate(all="raise"):
        table = I.importance_table(grid_study(lambda i, j: 2.0, LRS, BETA1S), "val_loss")
    mine = table[table["region"] == "all"]
    assert mine["share"].isna().all()
    assert mine["note"].str.startswith("undefined").all()


def test_noise_share_of_a_study_with_seeds():
    # f = a(lr) + b(beta1) plus a seed offset -0.5 / +0.5 in every cell: the cell means are f itself and
    # the within-cell variance (ddof 0) is 0.25 everywhere, so noise share = 0.25 / (var a + var b + 0.25)
    a, b = [0.0, 1.0, 3.0], [0.0, 2.0]
    study = grid_study(lambda i, j: a[i] + b[j], LRS, BETA1S, seeds=(0, 1), noise={0: -0.5, 1: 0.5})
    table = I.importance_table(study, "val_loss")
    total = np.var(a) + np.var(b) + 0.25
    assert _row(table, "seed", "noise")["share"] == pytest.approx(0.25 / total, abs=1e-12)
    assert _row(table, "lr", "main")["share"] == pytest.approx(np.var(a) / total, abs=1e-12)
    # with one trial per cell the noise is not separable: NaN, said so
    one = I.importance_table(grid_study(lambda i, j: a[i] + b[j], LRS, BETA1S), "val_loss")
    assert math.isnan(_row(one, "seed", "noise")["share"])
    assert "not separable" in _row(one, "seed", "noise")["note"]


def test_main_share_is_recomputable_from_trials_csv_with_pandas():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 2, 3))  # lr x beta1 x seed
    study = grid_study(lambda i, j: 0.0, LRS, BETA1S, seeds=(0, 1, 2))
    study["final_val_loss"] = [values[i, j, s] for i, j, s in itertools.product(range(3), range(2), range(3))]
    table = I.importance_table(study, "val_loss", uncertainty=False)
    # the definition, as a reader of trials.csv would compute it
    cell = study.groupby(["lr", "beta1"])["final_val_loss"].mean()
    main_lr = cell.groupby(level="lr").mean().var(ddof=0)
    assert _row(table, "lr", "main")["share"] == pytest.approx(main_lr / study["final_val_loss"].var(ddof=0), abs=1e-12)


def test_good_region_indicator_matches_the_closed_form():
    # only the cell (lr 1e-3, beta1 0.8) is within the threshold: b = 1 there, 0 elsewhere (6 cells).
    # Var b = 5/36; lr marginal (0, 1/2, 0): var 2/36 -> 2/5; beta1 marginal (1/3, 0): var 1/36 -> 1/5;
    # interaction 2/5.
    f = lambda i, j: 1.0 if (i, j) == (1, 0) else 50.0  # noqa: E731  L* = 1, L0 = 100: cut at 1 + 0.05 * 99
    table = I.importance_table(grid_study(f, LRS, BETA1S), "val_loss")
    assert _row(table, "lr", "main", "good")["share"] == pytest.approx(2 / 5, abs=1e-12)
    assert _row(table, "beta1", "main", "good")["share"] == pytest.approx(1 / 5, abs=1e-12)
    assert _row(table, "lr x beta1", "interaction", "good")["share"] == pytest.approx(2 / 5, abs=1e-12)
    # a top quantile instead of the threshold: the best 2 of 6 trials are the lr 1e-3 column
    g = lambda i, j: [5.0, 1.0, 7.0][i] + 0.1 * j  # noqa: E731
    table = I.importance_table(grid_study(g, LRS, BETA1S), "val_loss", target_quantile=2 / 6)
    assert _row(table, "lr", "main", "good")["share"] == pytest.approx(1.0, abs=1e-12)


def _plain_lr_share(trials: pd.DataFrame) -> pd.DataFrame:
    """The lr main share on a (resampled) frame, by pandas groupby, rows weighted as given."""
    y = trials["final_val_loss"]
    cells = trials.assign(y=y).groupby(["lr", "beta1"])["y"]
    mean, within = cells.mean(), cells.var(ddof=0)
    main = mean.groupby(level="lr").mean().var(ddof=0)
    total = mean.var(ddof=0) + within.mean()
    return pd.DataFrame({"share": [main / total]}, index=pd.Index(["adam"], name="optimizer"))


def test_vectorised_bootstrap_equals_the_reports_plain_seed_bootstrap():
    rng = np.random.default_rng(0)
    study = grid_study(lambda i, j: 0.0, LRS, BETA1S, seeds=(0, 1, 2, 3))
    study["final_val_loss"] = rng.normal(size=len(study)) + np.repeat([0.0, 1.0, 2.5], 8)
    table = I.importance_table(study, "val_loss")
    boot = U.seed_bootstrap(study, _plain_lr_share)
    low, high = boot.interval()
    row = _row(table, "lr", "main")
    assert row["share"] == pytest.approx(boot.estimate.iloc[0, 0], abs=1e-12)
    assert row["share_low"] == pytest.approx(low.iloc[0, 0], abs=1e-12)
    assert row["share_high"] == pytest.approx(high.iloc[0, 0], abs=1e-12)
    assert row["interval"].startswith("seed bootstrap (exact, 35 draws)")


def test_each_optimizer_is_decomposed_alone():
    a = [3.0, 1.0, 2.5]
    one = grid_study(lambda i, j: a[i], LRS, BETA1S, optimizer="adam")
    two = grid_study(lambda i, j: [0.0, 4.0][j], LRS, BETA1S, optimizer="lion")
    table = I.importance_table(pd.concat([one, two], ignore_index=True), "val_loss")
    assert _row(table, "lr", "main", optimizer="adam")["share"] == pytest.approx(1.0)
    assert _row(table, "beta1", "main", optimizer="lion")["share"] == pytest.approx(1.0)


def test_full_grid_is_decided_from_the_data():
    study = grid_study(lambda i, j: i + j, LRS, BETA1S)
    assert I.is_full_grid(study, ["lr", "beta1"])
    assert not I.is_full_grid(study.iloc[1:], ["lr", "beta1"])
    assert I.swept_hyperparameters(study) == ["lr", "beta1"]


@pytest.mark.slow
def test_random_samples_use_optunas_fanova_and_recover_an_additive_split():
    # f = log10 lr + 2 z on log-uniform lr over [1e-4, 1e-1] and z = -log10(1 - beta1) uniform on [0, 2]:
    # over the box Var(log10 lr) = 3^2 / 12 = 0.75 and Var(2 z) = 4 * 2^2 / 12 = 4/3, so the main shares
    # are 0.36 and 0.64; a forest estimate on 80 points: within 0.1
    rng = np.random.default_rng(1)
    n = 80
    x, z = rng.uniform(-4, -1, n), rng.uniform(0, 2, n)
    points = [{"lr": 10**u, "beta1": 1 - 10**-v} for u, v in zip(x, z)]
    table = I.importance_table(trials_frame(points, x + 2 * z), "val_loss", regions=("all",), refits=2)
    var_a, var_b = 0.75, 4 / 3
    row = _row(table, "lr", "main")
    assert row["estimator"] == I.FANOVA
    assert row["share"] == pytest.approx(var_a / (var_a + var_b), abs=0.1)
    assert _row(table, "beta1", "main")["share"] == pytest.approx(var_b / (var_a + var_b), abs=0.1)
    assert row["fit_low"] <= row["share"] <= row["fit_high"]
    assert not (table["kind"] == "interaction").any()  # Optuna's public fANOVA gives main effects only


@pytest.mark.slow
def test_random_samples_good_region_uses_ped_anova():
    # good iff log10 lr in the middle third, whatever beta1: the indicator depends on lr alone -> share near 1,
    # beta1 near 0 (PED-ANOVA's kernel estimates: loose)
    rng = np.random.default_rng(2)
    n = 120
    x, z = rng.uniform(-4, -1, n), rng.uniform(0, 2, n)
    points = [{"lr": 10**u, "beta1": 1 - 10**-v} for u, v in zip(x, z)]
    loss = np.where(np.abs(x + 2.5) < 0.5, 1.0, 50.0) + 0.01 * z
    table = I.importance_table(trials_frame(points, loss), "val_loss", regions=("good",))
    assert _row(table, "lr", "main", "good")["estimator"] == I.PED_ANOVA
    assert _row(table, "lr", "main", "good")["share"] > 0.5
    assert _row(table, "beta1", "main", "good")["share"] < 0.1


@pytest.mark.slow
def test_grid_decomposition_equals_a_least_squares_anova_on_a_stored_study(tmp_path):
    """Cross-check on a real study, trained here by ``adamrag-sens sweep`` (two optimizers, a 3 x 2
    grid of lr x beta1, 2 epochs on a slice of the digits): the exact decomposition against
    least-squares ANOVA sums of squares, an independent computation."""
    from typer.testing import CliRunner

    from sensitivity.cli import app
    from sensitivity.report import load_trials
    from sensitivity.report.metrics import metric_values

    url = f"sqlite:///{tmp_path / 'real.db'}"
    result = CliRunner().invoke(app, ["sweep", "--optimizers", "adam,nag", "--lr-points", "3", "--beta1", "0.8,0.9",
                                      "--epochs", "2", "--train-size", "256", "--val-size", "64", "--storage", url])
    assert result.exit_code == 0, (result.output, result.exception)
    data = load_trials(url, "digits-mlp")
    done = data.complete
    table = I.importance_table(done, "val_loss", uncertainty=False, regions=("all",))
    checked = 0
    for name, g in done.groupby("optimizer"):
        hps = I.swept_hyperparameters(g)
        if not I.is_full_grid(g, hps) or len(hps) != 2:
            continue
        y = metric_values(g, "val_loss").to_numpy(float)
        x1, x2 = (pd.get_dummies(g[h].astype(str), drop_first=True, dtype=float).to_numpy() for h in hps)
        inter = np.einsum("ni,nj->nij", x1, x2).reshape(len(y), -1)
        ones = np.ones((len(y), 1))

        def r2(*blocks):
            design = np.hstack([ones, *blocks])
            fit = design @ np.linalg.lstsq(design, y, rcond=None)[0]
            return 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()

        # a balanced grid (one trial per cell): sequential sums of squares are the ANOVA effects
        assert _row(table, hps[0], "main", optimizer=name)["share"] == pytest.approx(r2(x1), abs=1e-9)
        assert _row(table, hps[1], "main", optimizer=name)["share"] == pytest.approx(r2(x2), abs=1e-9)
        assert _row(table, f"{hps[0]} x {hps[1]}", "interaction", optimizer=name)["share"] == pytest.approx(
            r2(x1, x2, inter) - r2(x1, x2), abs=1e-9)
        checked += 1
    assert checked >= 1
