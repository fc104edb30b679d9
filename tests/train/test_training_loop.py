"""The training loop: learning happens, runs are reproducible, divergence is caught and recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sensitivity.errors import UserError
from sensitivity.records import TrialResult
from sensitivity.tasks import TensorData, TensorTask, get_task
from sensitivity.train import recalibrate_batchnorm, resolve_device, train_trial

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


def test_training_loss_far_above_initial_counts_as_diverged():
    # Adam at lr=1 on this MLP stays finite but blows the training loss up by orders of magnitude
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
    assert back.objective("return", higher_is_better=True) == 120.0  # max(120, 21.5)
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


def test_poor_evaluation_with_stable_training_is_not_diverged():
    # a run whose training is stable but whose evaluation explodes (as lagging BatchNorm statistics
    # make it after a short budget) has a poor result, not a divergence: it runs to the end, and its
    # objective counts as L0, the value every run worse than its start gets
    import dataclasses

    calls = []

    class Exploding(type(DIGITS)):
        def evaluate(self, config, model, data, autocast):
            calls.append(1)
            out = super().evaluate(config, model, data, autocast)
            return out if len(calls) == 1 else {"val_loss": 1e6, "val_acc": 0.1}

    task = Exploding(**{f.name: getattr(DIGITS, f.name) for f in dataclasses.fields(DIGITS)})
    result = train_trial(task, task.config(), "adam", {"lr": 1e-3}, seed=0, epochs=3, device="cpu", divergence_factor=5.0)
    assert not result.diverged and result.diverged_reason == "" and result.epochs_run == 3
    assert result.metrics["val_loss"] == [1e6, 1e6, 1e6]  # the raw values are kept
    assert result.train_loss[-1] < result.initial["val_loss"]
    assert result.objective("val_loss") == result.initial["val_loss"]  # min(1e6, L0)


def test_divergence_threshold_is_the_epoch_training_loss_against_factor_times_l0():
    # Adam at lr 1 blows the MLP's training loss up while it stays finite. Read its first-epoch
    # training loss with a factor too large to trigger, then place the factor just below and just
    # above the ratio train_loss / L0: only the first run diverges, after epoch 1.
    free = _run("adam", {"lr": 1.0}, epochs=1, divergence_factor=1e12)
    assert not free.diverged and math.isfinite(free.train_loss[0])
    ratio = free.train_loss[0] / free.initial["val_loss"]
    assert ratio > 5  # what makes this lr a divergence at the default factor
    below = _run("adam", {"lr": 1.0}, epochs=1, divergence_factor=ratio * 0.99)
    above = _run("adam", {"lr": 1.0}, epochs=1, divergence_factor=ratio * 1.01)
    assert below.diverged and below.epochs_run == 1 and "mean training loss" in below.diverged_reason
    assert below.train_loss == free.train_loss  # the same run, read against another limit
    assert not above.diverged and above.diverged_reason == ""


class _BoundedHead(nn.Module):
    """Logits ``x @ W + tanh(p)`` with W a fixed buffer: the loss stays finite whatever ``p`` holds."""

    def __init__(self, n_in: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(n_in, n_classes))
        self.p = nn.Parameter(torch.full((n_classes,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + torch.tanh(self.p)


def _tensor_task(model_fn, *, n_train=32, n_val=16, n_in=4, classes=3, shift=5.0, batch_size=32, **defaults) -> TensorTask:
    """A tiny classification task on seeded Gaussian data (mean ``shift``, std 3); one epoch is
    ``n_train // batch_size`` steps, no augmentation."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(n_train + n_val, n_in, generator=gen) * 3.0 + shift
    y = torch.randint(0, classes, (n_train + n_val,), generator=gen)
    data = TensorData(x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:], y_val=y[n_train:],
                      num_classes=classes, description="synthetic")
    return TensorTask(name="tiny", description="tiny", defaults={"epochs": 1, "batch_size": batch_size, **defaults},
                      load=lambda config: data, build_model=lambda config, d: model_fn(n_in, classes))


def test_a_non_finite_parameter_is_diverged_though_the_loss_stays_finite():
    # SGD at an infinite lr sends p to +-inf in the epoch's one step; the loss, taken before the step,
    # is finite, and the bounded head keeps the evaluation finite too: only the parameter check sees it
    task = _tensor_task(_BoundedHead)
    result = train_trial(task, task.config(), "sgd", {"lr": math.inf, "beta1": 0.0}, seed=0, epochs=3,
                         device="cpu", divergence_factor=5.0)
    assert result.diverged and result.epochs_run == 1 and result.steps == 1
    assert result.diverged_reason == "non-finite parameter p after epoch 1"
    assert math.isfinite(result.train_loss[0]) and result.train_loss[0] < 5.0 * result.initial["val_loss"]
    assert math.isfinite(result.metrics["val_loss"][0])
    assert result.objective("val_loss") == result.initial["val_loss"]


# ---- precise BN: BatchNorm statistics recomputed before each evaluation -------------------------

def test_recalibrate_batchnorm_sets_running_stats_to_the_mean_of_batch_statistics():
    # Two batches of sizes 5 and 7: precise BN averages their means, and their unbiased variances,
    # with equal weights (torch's cumulative average); worked out here in numpy.
    rng = np.random.default_rng(0)
    b1 = rng.normal(3.0, 2.0, size=(5, 3)).astype(np.float32)
    b2 = rng.normal(-1.0, 0.5, size=(7, 3)).astype(np.float32)
    bn = nn.BatchNorm1d(3)
    model = nn.Sequential(bn, nn.Linear(3, 2))
    weights = [p.detach().clone() for p in model.parameters()]
    model.eval()
    recalibrate_batchnorm(model, [torch.from_numpy(b1), torch.from_numpy(b2)])
    want_mean = (b1.mean(0) + b2.mean(0)) / 2
    want_var = (b1.var(0, ddof=1) + b2.var(0, ddof=1)) / 2
    np.testing.assert_allclose(bn.running_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), want_var, rtol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # restored
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    # and it is what torch's own update_bn computes on (input, target) batches
    other = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2))
    pairs = [(torch.from_numpy(b1), None), (torch.from_numpy(b2), None)]
    torch.optim.swa_utils.update_bn(pairs, other)
    recalibrate_batchnorm(model, pairs)
    assert torch.allclose(other[0].running_var, bn.running_var) and torch.allclose(other[0].running_mean, bn.running_mean)


def test_recalibrate_batchnorm_draws_no_batch_for_a_model_without_batchnorm():
    def batches():
        raise AssertionError("a batch was drawn")
        yield  # pragma: no cover

    recalibrate_batchnorm(nn.Linear(3, 2), batches())


def _bn_model(n_in: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(n_in, affine=False), nn.Linear(n_in, classes))


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))


def _expected_val_loss(task: TensorTask, seed: int, mean: np.ndarray, var: np.ndarray) -> float:
    """Validation loss of the task's freshly seeded model with BatchNorm statistics (mean, var), in numpy."""
    data = task.load({})
    torch.manual_seed(seed)
    linear = task.build_model({}, data)[1]
    w, b = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    z = (data.x_val.double().numpy() - mean) / np.sqrt(var + 1e-5)
    return _cross_entropy(z @ w.T + b, data.y_val.numpy())


def test_precise_bn_evaluates_with_the_training_set_statistics():
    # lr 0: the weights stay at their initialisation. The training set is one batch, so precise BN
    # (asked for 4 batches, capped at one epoch's 1) normalises with the training set's mean and
    # unbiased variance; without it the initial evaluation uses the initial running stats (0, 1)
    # and the one after epoch 1 their update by one step of momentum 0.1.
    on = _tensor_task(_bn_model, precise_bn=4)
    off = _tensor_task(_bn_model, precise_bn=0)
    x = on.load({}).x_train.double().numpy()
    mean, var = x.mean(0), x.var(0, ddof=1)
    kw = dict(seed=0, epochs=1, device="cpu", divergence_factor=5.0)
    r_on = train_trial(on, on.config(), "sgd", {"lr": 0.0, "beta1": 0.0}, **kw)
    r_off = train_trial(off, off.config(), "sgd", {"lr": 0.0, "beta1": 0.0}, **kw)
    assert r_on.initial["val_loss"] == pytest.approx(_expected_val_loss(on, 0, mean, var), rel=1e-5)
    assert r_on.metrics["val_loss"][0] == pytest.approx(r_on.initial["val_loss"], rel=1e-6)
    assert r_off.initial["val_loss"] == pytest.approx(_expected_val_loss(off, 0, np.zeros(4), np.ones(4)), rel=1e-5)
    assert r_off.metrics["val_loss"][0] == pytest.approx(_expected_val_loss(off, 0, 0.1 * mean, 0.9 + 0.1 * var), rel=1e-5)
    assert r_off.initial["val_loss"] > r_on.initial["val_loss"] + 0.5  # inputs centred at 5: stale stats hurt


def test_precise_bn_leaves_training_unchanged():
    # the recalibration draws its batches with a generator of its own and only touches running
    # statistics, which training-mode forward passes do not read: the training curve is identical
    on = _tensor_task(_bn_model, n_train=64, batch_size=16, precise_bn=2)
    off = _tensor_task(_bn_model, n_train=64, batch_size=16, precise_bn=0)
    kw = dict(seed=3, epochs=3, device="cpu", divergence_factor=5.0)
    a = train_trial(on, on.config(), "adam", {"lr": 0.05}, **kw)
    b = train_trial(off, off.config(), "adam", {"lr": 0.05}, **kw)
    assert a.train_loss == b.train_loss and a.steps == b.steps == 12
    assert a.metrics["val_loss"] != b.metrics["val_loss"]


def _tiny_configs(tmp_path):
    """Each built-in task at a budget of a second or two on the CPU, on small data in its real format."""
    from tests.helpers.idx_files import write_fashion_mnist

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


@pytest.mark.parametrize("name", ["digits-mlp", pytest.param("fmnist-cnn", marks=pytest.mark.slow), pytest.param("resnet18", marks=pytest.mark.slow),
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

    pause = TrialPause(tmp_path / "pause").in_this_process(monkeypatch)
    seen, results = [], []
    worker = threading.Thread(target=lambda: results.append(
        _run("adam", {"lr": 1e-3}, epochs=3, on_epoch=lambda e, m: seen.append(e))), daemon=True)
    worker.start()
    pids = wait_until(pause.paused_pids, "the trial to pause")
    assert pids == [os.getpid()] and seen == [1]  # held after the first epoch was handed on
    assert (pause.folder / f"{os.getpid()}.1.paused").read_text().strip() == str(os.getpid())
    pause.release()
    worker.join(HUNG_S)
    assert seen == [1, 2, 3] and results[0].epochs_run == 3

    for path in pause.folder.iterdir():
        path.unlink()
    monkeypatch.setattr(train, "TEST_PAUSE_CEILING_S", 0.0)  # were it to pause, it would not wait
    _run("adam", {"lr": 1e-3}, epochs=1)
    assert not list(pause.folder.iterdir())  # a later trial of the process does not pause


def test_the_test_pause_holds_a_trial_after_each_listed_epoch_until_that_epoch_is_released(tmp_path, monkeypatch):
    import threading

    from tests.conftest import HUNG_S, TrialPause, wait_until

    pause = TrialPause(tmp_path / "pause", epochs=(2, 3)).in_this_process(monkeypatch)
    seen, results = [], []
    worker = threading.Thread(target=lambda: results.append(
        _run("adam", {"lr": 1e-3}, epochs=4, on_epoch=lambda e, m: seen.append(e))), daemon=True)
    worker.start()
    wait_until(lambda: pause.paused_pids(2), "the trial to pause after epoch 2")
    assert seen == [1, 2] and not pause.paused_pids(1)
    pause.release(2)
    wait_until(lambda: pause.paused_pids(3), "the trial to pause after epoch 3")
    assert seen == [1, 2, 3]
    pause.release(3)
    worker.join(HUNG_S)
    assert seen == [1, 2, 3, 4] and results[0].epochs_run == 4

