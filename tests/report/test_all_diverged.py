"""Diverged runs never count as within tolerance, an optimizer whose every run
diverged has no best lr, no width and no LR sensitivity, and the sweep says when its best diverged."""

from __future__ import annotations

import math
import warnings

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.report import load_trials, summarize

from tests.report.test_metrics import trials_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


def _summary(rows, metric="val_loss"):
    return summarize(trials_frame(rows), metric, uncertainty=False).iloc[0]


def test_every_run_diverged_means_no_best_lr_no_width_no_sensitivity():
    # two lrs, both diverged (values clipped to L0 = 2.0): Wortsman's mean of min(L, L0) - L* would be 0
    row = _summary([{"lr": 1e3, "diverged": True, "final_val_loss": math.nan},
                    {"lr": 1e4, "diverged": True, "final_val_loss": 1e21}])
    assert not row["learned"]
    assert math.isnan(row["best_lr"]) and math.isnan(row["lr_sensitivity"])
    assert math.isnan(row["tolerance_width_decades"]) and math.isnan(row["relative_width_decades"])
    assert row["divergence_rate"] == 1.0


def test_a_diverged_point_is_never_the_best_while_another_point_is_usable():
    # L0 = 2.0; lr 1e-3 made things worse (2.5), 1e-2 diverged (clipped to 2.0), 1e-1 learned (1.9)
    row = _summary([{"lr": 1e-3, "final_val_loss": 2.5}, {"lr": 1e-2, "diverged": True},
                    {"lr": 1e-1, "final_val_loss": 1.9}])
    assert (row["best_lr"], row["best_value"]) == (1e-1, 1.9)


def test_accuracy_diverged_point_clipped_above_the_learned_ones_is_not_the_best():
    row = _summary([{"lr": 1e-3, "final_val_acc": 0.9}, {"lr": 1e-2, "diverged": True, "initial_val_acc": 0.95}],
                   "val_acc")
    assert (row["best_lr"], row["best_value"]) == (1e-3, 0.9)
    assert row["tolerance_lr_low"] == 1e-3 and row["tolerance_lr_high"] < 1e-2  # the band stops before the diverged lr


@pytest.mark.slow  # a sweep then its report, end to end
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
    row = summarize(data.trials, "val_loss", uncertainty=False).iloc[0]
    assert math.isnan(row["best_lr"]) and math.isnan(row["tolerance_width_decades"])
    assert math.isnan(row["lr_sensitivity"])
    out = runner.invoke(app, ["report", "--storage", url, "--study", "digits-mlp", "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").iloc[0]
    assert summary["optimizer"] == "adam" and summary["divergence_rate"] == 1.0
    assert summary[["best_lr", "tolerance_width_decades", "relative_width_decades", "lr_sensitivity"]].isna().all()


def test_lr_outside_the_stored_range_is_refused_up_front(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["sweep", "--storage", url, "--optimizers", "adam", "--lr", "1e7", "--epochs", "1"])
    assert result.exit_code == 2 and "outside the learning rates a study can hold" in result.stderr
    assert not (tmp_path / "s.db").exists()
