"""Issue 10, kind 7: diverged runs never count as within tolerance, an optimizer whose every run
diverged has no best lr, no width and no LR sensitivity, and the sweep says when its best diverged."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.report import load_trials, summarize
from sensitivity.report import metrics as M

from tests.test_metrics import trials_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


def test_every_run_diverged_means_no_best_no_width_no_sensitivity():
    # two lrs, both diverged at L0 = 2.0 (value clipped to 2.0): before, a width of 1 decade
    t = trials_frame([{"lr": 1e3, "diverged": True, "final_val_loss": math.nan},
                      {"lr": 1e4, "diverged": True, "final_val_loss": 1e21}])
    row = summarize(t, "val_loss").iloc[0]
    assert math.isnan(row["best_lr"]) and math.isnan(row["best_value"])
    assert math.isnan(row["tolerance_width_decades"]) and math.isnan(row["lr_sensitivity"])
    assert row["divergence_rate"] == 1.0


def test_diverged_points_are_outside_the_tolerance_interval():
    # lr 1e-3 learned (1.0); lr 1e-2 diverged, clipped to its L0 of 1.05 (within 10% of 1.0 by value)
    t = trials_frame([{"lr": 1e-3, "final_val_loss": 1.0},
                      {"lr": 1e-2, "diverged": True, "initial_val_loss": 1.05, "final_val_loss": 0.2},
                      {"lr": 1e-1, "final_val_loss": 1.02}])
    row = summarize(t, "val_loss").iloc[0]
    assert (row["best_lr"], row["best_value"]) == (1e-3, 1.0)
    assert row["tolerance_width_decades"] == 0.0  # 1e-3 alone; without the diverged point it would be 2
    assert (row["tolerance_lr_low"], row["tolerance_lr_high"]) == (1e-3, 1e-3)


def test_accuracy_diverged_points_are_outside_the_tolerance_interval():
    t = trials_frame([{"lr": 1e-3, "final_val_acc": 0.9},
                      {"lr": 1e-2, "diverged": True, "initial_val_acc": 0.95}])
    row = summarize(t, "val_acc").iloc[0]
    assert (row["best_lr"], row["best_value"], row["tolerance_width_decades"]) == (1e-3, 0.9, 0.0)


def test_learned_is_false_for_points_with_a_diverged_seed():
    curve = M.lr_curve(trials_frame([{"lr": 1e-3, "seed": 0}, {"lr": 1e-3, "seed": 1, "diverged": True},
                                     {"lr": 1e-2, "seed": 0}, {"lr": 1e-2, "seed": 1}]), "val_loss")
    assert M.learned(curve).tolist() == [False, True]


def test_all_diverged_sweep_then_report(tmp_path):
    """The issue's input: adam at lr 1e3 and 1e4 for 2 epochs diverges everywhere."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw Optuna UserWarning ("Fixed parameter lr ... out of range")
        result = runner.invoke(app, ["sweep", "--storage", url, "--optimizers", "adam", "--lr", "1e3,1e4",
                                     "--beta1", "0.9", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "Fixed parameter" not in result.output
    best = [line for line in result.stdout.splitlines() if line.startswith("best val_loss")]
    assert len(best) == 1 and "(diverged" in best[0]
    data = load_trials(url, "digits-mlp")
    assert data.trials["diverged"].all()
    row = summarize(data.trials, "val_loss").iloc[0]
    assert math.isnan(row["best_lr"]) and math.isnan(row["tolerance_width_decades"])
    out = runner.invoke(app, ["report", "--storage", url, "--study", "digits-mlp", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    adam_row = next(line for line in out.stdout.splitlines() if " adam " in line)
    cells = [c.strip() for c in adam_row.strip("│ ").split("│")]
    assert cells[:7] == ["adam", "2", "-", "-", "-", "-", "100%"]


def test_lr_outside_the_stored_range_is_refused_up_front(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["sweep", "--storage", url, "--optimizers", "adam", "--lr", "1e7", "--epochs", "1"])
    assert result.exit_code == 2 and "outside the learning rates a study can hold" in result.stderr
    assert not (tmp_path / "s.db").exists()
