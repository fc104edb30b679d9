"""Learning-rate schedules: the swept lr is the peak, warm-up ramps to it, cosine and step decay from it."""

from __future__ import annotations

import math

import pytest
import torch

from sensitivity.errors import UserError
from sensitivity.schedule import build_scheduler, check_schedule, describe_schedule, lr_multiplier
from sensitivity.tasks import get_task
from sensitivity.train import train_trial


def test_multipliers_by_hand():
    # 10 steps, 2 of warm-up: steps 0, 1 ramp to the peak; then 8 steps of decay
    assert [lr_multiplier("constant", s, 10, 2) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    cosine = [lr_multiplier("cosine", s, 10, 2) for s in range(10)]
    assert cosine[:2] == [0.5, 1.0]
    assert cosine[2:] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])
    # step: / 10 from half of the decay steps, / 100 from three quarters (He et al. 2016)
    assert [lr_multiplier("step", s, 8, 0) for s in range(8)] == [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="linear"):
        lr_multiplier("linear", 0, 10)


def test_the_optimizer_sees_the_scheduled_lr_at_each_step():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.4)
    sched = build_scheduler(opt, {"schedule": "cosine", "warmup_epochs": 1}, steps_per_epoch=2, epochs=3)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.4 * lr_multiplier("cosine", s, 6, 2) for s in range(6)]
    assert seen == pytest.approx(expected)
    assert max(seen) == pytest.approx(0.4)  # the peak is the swept lr


def test_constant_without_warmup_builds_no_scheduler():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler(opt, {"schedule": "constant", "warmup_epochs": 0}, 5, 2) is None
    assert build_scheduler(opt, {}, 5, 2) is None


def test_bad_schedules_are_user_errors():
    with pytest.raises(UserError, match="--schedule 'linear'.*constant, cosine, step"):
        check_schedule({"schedule": "linear", "epochs": 3})
    with pytest.raises(UserError, match="--warmup-epochs 3 must be >= 0 and below --epochs 3"):
        check_schedule({"schedule": "cosine", "warmup_epochs": 3, "epochs": 3})
    check_schedule({"schedule": "step", "warmup_epochs": 0.5, "epochs": 1})


def test_schedule_is_stated():
    assert describe_schedule({"schedule": "cosine", "warmup_epochs": 2}) == \
        "lr schedule cosine, 2 warm-up epochs (peak lr = the swept lr)"
    assert describe_schedule({"epochs": 3}) == ""
    resnet = get_task("resnet18")
    assert resnet.summary(resnet.config(dataset="cifar100", schedule="step")) == \
        "dataset cifar100; lr schedule step (peak lr = the swept lr)"


def test_a_schedule_changes_training_and_constant_does_not():
    digits = get_task("digits-mlp")
    run = lambda **kw: train_trial(digits, digits.config(**kw), "adam", {"lr": 3e-3}, seed=0, epochs=2, divergence_factor=5.0)  # noqa: E731
    plain = run()
    constant = run(schedule="constant", warmup_epochs=0)
    cosine = run(schedule="cosine", warmup_epochs=1)
    assert constant.metrics == plain.metrics
    assert cosine.metrics["val_loss"] != plain.metrics["val_loss"]
