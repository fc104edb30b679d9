"""The training loop: learning happens, runs are reproducible, divergence is caught and recorded."""

from __future__ import annotations

import math

import pytest
import torch

from sensitivity.errors import UserError
from sensitivity.records import TrialResult
from sensitivity.tasks import get_task
from sensitivity.train import resolve_device, train_trial

DIGITS = get_task("digits-mlp")


def _run(optimizer, hp, epochs=2, seed=0, **kw):
    return train_trial(DIGITS, DIGITS.config(), optimizer, hp, seed=seed, epochs=epochs, device="cpu", **{"divergence_factor": 5.0, **kw})


def test_adam_learns_digits_well_above_chance():
    result = _run("adam", {"lr": 1e-3}, epochs=3)
    assert not result.diverged
    assert result.initial["val_loss"] == pytest.approx(math.log(10), rel=0.1)  # ~uniform prediction at init
    assert result.metrics["val_loss"][-1] < 0.5 * result.initial["val_loss"]
    assert result.metrics["val_acc"][-1] > 0.85
    assert len(result.train_loss) == len(result.metrics["val_loss"]) == len(result.metrics["val_acc"]) == 3 == result.epochs_run
    assert result.steps == 3 * (1437 // 64)
    assert result.throughput > 0 and result.wall_time_s > 0


def test_same_seed_same_curve_other_seed_other_curve():
    a = _run("adamrag", {"lr": 3e-3}, seed=1)
    b = _run("adamrag", {"lr": 3e-3}, seed=1)
    c = _run("adamrag", {"lr": 3e-3}, seed=2)
    assert a.metrics == b.metrics and a.train_loss == b.train_loss
    assert a.metrics["val_loss"] != c.metrics["val_loss"]


def test_exploding_learning_rate_is_marked_diverged_and_stops_early():
    result = _run("nag", {"lr": 50.0, "beta1": 0.9}, epochs=5)
    assert result.diverged
    assert result.diverged_step > 0
    assert result.epochs_run < 5
    assert "non-finite" in result.diverged_reason or "initial" in result.diverged_reason
    # the objective of a diverged run is its initial loss: plottable, and "no progress"
    assert result.objective("val_loss") == result.initial["val_loss"]
    assert result.objective("val_acc") == result.initial["val_acc"]


def test_loss_far_above_initial_counts_as_diverged():
    # Adam at lr=1 on this MLP stays finite but blows the loss up by orders of magnitude
    result = _run("adam", {"lr": 1.0}, epochs=3, divergence_factor=5.0)
    assert result.diverged
    assert result.epochs_run <= 1


def test_on_epoch_hears_each_epoch_in_order():
    seen = []
    _run("adam", {"lr": 1e-3}, epochs=2, on_epoch=lambda e, m: seen.append((e, sorted(m))))
    assert seen == [(1, ["train_loss", "val_acc", "val_loss"]), (2, ["train_loss", "val_acc", "val_loss"])]


def test_user_attrs_round_trip_keeps_nan_as_nan():
    r = TrialResult(train_loss=[1.0, float("nan")], metrics={"val_loss": [2.0], "val_acc": [0.5]},
                    initial={"val_loss": 2.3, "val_acc": 0.1}, diverged=True)
    attrs = r.to_user_attrs()
    assert attrs["train_loss"] == [1.0, None]
    # each metric keeps the storage names classification trials always had
    assert attrs["val_loss"] == [2.0] and attrs["initial_val_loss"] == 2.3 and attrs["initial_val_acc"] == 0.1
    back = TrialResult.from_user_attrs(attrs)
    assert math.isnan(back.train_loss[1]) and back.diverged and back.metrics == {"val_loss": [2.0], "val_acc": [0.5]}
    assert back.initial == {"val_loss": 2.3, "val_acc": 0.1}


def test_any_metric_name_round_trips_through_user_attrs():
    r = TrialResult(train_loss=[0.5], metrics={"return": [120.0], "policy_entropy": [float("inf")]},
                    initial={"return": 21.5, "policy_entropy": 0.69}, epochs_run=1)
    back = TrialResult.from_user_attrs(r.to_user_attrs())
    assert back.metrics["return"] == [120.0] and math.isnan(back.metrics["policy_entropy"][0])
    assert back.initial == {"return": 21.5, "policy_entropy": 0.69}
    assert back.objective("return") == 120.0
    with pytest.raises(ValueError, match="val_loss"):
        back.objective("val_loss")


def test_a_device_that_is_not_there_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"


def test_validation_loss_far_above_initial_counts_as_diverged(monkeypatch):
    # a run whose training loss looks fine but whose evaluation explodes (as BatchNorm statistics
    # do after a huge step) is diverged, not a finite point at 1e6 on the sensitivity curve
    import dataclasses

    calls = []

    class Exploding(type(DIGITS)):
        def evaluate(self, config, model, data, autocast):
            calls.append(1)
            out = super().evaluate(config, model, data, autocast)
            return out if len(calls) == 1 else {"val_loss": 1e6, "val_acc": 0.1}

    task = Exploding(**{f.name: getattr(DIGITS, f.name) for f in dataclasses.fields(DIGITS)})
    result = train_trial(task, task.config(), "adam", {"lr": 1e-3}, seed=0, epochs=3, device="cpu", divergence_factor=5.0)
    assert result.diverged and result.epochs_run == 1
    assert "val_loss 1e+06 > 5 x initial" in result.diverged_reason
    assert result.objective("val_loss") == result.initial["val_loss"]


def _tiny_configs(tmp_path):
    """Each built-in task at a budget of a second or two on the CPU, on small data in its real format."""
    from tests.idx_files import write_fashion_mnist

    write_fashion_mnist(tmp_path / "fashion-mnist", n_train=64, n_test=32)
    text = tmp_path / "text.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 60)
    return {
        "digits-mlp": dict(train_size=256, val_size=64),
        "fmnist-cnn": dict(data_dir=str(tmp_path), train_size=64, val_size=32, batch_size=16),
        "resnet18": dict(dataset="fashion-mnist", data_dir=str(tmp_path), train_size=16, val_size=8, batch_size=8),
        "char-lm": dict(text_file=str(text), train_size=None, val_size=None, block_size=16, batch_size=8),
        "cartpole": dict(steps_per_epoch=2, batch_size=2, eval_episodes=2),
    }


@pytest.mark.parametrize("name", ["digits-mlp", "fmnist-cnn", pytest.param("resnet18", marks=pytest.mark.slow),
                                  "char-lm", "cartpole"])
def test_every_task_gives_the_same_curve_for_the_same_seed(tmp_path, name):
    task = get_task(name)
    cfg = task.config(**_tiny_configs(tmp_path)[name])
    lr = 1e-2 if name == "cartpole" else 1e-3
    run = lambda seed: train_trial(task, cfg, "adamrag", {"lr": lr}, seed=seed, epochs=1, divergence_factor=5.0)  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.metrics == b.metrics and a.train_loss == b.train_loss and a.initial == b.initial
    assert a.train_loss != c.train_loss
    assert set(a.metrics) == {m.name for m in task.metrics} and all(len(v) == 1 for v in a.metrics.values())
    assert a.throughput > 0


def test_the_test_pause_holds_a_trial_after_its_first_epoch_until_released(tmp_path, monkeypatch):
    import os
    import threading

    import sensitivity.train as train
    from tests.conftest import HUNG_S, TrialPause, wait_until

    pause = TrialPause(tmp_path / "pause")
    monkeypatch.setenv(train.TEST_PAUSE_ENV, str(pause.folder))
    monkeypatch.setattr(train, "_test_paused", False)  # as in a fresh process
    seen, results = [], []
    worker = threading.Thread(target=lambda: results.append(
        _run("adam", {"lr": 1e-3}, epochs=3, on_epoch=lambda e, m: seen.append(e))), daemon=True)
    worker.start()
    pids = wait_until(pause.paused_pids, "the trial to pause")
    assert pids == [os.getpid()] and seen == [1]  # held after the first epoch was handed on
    assert (pause.folder / f"{os.getpid()}.paused").read_text().strip() == str(os.getpid())
    pause.release()
    worker.join(HUNG_S)
    assert seen == [1, 2, 3] and results[0].epochs_run == 3

    for path in pause.folder.iterdir():
        path.unlink()
    monkeypatch.setattr(train, "TEST_PAUSE_CEILING_S", 0.0)  # were it to pause, it would not wait
    _run("adam", {"lr": 1e-3}, epochs=1)
    assert not list(pause.folder.iterdir())  # a later trial of the process does not pause
