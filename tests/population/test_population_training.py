"""Population training against train_trial: each member's result bit-identical on the CPU, divergence
isolated per member, per-member seeds and schedules, and where populations fall back to the single loop."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sensitivity.population import Point, population_support, train_points, train_population
from sensitivity.tasks.base import TensorData, TensorTask
from sensitivity.tasks.digits import DIGITS_MLP
from sensitivity.train import train_trial

EPOCHS = 2
CONFIG = DIGITS_MLP.config(train_size=256, val_size=128, batch_size=64, hidden=32)  # 4 steps per epoch
FACTOR = 3.0
COMPARED = ("train_loss", "metrics", "initial", "diverged", "diverged_reason", "diverged_step", "epochs_run", "steps",
            "device")


def _single(config, optimizer, point):
    return train_trial(DIGITS_MLP, config, optimizer, point.hyperparameters, seed=point.seed, epochs=EPOCHS,
                       divergence_factor=FACTOR)


def _assert_same_as_single(config, optimizer, points, results):
    assert len(results) == len(points)
    for point, got in zip(points, results):
        want = _single(config, optimizer, point)
        for field in COMPARED:
            assert getattr(got, field) == getattr(want, field), (optimizer, point, field)


POINTS = {
    "adamrag": [Point({"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "gamma": 0.5}, 0),
                Point({"lr": 3e-3, "beta1": 0.5, "beta2": 0.99, "gamma": 0.9, "weight_decay": 1e-2}, 1),
                Point({"lr": 3e-2, "beta1": 0.0, "beta2": 0.9, "gamma": 0.0}, 2)],
    "adam": [Point({"lr": 1e-2, "beta1": 0.9, "beta2": 0.999}, 0),
             Point({"lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "weight_decay": 1e-3}, 5)],
    "adamw": [Point({"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1}, 0),
              Point({"lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "weight_decay": 0.0}, 1)],
    "nag": [Point({"lr": 0.1, "beta1": 0.9}, 0), Point({"lr": 0.3, "beta1": 0.0, "weight_decay": 1e-3}, 1),
            Point({"lr": 0.03, "beta1": 0.5}, 0)],
    "sgd": [Point({"lr": 0.1, "beta1": 0.9}, 3), Point({"lr": 0.05, "beta1": 0.0}, 1)],
    "lion": [Point({"lr": 1e-3, "beta1": 0.9, "beta2": 0.99}, 0),
             Point({"lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "weight_decay": 0.1}, 2)],
}


@pytest.mark.parametrize("optimizer", list(POINTS))
def test_each_member_equals_its_single_trial_bit_for_bit(optimizer):
    points = POINTS[optimizer]
    results = train_population(DIGITS_MLP, CONFIG, optimizer, points, epochs=EPOCHS, divergence_factor=FACTOR)
    _assert_same_as_single(CONFIG, optimizer, points, results)
    for r in results:
        assert r.wall_time_s > 0 and r.throughput > 0


def test_members_sharing_a_seed_start_equal_and_differ_only_by_their_hyperparameters():
    points = [Point({"lr": 1e-2}, 7), Point({"lr": 1e-2}, 7), Point({"lr": 2e-2}, 7)]
    a, b, c = train_population(DIGITS_MLP, CONFIG, "adam", points, epochs=EPOCHS, divergence_factor=FACTOR)
    assert a.initial == b.initial == c.initial
    assert a.metrics == b.metrics and a.metrics != c.metrics


def test_a_scheduled_lr_per_member_equals_the_single_trials_lambda_lr():
    config = {**CONFIG, "schedule": "cosine", "warmup_epochs": 1}
    points = POINTS["adamrag"][:2]
    results = train_population(DIGITS_MLP, config, "adamrag", points, epochs=EPOCHS, divergence_factor=FACTOR)
    _assert_same_as_single(config, "adamrag", points, results)
    unscheduled = train_population(DIGITS_MLP, CONFIG, "adamrag", points, epochs=EPOCHS, divergence_factor=FACTOR)
    assert results[0].metrics != unscheduled[0].metrics  # the schedule took effect


def test_diverging_members_stop_and_leave_the_others_bit_identical():
    healthy = POINTS["adam"]
    injected = [Point({"lr": 1e30}, 0), healthy[0], Point({"lr": 1e3}, 1), healthy[1]]
    with_bad = train_population(DIGITS_MLP, CONFIG, "adam", injected, epochs=EPOCHS, divergence_factor=FACTOR)
    alone = train_population(DIGITS_MLP, CONFIG, "adam", healthy, epochs=EPOCHS, divergence_factor=FACTOR)
    for got, want in zip([with_bad[1], with_bad[3]], alone):
        for field in COMPARED:
            assert getattr(got, field) == getattr(want, field), field
        assert not got.diverged
    for bad, point in ((with_bad[0], injected[0]), (with_bad[2], injected[2])):
        want = _single(CONFIG, "adam", point)
        assert bad.diverged and want.diverged
        assert (bad.diverged_step, bad.diverged_reason, bad.epochs_run) == (
            want.diverged_step, want.diverged_reason, want.epochs_run)
    assert with_bad[0].diverged_reason.startswith("non-finite training loss by step")
    assert with_bad[0].epochs_run == 0


def test_train_points_runs_populations_of_k_and_keeps_the_order():
    points = POINTS["nag"] + POINTS["sgd"]
    seen = []
    run = train_points(DIGITS_MLP, CONFIG, "nag", points, epochs=1, divergence_factor=FACTOR, population=2,
                       on_epoch=lambda i, epoch, values: seen.append((i, epoch, values["val_loss"])))
    assert (run.ran, run.population_size) == ("population", 2)
    assert sorted(i for i, _, _ in seen) == list(range(len(points)))
    for i, point in enumerate(points):
        want = train_trial(DIGITS_MLP, CONFIG, "nag", point.hyperparameters, seed=point.seed, epochs=1,
                           divergence_factor=FACTOR)
        assert run.results[i].metrics == want.metrics
        assert [v for j, _, v in seen if j == i] == want.metrics["val_loss"]


# ---- where populations do not run ------------------------------------------------------------------
def _tiny_task(build, **kw) -> TensorTask:
    def load(config):
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 8, generator=gen), torch.randint(0, 3, (64,), generator=gen)
        return TensorData(x, y, x[:16], y[:16], num_classes=3, description="random")

    return TensorTask(name="tiny", description="tiny", defaults={"epochs": 1, "batch_size": 16}, load=load,
                      build_model=lambda config, data: build(), **kw)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = self.proj(x).view(x.shape[0], 1, 2, 4)
        h = nn.functional.scaled_dot_product_attention(h, h, h, is_causal=True)
        return self.out(h.reshape(x.shape[0], 8))


def test_support_decisions_name_the_reason():
    from sensitivity.tasks.cartpole import CARTPOLE

    ok, reason = population_support(DIGITS_MLP, "cpu", CONFIG)
    assert ok and reason == ""
    ok, reason = population_support(CARTPOLE, "cpu")
    assert not ok and "not a TensorTask" in reason
    ok, reason = population_support(_tiny_task(lambda: nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4),
                                                                     nn.Linear(4, 3))), "cpu")
    assert not ok and "BatchNorm" in reason
    ok, reason = population_support(_tiny_task(lambda: nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5),
                                                                     nn.Linear(8, 3))), "cpu")
    assert not ok and "cannot be batched" in reason and "random" in reason.lower()
    ok, reason = population_support(_tiny_task(lambda: nn.Linear(8, 3), population_size=1), "cpu")
    assert not ok and "population_size=1" in reason
    ok, reason = population_support(_tiny_task(_Attention), "cpu")
    assert not ok and "scaled_dot_product" in reason, reason


def test_a_model_whose_batched_gradients_round_otherwise_is_refused_on_the_cpu():
    conv = _tiny_task(lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 4)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                            nn.Flatten(), nn.Linear(128, 3)))
    model = conv.build_model(conv.config(), conv.load(conv.config()))
    ok, reason = population_support(conv, "cpu")
    if ok:  # the probe said the batched gradients are exact: then the members must be
        run = train_points(dataclasses.replace(conv, population_size=2), conv.config(), "adam",
                           [Point({"lr": 1e-2}, 0), Point({"lr": 1e-3}, 1)], epochs=1, divergence_factor=FACTOR)
        want = train_trial(conv, conv.config(), "adam", {"lr": 1e-3}, seed=1, epochs=1, divergence_factor=FACTOR)
        assert run.results[1].metrics == want.metrics
    else:
        assert "differ from the single model" in reason and any(n in reason for n, _ in model.named_parameters())


def test_unsupported_or_undeclared_tasks_run_the_single_loop_and_say_why():
    task = _tiny_task(lambda: nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)))
    points = [Point({"lr": 1e-2}, 0), Point({"lr": 1e-3}, 1)]
    run = train_points(task, task.config(), "adam", points, epochs=1, divergence_factor=FACTOR, population=8)
    assert (run.ran, run.population_size) == ("single", 1) and "BatchNorm" in run.reason
    want = train_trial(task, task.config(), "adam", {"lr": 1e-3}, seed=1, epochs=1, divergence_factor=FACTOR)
    assert run.results[1].metrics == want.metrics
    undeclared = dataclasses.replace(DIGITS_MLP, population_size=None)
    run = train_points(undeclared, CONFIG, "adam", points, epochs=1, divergence_factor=FACTOR)
    assert run.ran == "single" and "declares no population size" in run.reason
    run = train_points(DIGITS_MLP, CONFIG, "adam", points, epochs=1, divergence_factor=FACTOR, population=1)
    assert run.ran == "single" and "size 1" in run.reason
    declared = dataclasses.replace(undeclared, population_size=4)
    run = train_points(declared, CONFIG, "adam", points, epochs=1, divergence_factor=FACTOR)
    assert (run.ran, run.population_size) == ("population", 4)
