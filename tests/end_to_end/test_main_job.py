"""The main job end to end through the command line: sweep, resume, report, on real data."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.train import resolve_device
from tests.helpers.idx_files import write_fashion_mnist

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_sweep_resume_and_report_on_digits(workdir):
    args = ["sweep", "--optimizers", "adamrag,adam,nag,lion", "--lr", "1e-3,1e-1,30",
            "--beta1", "0.9", "--epochs", "2"]
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    assert "study digits-mlp" in first.output and "ran 12 trials" in first.output

    # stored where the docs say, one COMPLETE trial per point, diverged ones kept with a finite value
    storage = "sqlite:///studies/adamrag-sens.db"
    assert (workdir / "studies" / "adamrag-sens.db").is_file()
    study = optuna.load_study(study_name="digits-mlp", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials)
    by_point = {(t.params["optimizer"], t.params["lr"]): t for t in trials}
    assert len(by_point) == 12
    adamrag = by_point[("adamrag", 1e-3)]
    assert adamrag.params["gamma"] == 0.5 and adamrag.params["beta2"] == 0.999
    assert "beta2" not in by_point[("nag", 1e-3)].params
    assert sorted(adamrag.intermediate_values) == [1, 2]
    assert adamrag.intermediate_values[2] == pytest.approx(adamrag.user_attrs["val_loss"][-1])
    assert adamrag.value == pytest.approx(adamrag.user_attrs["val_loss"][-1])
    assert adamrag.user_attrs["device"].split(":")[0] == resolve_device("auto").type and adamrag.user_attrs["wall_time_s"] > 0
    exploded = by_point[("nag", 30.0)]
    assert exploded.user_attrs["diverged"] is True
    assert math.isfinite(exploded.value) and exploded.value == pytest.approx(exploded.user_attrs["initial_val_loss"])

    # the same command again runs nothing
    again = _invoke(*args)
    assert again.exit_code == 0 and "nothing to run" in again.output
    assert len(optuna.load_study(study_name="digits-mlp", storage=storage).trials) == 12

    # a wider grid runs only the new points
    wider = _invoke(*[a if a != "1e-3,1e-1,30" else "1e-3,1e-2,1e-1,30" for a in args])
    assert wider.exit_code == 0 and "ran 4 trials" in wider.output
    assert len(optuna.load_study(study_name="digits-mlp", storage=storage).trials) == 16

    rep = _invoke("report", "--study", "digits-mlp")
    assert rep.exit_code == 0, rep.output
    out = workdir / "reports" / "digits-mlp"
    for name in ("trials.csv", "summary.csv", "report.md", "report.html"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.png")), "no figures written"
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 16
    assert table.loc[(table.optimizer == "nag") & (table.lr == 30.0), "diverged"].item()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.optimizer) == {"adamrag", "adam", "nag", "lion"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html


@pytest.mark.slow
def test_resnet18_on_fashion_mnist_runs_end_to_end_on_the_cpu(workdir):
    write_fashion_mnist(workdir / "data" / "fashion-mnist", n_train=64, n_test=32)
    result = _invoke("sweep", "--task", "resnet18", "--dataset", "fashion-mnist", "--train-size", "64",
                     "--batch-size", "32", "--epochs", "1", "--optimizers", "adamrag,adam", "--lr", "1e-3",
                     "--beta1", "0.9", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "study resnet18-fashion-mnist" in result.output and "ran 2 trials" in result.output
    study = optuna.load_study(study_name="resnet18-fashion-mnist", storage="sqlite:///studies/adamrag-sens.db")
    assert {t.params["optimizer"] for t in study.trials} == {"adamrag", "adam"}
    assert all(t.user_attrs["steps"] == 2 for t in study.trials)


def test_missing_data_is_one_line_and_exit_2(workdir):
    result = runner.invoke(app, ["sweep", "--task", "resnet18", "--data-dir", str(workdir / "none")])
    assert result.exit_code == 2
    assert "CIFAR-10 not found" in result.output
    assert not (workdir / "studies" / "adamrag-sens.db").exists()
