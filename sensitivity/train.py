"""One trial: train a task's model with one optimizer and one hyperparameter point.

The loop reads top to bottom: seed, build, evaluate at initialisation (L0), then epochs of
shuffled mini-batches drawn by indexing tensors that already sit on the device, with a divergence
check, and an evaluation after each epoch. It returns a :class:`~sensitivity.records.TrialResult`
and knows nothing of Optuna.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn

from sensitivity import interrupt
from sensitivity.errors import UserError
from sensitivity.optim.registry import build_optimizer
from sensitivity.records import TrialResult
from sensitivity.tasks import Task, TaskData

EpochCallback = Callable[[int, dict[str, float]], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; otherwise the named device, checked to exist.

    Raises:
        UserError: the device is not there (e.g. ``cuda`` on a machine without a GPU).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) visible; use cuda:0..."
            )
    elif dev.type != "cpu":
        raise UserError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


@functools.lru_cache(maxsize=4)
def _load_cached(task_name: str, config_json: str) -> TaskData:
    from sensitivity.tasks import get_task

    return get_task(task_name).load(json.loads(config_json))


def load_task_data(task: Task, config: dict[str, Any], device: torch.device) -> TaskData:
    """The task's data on ``device``, loaded once per process and configuration."""
    data = _load_cached(task.name, json.dumps(config, sort_keys=True, default=str))
    fmt = torch.channels_last if (task.image_model and device.type == "cuda") else None
    return _to_device_cached(data, str(device), fmt)


_DEVICE_CACHE: dict[tuple[int, str], TaskData] = {}


def _to_device_cached(data: TaskData, device: str, fmt: torch.memory_format | None) -> TaskData:
    key = (id(data), device)
    if key not in _DEVICE_CACHE:
        if len(_DEVICE_CACHE) >= 2:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = data.to(torch.device(device), fmt) if device != "cpu" else data
    return _DEVICE_CACHE[key]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast: bool) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` on (x, y), in eval mode."""
    model.eval()
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(xb)
        total_loss += nn.functional.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    return float(total_loss) / len(x), float(correct) / len(x)


def train_trial(
    task: Task,
    config: dict[str, Any],
    optimizer: str,
    hyperparameters: dict[str, float],
    *,
    seed: int,
    epochs: int,
    device: str | torch.device = "cpu",
    divergence_factor: float,
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Train ``task``'s model with ``optimizer`` at ``hyperparameters`` and return the curves.

    Args:
        task: the workload (see :mod:`sensitivity.tasks`).
        config: the task's configuration (``task.config(...)``); ``batch_size`` is used here.
        optimizer: catalog name (``adamrag``, ``adam``, ``nag``, ``lion``, ...).
        hyperparameters: ``lr`` and any of ``beta1, beta2, gamma, weight_decay``.
        seed: seeds the model initialisation, the batch order and the augmentation.
        epochs: passes over the training set (>= 1).
        device: where to train; images use bf16 autocast and channels_last on CUDA.
        divergence_factor: the run is stopped and marked diverged when a training loss is
            non-finite, or when an epoch's mean training loss or its validation loss exceeds this
            multiple of L0 (the validation loss at initialisation). A sweep passes its spec's
            (:attr:`~sensitivity.study.spec.StudySpec.divergence_factor`, where its default lives).
        on_epoch: called after each epoch with ``(epoch, {"train_loss", "val_loss", "val_acc"})``.

    Returns:
        A :class:`TrialResult` with per-epoch curves; a diverged run has ``diverged=True`` and
        the curves up to the epoch where it stopped.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    with _cpu_threads(task.cpu_threads if dev.type == "cpu" else None):
        return _train(task, config, optimizer, hyperparameters, seed, epochs, dev, divergence_factor, on_epoch)


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads, restoring the previous count after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(task: Task, config: dict[str, Any], optimizer: str, hyperparameters: dict[str, float], seed: int,
           epochs: int, dev: torch.device, divergence_factor: float, on_epoch: EpochCallback | None) -> TrialResult:
    t_start = time.perf_counter()
    data = load_task_data(task, config, dev)
    torch.manual_seed(seed)
    model = task.build_model(config, data).to(dev)
    use_cuda = dev.type == "cuda"
    autocast = use_cuda and task.image_model
    if autocast:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(optimizer, model.parameters(), hyperparameters)
    gen = torch.Generator(device=dev).manual_seed(seed)
    batch_size = int(config.get("batch_size", 128))
    eval_batch = max(batch_size, 1024)
    n_train = len(data.x_train)
    steps_per_epoch = max(1, n_train // batch_size)  # drop the last partial batch
    check_every = 1 if not use_cuda else 25

    initial_loss, initial_acc = evaluate(model, data.x_val, data.y_val, eval_batch, autocast)
    result = TrialResult(
        train_loss=[], val_loss=[], val_acc=[], initial_val_loss=initial_loss,
        initial_val_acc=initial_acc, device=str(dev),
    )
    train_seconds = 0.0
    model.train()
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        order = torch.randperm(n_train, device=dev, generator=gen)
        loss_sum = torch.zeros((), device=dev)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            if task.augment is not None:
                xb = task.augment(xb, gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            interrupt.check()  # a Ctrl-C that Python swallowed still stops the run here
            result.steps += 1
            loss_sum += loss.detach()
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                if not math.isfinite(float(loss_sum)):
                    result.diverged = True
                    result.diverged_step = result.steps
                    result.diverged_reason = f"non-finite training loss by step {result.steps}"
                    break
        if use_cuda:
            torch.cuda.synchronize(dev)
        train_seconds += time.perf_counter() - t_epoch
        if result.diverged:
            break
        train_loss = float(loss_sum) / steps_per_epoch
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, eval_batch, autocast)
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        result.val_acc.append(val_acc)
        result.epochs_run = epoch
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc})
        limit = divergence_factor * initial_loss
        reason = ""
        if not math.isfinite(val_loss):
            reason = f"non-finite validation loss after epoch {epoch}"
        elif train_loss > limit:
            reason = f"epoch {epoch} mean training loss {train_loss:.3g} > {divergence_factor:g} x initial {initial_loss:.3g}"
        elif val_loss > limit:  # e.g. BatchNorm statistics blown up by a huge step: training loss alone misses it
            reason = f"epoch {epoch} validation loss {val_loss:.3g} > {divergence_factor:g} x initial {initial_loss:.3g}"
        if reason:
            result.diverged = True
            result.diverged_step = result.steps
            result.diverged_reason = reason
            break
    result.wall_time_s = time.perf_counter() - t_start
    result.throughput = result.steps * batch_size / train_seconds if train_seconds > 0 else 0.0
    return result
