"""Each workload through the command line on the CPU: a tiny sweep (2 optimizers x 2 lrs, 1 epoch,
small data in the real format), then its report, labelled and judged by the task's own metric."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from tests.helpers.cifar_files import trust_files, write_cifar100
from tests.helpers.idx_files import write_fashion_mnist

runner = CliRunner()
STORAGE = "sqlite:///studies/s.db"
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--optimizers", "adamrag,adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1", "--storage", STORAGE]


def _text(path: Path) -> Path:
    import sysconfig

    path.write_text(Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()[:6000])
    return path


def _sweep_and_report(workdir: Path, args: list[str], study: str) -> tuple[optuna.Study, pd.DataFrame, str]:
    result = runner.invoke(app, ["sweep", *args, *TINY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ran 4 trials" in result.output
    rep = runner.invoke(app, ["report", "--storage", STORAGE, "--study", study, "--out", "rep"], catch_exceptions=False)
    assert rep.exit_code == 0, rep.output
    stored = optuna.load_study(study_name=study, storage=STORAGE)
    assert [t.state.name for t in stored.trials] == ["COMPLETE"] * 4
    for name in ("lr_sensitivity.png", "loss_curves.png", "relative_performance.png", "expected_best.png"):
        assert (workdir / "rep" / name).stat().st_size > 10_000
    return stored, pd.read_csv(workdir / "rep" / "summary.csv"), _as_read((workdir / "rep" / "report.md").read_text())


def _as_read(markdown: str) -> str:
    """report.md as a reader sees it: the backslash escapes that keep user text inert in Markdown
    (``val\\_bpc``, ``L\\*``) removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_fmnist_cnn(workdir):
    write_fashion_mnist(workdir / "data" / "fashion-mnist", n_train=64, n_test=32)
    study, summary, md = _sweep_and_report(workdir, ["--task", "fmnist-cnn", "--train-size", "64", "--val-size", "32",
                                                     "--batch-size", "16"], "fmnist-cnn")
    assert study.user_attrs["metric"] == "val_loss" and study.direction.name == "MINIMIZE"
    assert "validation loss in nats/example (minimized)" in md
    assert "Fashion-MNIST (28x28 grey), 64 train / 32 validation" in md
    assert list(summary["optimizer"]) == ["adamrag", "adam"]


@pytest.mark.slow
def test_char_lm_with_its_bits_per_character_and_perplexity(workdir):
    text = _text(workdir / "t.txt")
    study, summary, md = _sweep_and_report(workdir, ["--task", "char-lm", "--text-file", str(text),
                                                     "--batch-size", "8"], "char-lm")
    assert [m["name"] for m in study.user_attrs["metrics"]] == ["val_loss", "val_bpc", "val_ppl", "val_acc"]
    assert "validation loss in nats/char" in md and "LR sensitivity (nats/char)" in md
    trials = pd.read_csv(workdir / "rep" / "trials.csv")
    # bits per character and perplexity are the loss in other units, trial by trial
    assert trials["final_val_bpc"].to_list() == pytest.approx((trials["final_val_loss"] / math.log(2)).to_list())
    assert trials["final_val_ppl"].to_list() == pytest.approx([math.exp(v) for v in trials["final_val_loss"]])
    assert "val_bpc (bits/char)" in md and "val_ppl (per char)" in md
    assert "6,000 characters" in md  # the data as loaded are stated


@pytest.mark.slow
def test_cartpole_maximises_its_return(workdir):
    study, summary, md = _sweep_and_report(workdir, ["--task", "cartpole", "--batch-size", "2"], "cartpole")
    assert study.user_attrs["metric"] == "return" and study.direction.name == "MAXIMIZE"
    trials = pd.read_csv(workdir / "rep" / "trials.csv")
    # the objective is the final return clipped at the initial one (a maximised metric: max(R, R0)),
    # and the initial return for a run that diverged (collapsed), as every ranking reads it
    expected = trials["final_return"].where(~trials["diverged"].astype(bool), trials["initial_return"])
    expected = expected.combine(trials["initial_return"], max)
    assert trials["value"].to_numpy() == pytest.approx(expected.to_numpy())
    # the summary's best is the highest return of each optimizer, not the lowest
    for opt, g in trials.groupby("optimizer"):
        assert summary.set_index("optimizer").loc[opt, "best_value"] == pytest.approx(g["value"].max())
    assert "mean evaluation return in reward/episode (maximized)" in md
    assert "within 10% of the best (v >= 0.9 v*)" in md  # a relative tolerance, not 1 point of reward


@pytest.mark.slow
def test_resnet18_on_cifar100_with_a_cosine_schedule(workdir, monkeypatch):
    folder = write_cifar100(workdir / "data", n_train=16, n_test=8)
    trust_files(monkeypatch, folder)
    study, summary, md = _sweep_and_report(
        workdir, ["--task", "resnet18", "--dataset", "cifar100", "--batch-size", "8", "--schedule", "cosine",
                  "--warmup-epochs", "0.5"], "resnet18-cifar100")
    assert study.user_attrs["task_config"]["schedule"] == "cosine"
    assert "lr schedule cosine, 0.5 warm-up epochs (peak lr = the swept lr)" in md
    assert "CIFAR-100 (32x32 RGB), 16 train / 8 validation" in md


@pytest.mark.slow
def test_digits_mlp_still_reports_as_before(workdir):
    study, summary, md = _sweep_and_report(workdir, ["--train-size", "256", "--val-size", "64"], "digits-mlp")
    assert study.user_attrs["metric"] == "val_loss"
    assert "loss within 10% of the best (L <= 1.1 L*)" in md


@pytest.mark.parametrize("args, message", [
    (["--schedule", "cosine"], "task digits-mlp has no schedule; --schedule applies to fmnist-cnn, resnet18, char-lm"),
    (["--text-file", "x.txt"], "task digits-mlp has no text file; --text-file applies to char-lm"),
    (["--task", "resnet18", "--dataset", "fashion-mnist", "--schedule", "linear"], "unknown --schedule 'linear'"),
    (["--task", "cartpole", "--metric", "val_loss"], "task cartpole has no metric 'val_loss'; use --metric with one of: return, policy_entropy"),
    (["--task", "nowhere_module:make"], "no module named 'nowhere_module'"),
])
def test_workload_flags_a_task_does_not_take_are_one_line_errors(workdir, args, message):
    result = runner.invoke(app, ["sweep", *args, "--storage", STORAGE])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")
    assert not (workdir / "studies").exists()


def test_tasks_lists_each_workload_with_metric_data_budget_and_time(monkeypatch):
    import sensitivity.cli

    monkeypatch.setattr(sensitivity.cli.console, "width", 1200)  # one table row per line of output
    result = runner.invoke(app, ["tasks"], catch_exceptions=False)
    assert result.exit_code == 0
    out = result.output
    for name in ("digits-mlp", "fmnist-cnn", "resnet18", "char-lm", "cartpole"):
        assert name in out
    for phrase in ("val_loss (nats/example), minimized", "return (reward/episode), maximized",
                   "val_bpc (bits/char), minimized", "cifar10, cifar100, fashion-mnist", "CartPole-v1",
                   "10 epochs (one pass over the 1,437 training digits in a random order); batch 64"):
        assert phrase in out
    from sensitivity.tasks import TASKS

    for task in TASKS.values():  # the measured time per trial, where measured, is shown as written
        assert (task.cpu_trial_time or "not measured") in out


@pytest.mark.slow
def test_a_users_task_file_sweeps_end_to_end_from_a_subprocess(tmp_path):
    """As a user would: copy the example beside them, sweep it by module:factory, then report. The
    child runs with ``python -P`` so that, like the installed ``adamrag-sens`` script, it does not
    put the current directory on sys.path: finding the module there is get_task's doing."""
    shutil.copy(ROOT / "examples" / "my_task.py", tmp_path / "my_task.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "sensitivity.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)

    swept = cli("sweep", "--task", "my_task:make_task", "--optimizers", "adam,nag", "--lr", "1e-3,1e-2",
                "--beta1", "0.9", "--epochs", "1", "--storage", STORAGE)
    assert swept.returncode == 0, swept.stderr
    assert "study breast-cancer-mlp" in swept.stdout and "ran 4 trials" in swept.stdout
    reported = cli("report", "--storage", STORAGE, "--study", "breast-cancer-mlp", "--out", "rep")
    assert reported.returncode == 0, reported.stderr
    assert (tmp_path / "rep" / "report.html").is_file()
    study = optuna.load_study(study_name="breast-cancer-mlp", storage=f"sqlite:///{tmp_path}/studies/s.db")
    assert study.user_attrs["task"] == "my_task:make_task" and len(study.trials) == 4
    assert study.user_attrs["task_info"]["data"] == "scikit-learn breast cancer, 455 train / 114 validation"
    wrong = cli("sweep", "--task", "my_task:no_such_factory", "--storage", STORAGE)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        "error: --task my_task:no_such_factory: module 'my_task' has no attribute 'no_such_factory'; "
        "check the name after the colon"]


@pytest.mark.slow
def test_tasks_measure_times_a_trial_here(monkeypatch):
    import sensitivity.cli
    import sensitivity.tasks

    monkeypatch.setattr(sensitivity.cli.console, "width", 400)
    monkeypatch.setattr(sensitivity.tasks, "TASKS", {"digits-mlp": sensitivity.tasks.TASKS["digits-mlp"]})
    result = runner.invoke(app, ["tasks", "--measure"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "s here," in result.output and "CPU s (cpu, measured now)" in result.output
