"""Learning-rate schedules: the swept lr is the peak lr, and a schedule scales it step by step.

A task whose defaults hold ``schedule`` (and ``warmup_epochs``) accepts ``--schedule`` and
``--warmup-epochs``; the training loop then wraps the optimizer in a
:class:`torch.optim.lr_scheduler.LambdaLR` whose factor is :func:`lr_multiplier`. Every optimizer
of the registry keeps its lr in ``param_groups``, so one schedule serves them all.

Schedules (t: optimizer steps after warm-up, T: steps after warm-up in the whole run):

* ``constant``: 1.
* ``cosine``: 0.5 (1 + cos(pi t / T)), from 1 down to 0 at the last step (SGDR without restarts,
  Loshchilov & Hutter 2017, arXiv 1608.03983).
* ``step``: 1, then 0.1 from half of the run and 0.01 from three quarters (the CIFAR ResNet
  schedule of He et al. 2016, sec. 4.2: lr / 10 at 32k and 48k of 64k iterations).

Warm-up: the first ``warmup_epochs`` x steps-per-epoch steps ramp linearly, step k (from 0) using
(k + 1) / warm-up steps (Goyal et al. 2017, arXiv 1706.02677, sec. 2.2).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from sensitivity.errors import UserError, value_error

SCHEDULES = ("constant", "cosine", "step")
"""The schedule names ``--schedule`` accepts."""


def lr_multiplier(schedule: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The factor of the peak lr used by optimizer step ``step`` (counted from 0).

    Args:
        schedule: one of :data:`SCHEDULES`.
        step: optimizer steps already taken.
        total_steps: optimizer steps in the whole run (>= 1).
        warmup_steps: steps of linear warm-up at the start (0: none).

    Returns:
        A factor in (0, 1].  A step past the end keeps the last factor.

    Raises:
        ValueError: unknown schedule.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01


def check_schedule(config: dict[str, Any]) -> None:
    """Check a task configuration's ``schedule`` and ``warmup_epochs`` against its ``epochs``.

    Raises:
        UserError: unknown schedule, or a warm-up that is negative or not shorter than the run.
    """
    schedule = config.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise UserError(f"unknown --schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    warmup = float(config.get("warmup_epochs") or 0)
    epochs = int(config["epochs"])
    if not (0 <= warmup < epochs):
        raise value_error("--warmup-epochs", f"{warmup:g}", f"must be >= 0 and below --epochs {epochs}", f"{epochs / 10:g}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict[str, Any], steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The scheduler the training loop steps after every optimizer step, or None for a constant
    lr without warm-up (no scheduler at all, so a constant run is bit-identical to an unscheduled one).
    """
    factor = lr_factor_function(config, steps_per_epoch, epochs)
    if factor is None:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lr_factor_function(config: dict[str, Any], steps_per_epoch: int, epochs: int) -> Callable[[int], float] | None:
    """``step -> factor of the peak lr`` (step counted from 0) for a task configuration, or None
    for a constant lr without warm-up. :func:`build_scheduler` wraps it in ``LambdaLR``, which sets
    ``lr = peak lr * factor(step)`` before optimizer step ``step + 1``; a population
    (:mod:`sensitivity.population`) applies it to each member's lr the same way."""
    schedule = config.get("schedule", "constant")
    warmup_steps = round(float(config.get("warmup_epochs") or 0) * steps_per_epoch)
    if schedule == "constant" and warmup_steps == 0:
        return None
    total = steps_per_epoch * epochs
    return lambda step: lr_multiplier(schedule, step, total, warmup_steps)


def describe_schedule(config: dict[str, Any]) -> str:
    """``cosine, 2 warm-up epochs (peak lr = the swept lr)``, or "" for a task without a schedule."""
    if "schedule" not in config:
        return ""
    warmup = float(config.get("warmup_epochs") or 0)
    text = str(config["schedule"])
    if warmup:
        text += f", {warmup:g} warm-up epoch{'s' if warmup != 1 else ''}"
    return f"lr schedule {text} (peak lr = the swept lr)"
