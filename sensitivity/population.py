"""Population training: K trials of one optimizer, one task and one budget as one batched model.

A sensitivity study trains the same small model hundreds of times; one at a time, a small model's
step is mostly Python and kernel-launch overhead. Here the K members' models are stacked
(``torch.func.stack_module_state``: each parameter one tensor of shape (K, *shape)), one step is
one ``vmap(grad_and_value(loss))`` over the stack (``functional_call`` of one meta-device copy of
the model) and one batched optimizer update with per-member hyperparameters
(:mod:`sensitivity.optim.population`). The pattern is torch.func's model-ensembling tutorial.

Each member is its own trial, exactly as :func:`sensitivity.train.train_trial` runs it:

* seeding: the member's model is built after ``torch.manual_seed(seed)``, and its batches (order
  and augmentation) are drawn by the task from a generator of its own seeded with ``seed``, the
  member's batch gathered from its own draws; members may share a seed or not;
* the optimizer arithmetic, the learning-rate schedule (per member: lr x the schedule's factor),
  the divergence checks (a non-finite training loss after any step on the CPU, every 25 steps on
  CUDA; after each epoch a non-finite parameter or the task's rule) and the evaluation (the task's
  own ``evaluate`` on a module holding the member's parameters) are the single trial's;
* a member that diverges is dropped from the stack at once: nothing it computes afterwards can
  touch another member, whose numbers stay those of its own run.

On the CPU each member's :class:`~sensitivity.records.TrialResult` is bit-identical to its single
run (every epoch's training loss and metrics, the divergence step and reason); wall time is the
population's, shared out by member-steps, and throughput is the member's examples over its share
of the training time. Where a model cannot be batched, :func:`population_support` says why and
:func:`train_points` runs the single-trial loop instead.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from sensitivity import interrupt
from sensitivity.optim.population import build_population_optimizer
from sensitivity.records import TrialResult
from sensitivity.schedule import lr_factor_function
from sensitivity.tasks import Task
from sensitivity.tasks.base import TensorTask
from sensitivity.train import (_non_finite_parameter, cpu_threads_limit, has_batchnorm, load_task_data,
                               pause_for_test, train_trial)

MemberEpochCallback = Callable[[int, int, dict[str, float]], None]
"""``on_epoch(member index, epoch, {"train_loss": ..., <each metric>: ...})``."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One member of a population: a hyperparameter point and the seed of its trial.

    Attributes:
        hyperparameters: ``lr`` and any of ``beta1, beta2, gamma, weight_decay`` (catalog
            defaults fill the rest, as :func:`~sensitivity.optim.registry.build_optimizer` does).
        seed: the trial's seed (model initialisation and batch draws).
    """

    hyperparameters: dict[str, float]
    seed: int


@dataclasses.dataclass
class PointsRun:
    """What :func:`train_points` did.

    Attributes:
        results: one :class:`TrialResult` per point, in the order given.
        population_size: K used (1: the single-trial loop ran).
        ran: ``"population"`` or ``"single"``.
        reason: why that path ran, in words (for the log and the user).
    """

    results: list[TrialResult]
    population_size: int
    ran: str
    reason: str


# ------------------------------------------------------------------------------------------------
# Where populations run
# ------------------------------------------------------------------------------------------------
_SUPPORT_CACHE: dict[tuple[int, str, str], tuple[Task, tuple[bool, str]]] = {}


def population_support(task: Task, device: str | torch.device = "cpu",
                       config: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether ``task``'s model can be trained as a population on ``device``, and why (not).

    Checks, in order: the task is a :class:`~sensitivity.tasks.TensorTask` (a :class:`Task`
    subclass such as cartpole draws its batches with the model and cannot be stacked); it does not
    declare ``population_size = 1``; its model has no BatchNorm layer (running statistics are
    per-model buffers that ``functional_call`` under ``vmap`` cannot update in place); and one
    probe step of two members (``vmap(grad_and_value)``, ``randomness="error"``) runs without an
    error (random ops such as dropout would draw differently from the single trial) and without
    torch's warning that an op has no batching rule and falls back to a loop over members
    (``scaled_dot_product_attention`` on the CPU, torch 2.x); on the CPU, the probe's batched
    gradients must also equal the single model's bit for bit (convolutions under ``vmap`` do not:
    fmnist-cnn's members differed from their single trials).

    Args:
        task: the workload.
        device: where the population would train.
        config: the task's configuration (default: ``task.config()``).

    Returns:
        ``(True, "")`` or ``(False, one line saying why)``; cached per task, device, configuration and
        the process's intra-op thread count (the batched side of the probe runs at that count, the
        single model at the task's ``cpu_threads``, each as it trains).
    """
    dev = torch.device(device)
    cfg = task.config() if config is None else config
    # The probe runs each side at the intra-op thread count it trains with: the population at the
    # process's count (see train_population), the single model at the task's cpu_threads. A batched kernel
    # may split its work (and round) by thread count, so a probe at another count could pass or fail for
    # the wrong reason.
    key = (id(task), str(dev), json.dumps(cfg, sort_keys=True, default=str), torch.get_num_threads())
    cached = _SUPPORT_CACHE.get(key)
    if cached is None or cached[0] is not task:  # ids are reused once a task is collected
        cached = _SUPPORT_CACHE[key] = (task, _support(task, dev, cfg))
    return cached[1]


def _support(task: Task, dev: torch.device, config: dict[str, Any]) -> tuple[bool, str]:
    if not isinstance(task, TensorTask):
        return False, (f"task {task.name!r} is a {type(task).__name__}, not a TensorTask: its batches and loss "
                       f"are its own code, which a population cannot stack")
    if task.population_size == 1:
        return False, f"task {task.name!r} declares population_size=1"
    data = load_task_data(task, config, dev)
    with torch.random.fork_rng(devices=[]):  # the probe leaves the caller's random state as it was
        torch.manual_seed(0)
        model = task.build_model(config, data).to(dev)
    if has_batchnorm(model):
        return False, (f"task {task.name!r}'s model has BatchNorm layers, whose running statistics are "
                       f"per-model state a batched model cannot update")
    models = [model, copy.deepcopy(model)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(model).to("meta")
    xb, yb = next(task.batches(config, data, model, torch.Generator(device=dev).manual_seed(0)))
    xs, ys = torch.stack([xb, xb]), torch.stack([yb, yb])
    step = vmap(grad_and_value(_loss_function(task, base), has_aux=True), randomness="error")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            grads, _ = step(params, buffers, xs, ys)
        except Exception as err:  # noqa: BLE001 - any failure of the probe means: not batchable
            return False, f"task {task.name!r}'s model cannot be batched with torch.func: {str(err).splitlines()[0]}"
    for w in caught:
        text = str(w.message)
        if "performance drop" in text and "batching rule" in text:
            op = text.split("batching rule for ")[-1].split(".")[0] if "batching rule for " in text else "an op"
            return False, (f"vmap has no batching rule for {op} on {dev.type}: it would run a loop over "
                           f"the members, slower than the single-trial loop")
    if dev.type == "cpu":  # the promise is bit-identical members: a batched kernel that rounds otherwise breaks it
        with cpu_threads_limit(task.cpu_threads):  # as train_trial runs the single model
            loss, _ = task.loss(model, (xb, yb))
            loss.backward()
        for name, p in model.named_parameters():
            if not torch.equal(grads[name][0], p.grad):
                return False, (f"task {task.name!r}'s batched gradients differ from the single model's in the last "
                               f"bits (parameter {name}: a batched kernel rounds otherwise), so members would not "
                               f"reproduce their single trials")
    return True, ""


def default_population_size(task: Task, device: str | torch.device = "cpu",
                            config: dict[str, Any] | None = None) -> tuple[int, str]:
    """K to use for ``task`` on ``device`` when the user does not say: ``(K, why)``.

    1 where :func:`population_support` says no, or where the task declares no population size
    (nothing is batched unless measured to pay); otherwise the task's ``population_size``.
    """
    ok, reason = population_support(task, device, config)
    if not ok:
        return 1, reason
    if not task.population_size or task.population_size <= 1:
        return 1, f"task {task.name!r} declares no population size (populations run only where measured to pay)"
    return int(task.population_size), f"task {task.name!r} declares population_size={task.population_size}"


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def train_points(task: Task, config: dict[str, Any], optimizer: str, points: Sequence[Point], *, epochs: int,
                 device: str | torch.device = "cpu", divergence_factor: float, population: int | None = None,
                 on_epoch: MemberEpochCallback | None = None) -> PointsRun:
    """Train ``points`` of one optimizer: as populations of up to K where that runs, else one by one.

    Args:
        task, config, optimizer, epochs, device, divergence_factor: as :func:`~sensitivity.train.train_trial`.
        points: the members, in order.
        population: K; None: :func:`default_population_size`; 1: the single-trial loop. A K > 1
            where :func:`population_support` says no runs the single-trial loop (``reason`` says why).
        on_epoch: ``on_epoch(index into points, epoch, values)`` after each member's epoch.

    Returns:
        A :class:`PointsRun`: one result per point, K, which path ran and why.
    """
    dev = torch.device(device)
    if population is None:
        k, reason = default_population_size(task, dev, config)
    elif population <= 1:
        k, reason = 1, "population size 1 asked for"
    else:
        ok, why = population_support(task, dev, config)
        k, reason = (population, f"population size {population} asked for") if ok else (1, why)
    if k <= 1 or len(points) <= 1:
        results = []
        for i, pt in enumerate(points):
            cb = None if on_epoch is None else (lambda e, v, i=i: on_epoch(i, e, v))
            results.append(train_trial(task, config, optimizer, pt.hyperparameters, seed=pt.seed, epochs=epochs,
                                       device=dev, divergence_factor=divergence_factor, on_epoch=cb))
        return PointsRun(results, 1, "single", reason if k <= 1 else "a single point")
    results = []
    for start in range(0, len(points), k):
        chunk = points[start:start + k]
        cb = None if on_epoch is None else (lambda i, e, v, s=start: on_epoch(s + i, e, v))
        results += train_population(task, config, optimizer, chunk, epochs=epochs, device=dev,
                                    divergence_factor=divergence_factor, on_epoch=cb)
    return PointsRun(results, k, "population", reason)


def train_population(task: TensorTask, config: dict[str, Any], optimizer: str, points: Sequence[Point], *,
                     epochs: int, device: str | torch.device = "cpu", divergence_factor: float,
                     on_epoch: MemberEpochCallback | None = None) -> list[TrialResult]:
    """Train the K ``points`` of ``optimizer`` together; one :class:`TrialResult` per point, in order.

    Each result is what ``train_trial(task, config, optimizer, point.hyperparameters,
    seed=point.seed, ...)`` returns, bit for bit on the CPU (wall time and throughput aside: the
    population's, shared out by member-steps). Call :func:`population_support` first, or use
    :func:`train_points`, which does.

    On the CPU a population trains at the process's intra-op thread count (torch's default, or a
    worker's ``--threads`` share), not at the task's ``cpu_threads``: a single small model is mostly
    per-step overhead, so its tasks pin one thread, while a population's batched matrix products are
    compute-bound and a second thread speeds them up (the default study's 108 digits-mlp points:
    12.5 s at one thread, 7.7 s at two, 2026-12-03, 2 quiet cores) with per-member results still
    bit-identical to the single trials (checked by the support probe and the population tests).

    Args:
        task: a :class:`~sensitivity.tasks.TensorTask` that :func:`population_support` accepts.
        config, optimizer, epochs, device, divergence_factor: as :func:`~sensitivity.train.train_trial`.
        points: K >= 1 members (hyperparameters and seed each).
        on_epoch: ``on_epoch(member index, epoch, values)`` after each member's epoch.

    Raises:
        KeyError: unknown optimizer. UserError: from the task's data loading.
    """
    dev = torch.device(device)
    return _train_population(task, config, optimizer, list(points), epochs, dev, divergence_factor, on_epoch)


def _loss_function(task: TensorTask, base: nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``loss(params, buffers, x, y) -> (loss, model output)`` of one member: the task's loss of
    ``base`` called with that member's state, and what the model returned (the auxiliary output
    of ``grad_and_value(..., has_aux=True)``)."""

    def loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], xb: torch.Tensor,
             yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = []

        def model(x: torch.Tensor) -> torch.Tensor:
            outputs.append(functional_call(base, (params, buffers), (x,)))
            return outputs[-1]

        value, _ = task.loss(model, (xb, yb))
        return value, outputs[0].detach()

    return loss


def _member_losses(task: TensorTask, outputs: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Each member's training loss, shape (K,), computed by the task's loss outside ``vmap``.

    The gradients of the batched step are bit-identical to the single trial's, but a mean
    reduction under ``vmap`` sums in another order (cross-entropy's batching rule), so the loss
    value differs in the last bit; the task's loss on each member's own model output (the
    ``model`` handed to it returns that output) gives the single trial's value exactly.
    """
    with torch.no_grad():
        return torch.stack([task.loss(lambda x, out=out: out, (x_k, y_k))[0]
                            for out, x_k, y_k in zip(outputs.unbind(), xs.unbind(), ys.unbind())])


def _train_population(task: TensorTask, config: dict[str, Any], optimizer: str, points: list[Point], epochs: int,
                      dev: torch.device, divergence_factor: float,
                      on_epoch: MemberEpochCallback | None) -> list[TrialResult]:
    t_start = time.perf_counter()
    data = load_task_data(task, config, dev)
    use_cuda = dev.type == "cuda"
    autocast = use_cuda and task.autocast
    models = []
    for pt in points:  # as train_trial: seed, then build
        torch.manual_seed(pt.seed)
        models.append(task.build_model(config, data).to(dev))
    scratch = models[0]  # evaluation: the task's own evaluate on a module holding one member's state
    params, buffers = stack_module_state(models)
    params = {n: p.detach() for n, p in params.items()}
    base = copy.deepcopy(scratch).to("meta")
    opt = build_population_optimizer(optimizer, params, [pt.hyperparameters for pt in points])
    gens = [torch.Generator(device=dev).manual_seed(pt.seed) for pt in points]
    steps_per_epoch = task.steps_per_epoch(config, data)
    lr_factor = lr_factor_function(config, steps_per_epoch, epochs)
    check_every = 1 if not use_cuda else 25
    step_fn = vmap(grad_and_value(_loss_function(task, base), has_aux=True), randomness="error")

    def load_member(row: int) -> None:
        with torch.no_grad():
            for name, p in scratch.named_parameters():
                p.copy_(opt.params[name][row])
            for name, b in scratch.named_buffers():
                b.copy_(buffers[name][row])

    def evaluate(row: int) -> dict[str, float]:
        load_member(row)
        return task.evaluate(config, scratch, data, autocast)

    active = list(range(len(points)))  # member index of each row of the stacks
    results = []
    for row in active:
        initial = evaluate(row)
        results.append(TrialResult(train_loss=[], metrics={m.name: [] for m in task.metrics}, initial=initial,
                                   device=str(dev)))
    examples = [0] * len(points)
    train_seconds = [0.0] * len(points)
    global_step = 0

    def drop(rows_to_drop: set[int]) -> None:
        nonlocal active, buffers
        mask = [row not in rows_to_drop for row in range(len(active))]
        opt.keep(mask)
        keep = torch.tensor([row for row, m in enumerate(mask) if m], dtype=torch.long, device=dev)
        buffers = {n: b[keep] for n, b in buffers.items()}
        active = [member for member, m in zip(active, mask) if m]

    for epoch in range(1, epochs + 1):
        if not active:
            break
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros(len(active), device=dev)
        iterators = {m: iter(task.batches(config, data, scratch, gens[m])) for m in active}
        epoch_steps = {m: 0 for m in active}
        for i in range(steps_per_epoch):
            batches = [next(iterators[m]) for m in active]
            xs = torch.stack([b[0] for b in batches])
            ys = torch.stack([b[1] for b in batches])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                grads, (_, outputs) = step_fn(opt.params, buffers, xs, ys)
                losses = _member_losses(task, outputs, xs, ys)
            opt.step(grads, 1.0 if lr_factor is None else lr_factor(global_step))
            global_step += 1
            interrupt.check()
            for m, b in zip(active, batches):
                results[m].steps += 1
                epoch_steps[m] += 1
                examples[m] += b[1].numel()
            loss_sum += losses.detach().float()
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                finite = torch.isfinite(loss_sum).tolist()
                if not all(finite):
                    gone = set()
                    for row, ok in enumerate(finite):
                        if not ok:
                            r = results[active[row]]
                            r.diverged, r.diverged_step = True, r.steps
                            r.diverged_reason = f"non-finite training loss by step {r.steps}"
                            gone.add(row)
                    keep_rows = [row for row in range(len(active)) if row not in gone]
                    loss_sum = loss_sum[torch.tensor(keep_rows, dtype=torch.long, device=dev)]
                    drop(gone)
                    if not active:
                        break
        if use_cuda:
            torch.cuda.synchronize(dev)
        _share(time.perf_counter() - t_epoch, epoch_steps, train_seconds)
        gone = set()
        sums = loss_sum.tolist()
        for row, m in enumerate(active):
            r = results[m]
            train_loss = float(sums[row]) / steps_per_epoch
            metrics = evaluate(row)
            r.train_loss.append(train_loss)
            for name in r.metrics:
                r.metrics[name].append(metrics[name])
            r.epochs_run = epoch
            if on_epoch is not None:
                on_epoch(m, epoch, {"train_loss": train_loss, **metrics})
            reason = _non_finite_parameter(scratch, epoch) or task.divergence(
                epoch, train_loss, metrics, r.initial, divergence_factor)
            if reason:
                r.diverged, r.diverged_step, r.diverged_reason = True, r.steps, reason
                gone.add(row)
        pause_for_test(epoch)
        if gone:
            drop(gone)
    wall = time.perf_counter() - t_start
    total_steps = sum(r.steps for r in results)
    for m, r in enumerate(results):
        share = r.steps / total_steps if total_steps else 1.0 / len(results)
        r.wall_time_s = wall * share
        r.throughput = examples[m] / train_seconds[m] if train_seconds[m] > 0 else 0.0
    return results


def _share(seconds: float, steps: dict[int, int], into: list[float]) -> None:
    """Add ``seconds`` to each member's ``into`` in proportion to the steps it took."""
    total = sum(steps.values())
    for m, n in steps.items():
        if total:
            into[m] += seconds * n / total
