"""What a workload is: the contract between a task and the training loop (:mod:`sensitivity.train`).

A :class:`Task` declares

* its **metrics** (:class:`~sensitivity.records.Metric`: name, direction, unit, label), the first
  being the default objective; a study stores them, so the report labels them without the task;
* its **reference** metric, whose value at initialisation is the divergence rule's L0;
* what one **epoch** is (``steps_per_epoch`` optimizer steps, described in words);
* how it **loads** its data (once per process, on the CPU), **builds** its model, draws the
  **batches** of one epoch, computes a batch's **loss**, and **evaluates** the model.

The training loop owns everything else: seeding, the optimizer, the learning-rate schedule,
autocast, divergence and timing. A task never sees the optimizer.

:class:`TensorTask` is the fast path for supervised learning (classification, next-character
prediction): the whole data set sits as tensors on the training device, so a step is one indexing
operation, an optional on-device augmentation and one forward/backward pass, with no DataLoader
workers. This is what makes a sweep of hundreds of small runs fast on a CPU, and one trial on a GPU
bound by compute rather than by Python (airbench, Keller Jordan). The shape of the contract follows
DeepOBS's test problems (Schneider et al. 2019): data + model + loss + evaluation, nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator

import torch
from torch import nn

from sensitivity.records import VAL_ACC, VAL_LOSS, Metric

class Task:
    """One workload. Subclass it for a workload that is not supervised learning on tensors
    (:class:`TensorTask` covers that), or return a :class:`TensorTask` from a factory.

    Class or instance attributes a task sets:
        name: registry key (``digits-mlp``); also the default study name.
        description: one line for ``adamrag-sens tasks``.
        defaults: default configuration; ``epochs`` and ``batch_size`` always, plus the task's own
            keys (``dataset``, ``train_size``, ``schedule``, ...). Only keys listed here can be set.
        datasets: the values ``--dataset`` accepts.
        metrics: what :meth:`evaluate` returns, in display order; ``metrics[0]`` is the default
            objective of a study.
        reference: the metric whose initial value is L0 for the divergence rule (a loss).
        epoch: what one epoch is, in words (``one pass over the training images``).
        example_unit: what throughput counts (``images``, ``characters``, ``env steps``).
        data_source: where the data come from, in words, for ``tasks`` and the report.
        cpu_trial_time: time of one trial at the default budget on the project's 2-core CPU, as
            measured by ``adamrag-sens tasks --measure`` (a phrase with the figure and the
            conditions), or "" when not measured.
        autocast: train and evaluate under bf16 autocast (and channels_last) on CUDA.
        cpu_threads: intra-op threads on the CPU (None: torch's default). Small models run
            fastest on one thread: their matrix products are too small to split, and on cores
            shared with other jobs a second thread spins: a char-lm step took 16 ms of CPU with
            one thread and 400 ms with two on this project's loaded 2-core machine.
        population_size: how many trials of one optimizer to train together as one batched model
            (:mod:`sensitivity.population`) by default: 1 never batches (the task cannot be
            batched, or batching does not pay: a compute-bound step gains nothing), None leaves it
            undeclared (the single-trial loop, the safe default), K > 1 batches up to K points.
    """

    name: str = ""
    description: str = ""
    defaults: dict[str, Any] = {}
    datasets: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = (VAL_LOSS, VAL_ACC)
    reference: str = "val_loss"
    epoch: str = "one pass over the training set"
    example_unit: str = "examples"
    data_source: str = ""
    cpu_trial_time: str = ""
    autocast: bool = False
    cpu_threads: int | None = None
    population_size: int | None = None

    # ---- configuration ---------------------------------------------------------------------------
    def config(self, **overrides: Any) -> dict[str, Any]:
        """The task's defaults updated with the overrides that are not None."""
        cfg = dict(self.defaults)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cfg

    def metric(self, name: str) -> Metric:
        """The declared metric called ``name``.

        Raises:
            KeyError: the task declares no such metric.
        """
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    # ---- what the training loop calls, in order ------------------------------------------------------
    def load(self, config: dict[str, Any]) -> Any:
        """The task's data on the CPU: an object with ``to(device, memory_format) -> data``.

        Called once per process and configuration (the loop caches it).

        Raises:
            UserError: the data are missing or unreadable (the message says where it looked and
                how to get them).
        """
        raise NotImplementedError

    def build_model(self, config: dict[str, Any], data: Any) -> nn.Module:
        """A fresh model, float32, on the CPU; the loop seeds torch before calling this."""
        raise NotImplementedError

    def steps_per_epoch(self, config: dict[str, Any], data: Any) -> int:
        """Optimizer steps in one epoch (>= 1); :meth:`batches` yields exactly this many."""
        raise NotImplementedError

    def batches(self, config: dict[str, Any], data: Any, model: nn.Module, generator: torch.Generator) -> Iterator[Any]:
        """The batches of one epoch, drawn with ``generator`` (on the training device).

        Lazy: each batch is made just before its step, so a task that collects experience with
        the current model (reinforcement learning) sees the model as trained so far.
        """
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """(scalar loss to minimise, with grad; examples in the batch, in :attr:`example_unit`)."""
        raise NotImplementedError

    def evaluate(self, config: dict[str, Any], model: nn.Module, data: Any, autocast: bool) -> dict[str, float]:
        """Every declared metric of ``model`` as ``{name: value}`` (deterministic given the model).

        The loop calls it at initialisation and after each epoch; the model is in train mode
        before and must be left in train mode after.
        """
        raise NotImplementedError

    def divergence(self, epoch: int, train_loss: float, metrics: dict[str, float], initial: dict[str, float],
                   factor: float) -> str:
        """Why the run counts as diverged after ``epoch``, or "" when it does not.

        Divergence is a property of training. The default rule, for tasks whose reference is a
        loss: the epoch's mean training loss is not finite or exceeds ``factor`` x the reference
        metric's initial value L0. Evaluation plays no part: a stable run whose validation loss is
        poor (BatchNorm statistics lagging fast-moving weights are the usual cause) has a poor
        result, not a divergence, and its objective counts at L0 like any run worse than its start.
        Non-finite training losses within an epoch and non-finite parameters are caught by the loop
        itself. A task overriding this keeps to training's side where it can (``cartpole``: a
        collapsed policy).
        """
        ref = self.reference
        limit = factor * initial[ref]
        if not math.isfinite(train_loss):
            return f"non-finite mean training loss in epoch {epoch}"
        if train_loss > limit:
            return f"epoch {epoch} mean training loss {train_loss:.3g} > {factor:g} x initial {ref} {initial[ref]:.3g}"
        return ""

    def budget(self) -> str:
        """The default budget in words: epochs (and what one is), batch, data sizes."""
        d = self.defaults
        parts = [f"{d['epochs']} epoch{'s' if d['epochs'] != 1 else ''} ({self.epoch})"]
        labels = (("steps_per_epoch", "steps/epoch"), ("batch_size", "batch"), ("train_size", "train_size"),
                  ("val_size", "val_size"), ("eval_episodes", "evaluation episodes"))
        parts += [f"{label} {d[key]:,}" for key, label in labels if d.get(key) is not None]
        return "; ".join(parts)

    def summary(self, config: dict[str, Any]) -> str:
        """The settings a reader of a report needs, in one line: the data set when the task has
        several, and the learning-rate schedule when the task has one."""
        from sensitivity.schedule import describe_schedule

        parts = [f"dataset {config['dataset']}"] if len(self.datasets) > 1 and "dataset" in config else []
        parts += [text for text in (describe_schedule(config),) if text]
        return "; ".join(parts)


@dataclasses.dataclass
class TensorData:
    """A supervised data set as tensors.

    Attributes:
        x_train: inputs, shape (N_train, *input_shape); float32 normalised images or features, or
            int64 token ids of shape (N_train, T).
        y_train: targets, int64 class or token indices, shape (N_train,) or (N_train, T).
        x_val: inputs, shape (N_val, *input_shape).
        y_val: targets, shape (N_val,) or (N_val, T).
        num_classes: number of classes (vocabulary size) C; model outputs have shape (..., C).
        description: one line naming the data and its size, for reports.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    description: str

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> "TensorData":
        """A copy with every tensor on ``device`` (4-d inputs optionally in ``memory_format``)."""

        def move(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device, non_blocking=True)
            if memory_format is not None and x.dim() == 4:
                x = x.contiguous(memory_format=memory_format)
            return x

        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=self.y_train.to(device),
            x_val=move(self.x_val),
            y_val=self.y_val.to(device),
        )


TaskData = TensorData
"""The name this class had when every task was a classification task."""


@dataclasses.dataclass(frozen=True)
class TensorTask(Task):
    """Supervised learning on tensors held on the device: classification, or next-token
    prediction when inputs and targets are (N, T) sequences.

    Build one with functions (no subclass needed)::

        TensorTask(name="my-task", description="...", defaults={"epochs": 5, "batch_size": 64},
                   load=lambda config: TensorData(...), build_model=lambda config, data: nn.Linear(...))

    An epoch is one pass over the training set in a fresh random order, in mini-batches of
    ``batch_size`` (the last partial batch dropped). The loss is the mean cross-entropy over every
    target (every example, or every position of every sequence): logits of shape (B, C) or
    (B, T, C) against targets (B,) or (B, T). :meth:`evaluate` returns ``val_loss`` (nats per
    target) and ``val_acc`` (share of arg-max hits), in batches of ``eval_batch_size`` (default:
    ``max(batch_size, 1024)``).

    Attributes (beyond :class:`Task`'s):
        load: ``load(config) -> TensorData`` on the CPU.
        build_model: ``build_model(config, data) -> nn.Module``.
        augment: optional ``augment(x, generator) -> x`` applied to each training batch on its
            device, same shape in and out (e.g. :func:`~sensitivity.tasks.images.crop_flip`).
    """

    name: str = ""
    description: str = ""
    defaults: dict[str, Any] = dataclasses.field(default_factory=lambda: {"epochs": 10, "batch_size": 64})
    load: Callable[[dict[str, Any]], TensorData] | None = None
    build_model: Callable[[dict[str, Any], TensorData], nn.Module] | None = None
    datasets: tuple[str, ...] = ()
    augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None
    metrics: tuple[Metric, ...] = (VAL_LOSS, VAL_ACC)
    reference: str = "val_loss"
    epoch: str = "one pass over the training examples in a random order"
    example_unit: str = "examples"
    data_source: str = ""
    cpu_trial_time: str = ""
    autocast: bool = False
    cpu_threads: int | None = None
    population_size: int | None = None

    def __post_init__(self) -> None:
        if self.load is None or self.build_model is None:
            raise TypeError(f"TensorTask {self.name!r} needs load and build_model functions")
        names = [m.name for m in self.metrics]
        if self.reference not in names:
            raise ValueError(f"task {self.name!r}: reference metric {self.reference!r} is not one of its metrics {names}")

    # ``load`` and ``build_model`` are fields holding the user's functions: on an instance they take
    # the place of Task's methods of the same names, so ``task.load(config)`` calls them directly.

    def steps_per_epoch(self, config: dict[str, Any], data: TensorData) -> int:
        return max(1, len(data.x_train) // int(config["batch_size"]))

    def batches(self, config: dict[str, Any], data: TensorData, model: nn.Module,
                generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch_size = int(config["batch_size"])
        order = torch.randperm(len(data.x_train), device=data.x_train.device, generator=generator)
        for i in range(self.steps_per_epoch(config, data)):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            if self.augment is not None:
                xb = self.augment(xb, generator)
            yield xb, yb

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        xb, yb = batch
        logits = model(xb)
        return nn.functional.cross_entropy(logits.flatten(0, -2).float(), yb.flatten()), yb.numel()

    @torch.no_grad()
    def evaluate(self, config: dict[str, Any], model: nn.Module, data: TensorData, autocast: bool) -> dict[str, float]:
        loss, acc = cross_entropy_and_accuracy(model, data.x_val, data.y_val, self.eval_batch_size(config), autocast)
        return {"val_loss": loss, "val_acc": acc}

    def eval_batch_size(self, config: dict[str, Any]) -> int:
        """Examples per evaluation batch: ``eval_batch_size`` from the config, else max(batch_size, 1024)."""
        return int(config.get("eval_batch_size") or max(int(config["batch_size"]), 1024))


@torch.no_grad()
def cross_entropy_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                               autocast: bool) -> tuple[float, float]:
    """Mean cross-entropy (nats per target) and accuracy (fraction) of ``model`` on (x, y), in eval mode.

    Args:
        model: maps x of shape (B, ...) to logits (B, C) or (B, T, C).
        x: inputs, shape (N, ...).
        y: targets, shape (N,) or (N, T), int64.
        batch_size: examples per forward pass.
        autocast: run the forward pass under bf16 autocast (the loss is summed in float64).

    Returns:
        (mean loss over all N (x T) targets, share of targets whose arg-max logit is right).
    """
    model.eval()
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(xb)
        logits = logits.flatten(0, -2).float()
        yb = yb.flatten()
        total_loss += nn.functional.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    n = y.numel()
    return float(total_loss) / n, float(correct) / n


def subset_first(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples (all when ``n`` is None or larger than the set)."""
    if n is None or n >= len(x):
        return x, y
    return x[:n], y[:n]
