"""One trial: train a task's model with one optimizer and one hyperparameter point.

The loop reads top to bottom: seed, build, evaluate at initialisation (the task's metrics, L0
among them), then epochs of the task's batches (for tensor tasks: shuffled mini-batches drawn by
indexing tensors that already sit on the device), one optimizer step and one lr-schedule step per
batch, with a divergence check, and an evaluation after each epoch. What a batch, a loss and an
evaluation are is the task's business (:class:`~sensitivity.tasks.Task`); seeding, the optimizer,
the schedule, autocast, divergence and timing are the loop's. It returns a
:class:`~sensitivity.records.TrialResult` and knows nothing of Optuna.

Divergence is a property of training: a non-finite training loss or parameter (checked here), or
the task's rule (:meth:`~sensitivity.tasks.Task.divergence`; by default an epoch's mean training
loss above ``divergence_factor`` x L0). A model whose evaluation is poor while its training is
stable has a poor result, not a divergence. With ``precise_bn`` in the task's configuration,
BatchNorm running statistics are recomputed on training batches before every evaluation
(:func:`recalibrate_batchnorm`), so that the model evaluated is the one the weights define, not
running averages that lag weights moving fast.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from sensitivity import interrupt
from sensitivity.errors import UserError
from sensitivity.optim.registry import build_optimizer, optimizer_settings
from sensitivity.records import TrialResult
from sensitivity.schedule import build_scheduler
from sensitivity.tasks import Task

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


_DATA_CACHE: dict[tuple[int, str], Any] = {}
_DEVICE_CACHE: dict[tuple[int, str], Any] = {}


def load_task_data(task: Task, config: dict[str, Any], device: torch.device) -> Any:
    """The task's data on ``device``, loaded once per process, task and configuration.

    Raises:
        UserError: from the task's ``load`` (data missing or unreadable).
    """
    key = (id(task), json.dumps(config, sort_keys=True, default=str))
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 4:
            _DATA_CACHE.clear()
            _DEVICE_CACHE.clear()
        _DATA_CACHE[key] = (task, task.load(config))  # the task is held so that its id stays its own
    data = _DATA_CACHE[key][1]
    if device.type == "cpu":
        return data
    fmt = torch.channels_last if task.autocast and device.type == "cuda" else None
    dkey = (id(data), str(device))
    if dkey not in _DEVICE_CACHE:
        if len(_DEVICE_CACHE) >= 2:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[dkey] = data.to(device, fmt)
    return _DEVICE_CACHE[dkey]


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
        config: the task's configuration (``task.config(...)``): ``batch_size``, and ``schedule``
            / ``warmup_epochs`` for tasks with a learning-rate schedule (the swept lr is the peak).
        optimizer: catalog name (``adamrag``, ``adam``, ``nag``, ``lion``, ...).
        hyperparameters: ``lr`` and any of ``beta1, beta2, gamma, weight_decay``.
        seed: seeds the model initialisation and every random draw of the task's batches (order,
            augmentation, sampled actions and environment seeds): the same task, optimizer,
            hyperparameters and seed give the same curve on the CPU.
        epochs: epochs to train (>= 1); what an epoch is the task says (``task.epoch``).
        device: where to train; tasks with ``autocast`` use bf16 autocast and channels_last on CUDA.
        divergence_factor: the factor of the task's divergence rule (by default: the run is
            stopped and marked diverged when an epoch's mean training loss exceeds this multiple
            of the reference metric's initial value L0). A non-finite training loss or parameter
            always stops the run. A sweep passes its spec's
            (:attr:`~sensitivity.study.spec.StudySpec.divergence_factor`, where its default lives).
            ``config["precise_bn"]`` (default 0): before each evaluation, L0's included, recompute
            BatchNorm statistics on this many training batches (at most one epoch's; see
            :func:`recalibrate_batchnorm`), the task's own batches drawn by a generator of their
            own seeded with ``seed``: the same batches before every evaluation, and the training
            run itself unchanged.
        on_epoch: called after each epoch with ``(epoch, {"train_loss": ..., <each metric>: ...})``.

    Returns:
        A :class:`TrialResult` with per-epoch curves; a diverged run has ``diverged=True`` and
        the curves up to the epoch where it stopped.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    with cpu_threads_limit(task.cpu_threads if dev.type == "cpu" else None):
        return _train(task, config, optimizer, hyperparameters, seed, epochs, dev, divergence_factor, on_epoch)


@contextlib.contextmanager
def cpu_threads_limit(n: int | None) -> Iterator[None]:
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
    autocast = use_cuda and task.autocast
    if autocast:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(optimizer, model.parameters(), hyperparameters)
    gen = torch.Generator(device=dev).manual_seed(seed)
    steps_per_epoch = task.steps_per_epoch(config, data)
    scheduler = build_scheduler(opt, config, steps_per_epoch, epochs)  # None: constant lr
    check_every = 1 if not use_cuda else 25  # a host sync every step would stall the GPU
    precise_bn = min(int(config.get("precise_bn") or 0), steps_per_epoch)

    def evaluate() -> dict[str, float]:
        if precise_bn > 0:  # the same training batches before every evaluation; training's own draws untouched
            batches = task.batches(config, data, model, torch.Generator(device=dev).manual_seed(seed))
            recalibrate_batchnorm(model, itertools.islice(batches, precise_bn),
                                  lambda batch: task.loss(model, batch), autocast)
        return task.evaluate(config, model, data, autocast)

    initial = evaluate()
    result = TrialResult(train_loss=[], metrics={m.name: [] for m in task.metrics}, initial=initial, device=str(dev),
                         optimizer_settings=optimizer_settings(opt))
    train_seconds, examples = 0.0, 0
    model.train()
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        for i, batch in enumerate(task.batches(config, data, model, gen)):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                loss, n_examples = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            interrupt.check()  # a Ctrl-C that Python swallowed still stops the run here
            result.steps += 1
            examples += n_examples
            loss_sum += loss.detach().float()
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
        metrics = evaluate()
        result.train_loss.append(train_loss)
        for name in result.metrics:
            result.metrics[name].append(metrics[name])
        result.epochs_run = epoch
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": train_loss, **metrics})
        pause_for_test(epoch)
        reason = _non_finite_parameter(model, epoch) or task.divergence(
            epoch, train_loss, metrics, initial, divergence_factor)
        if reason:
            result.diverged = True
            result.diverged_step = result.steps
            result.diverged_reason = reason
            break
    result.wall_time_s = time.perf_counter() - t_start
    result.throughput = examples / train_seconds if train_seconds > 0 else 0.0
    return result


def has_batchnorm(model: nn.Module) -> bool:
    """True when ``model`` holds a BatchNorm layer (``nn.BatchNorm1d/2d/3d``, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any] | None = None,
                          autocast: bool = False) -> None:
    """Recompute every BatchNorm layer's running statistics from ``batches`` ("precise BN").

    Each layer's ``running_mean`` becomes the mean over the batches of its per-batch input means,
    and ``running_var`` the mean of its per-batch unbiased variances (torch's cumulative average,
    ``momentum=None``): what :func:`torch.optim.swa_utils.update_bn` computes, with the forward pass
    left to the caller so that any task's batches fit. The layers' momenta and the model's
    train/eval mode are restored after; parameters are not touched. Precise BN: Wu & Johnson 2021,
    "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576, sec. 3.

    Args:
        model: any module; without BatchNorm layers nothing is done and no batch is drawn.
        batches: batches on the model's device, e.g. the task's training batches.
        forward: runs the model on one batch (e.g. ``lambda b: task.loss(model, b)``); None:
            ``model(batch)``, or ``model(batch[0])`` for a tuple or list, as ``update_bn`` does.
        autocast: forward under bf16 autocast, as the training steps are on CUDA.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    if forward is None:
        forward = lambda b: model(b[0] if isinstance(b, (list, tuple)) else b)  # noqa: E731
    momenta = {m: m.momentum for m in layers}
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    device_type = layers[0].running_mean.device.type if layers[0].running_mean is not None else "cpu"
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            for batch in batches:
                forward(batch)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)


def _non_finite_parameter(model: nn.Module, epoch: int) -> str:
    """"" when every parameter is finite, else a phrase naming the first one that is not."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f"non-finite parameter {name} after epoch {epoch}"
    return ""


TEST_PAUSE_ENV = "ADAMRAG_SENS_TEST_PAUSE_DIR"
"""Test-only: a folder that makes a trial pause after chosen epochs (see :func:`pause_for_test`)."""
TEST_PAUSE_CEILING_S = 900.0
"""Test-only: a paused trial goes on by itself after this long (a test that died never releases it)."""
_test_paused: set[int] = set()


def _test_pause_epochs(folder: str) -> frozenset[int]:
    """The epochs listed in ``<folder>/epochs`` (numbers separated by commas or spaces); {1} without it."""
    try:
        with open(os.path.join(folder, "epochs")) as fh:
            return frozenset(int(x) for x in fh.read().replace(",", " ").split())
    except FileNotFoundError:
        return frozenset({1})


def pause_pending_for_test(epoch: int) -> bool:
    """Test-only: True when :func:`pause_for_test` will pause after ``epoch`` (the hook's folder is
    set, lists that epoch, and this process has not paused after it yet). A sweep then stores the
    epoch at once, not at its reporting interval, so that a paused trial is seen in the study with
    exactly its epochs so far."""
    folder = os.environ.get(TEST_PAUSE_ENV)
    return bool(folder) and epoch not in _test_paused and epoch in _test_pause_epochs(folder)


def pause_for_test(epoch: int) -> None:
    """Test-only hook (the tests of killed and interrupted workers and of dropped connections);
    does nothing unless the environment variable ``ADAMRAG_SENS_TEST_PAUSE_DIR`` names a folder.

    Called after each epoch has been handed to ``on_epoch`` (in a sweep: stored in the study,
    which writes the epoch at once when :func:`pause_pending_for_test`). After each epoch listed in
    ``<folder>/epochs`` (default: epoch 1 only), the first time in a process, it writes
    ``<folder>/<pid>.<epoch>.paused`` (holding the pid) and waits until ``<folder>/release.<epoch>``
    or ``<folder>/release`` exists, so a test can signal or kill a worker, or cut its storage
    connections, while it is certainly mid-trial, on a slow machine or a fast one, instead of
    hoping to catch one in time. Ctrl-C and SIGTERM end the wait as they end training
    (KeyboardInterrupt); SIGKILL ends the process. A later trial of the process does not pause
    after an epoch it has paused after; after ``TEST_PAUSE_CEILING_S`` seconds without a release
    the trial goes on by itself.
    """
    if not pause_pending_for_test(epoch):
        return
    folder = os.environ[TEST_PAUSE_ENV]
    _test_paused.add(epoch)
    marker = os.path.join(folder, f"{os.getpid()}.{epoch}.paused")
    with open(marker + ".tmp", "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(marker + ".tmp", marker)  # the test never reads a half-written marker
    releases = (os.path.join(folder, "release"), os.path.join(folder, f"release.{epoch}"))
    deadline = time.monotonic() + TEST_PAUSE_CEILING_S
    while not any(os.path.exists(r) for r in releases) and time.monotonic() < deadline:
        interrupt.check()
        time.sleep(0.02)
