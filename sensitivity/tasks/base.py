"""What a workload is: data held as tensors, a model factory, an optional on-device augmentation.

A task keeps its whole data set as tensors (on the training device once moved), so a training
step is one indexing operation and one forward/backward pass, with no DataLoader workers. This is
what makes a sweep of hundreds of small runs fast on a CPU, and one trial on a GPU bound by
compute rather than by Python (airbench, Keller Jordan).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn


@dataclasses.dataclass
class TaskData:
    """A classification data set as tensors.

    Attributes:
        x_train: inputs, shape (N_train, *input_shape), float32, normalised.
        y_train: class indices, shape (N_train,), int64.
        x_val: inputs, shape (N_val, *input_shape), float32, normalised.
        y_val: class indices, shape (N_val,), int64.
        num_classes: number of classes C; model outputs have shape (batch, C).
        description: one line naming the data and its size, for reports.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    description: str

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> "TaskData":
        """A copy with every tensor on ``device`` (images optionally in ``memory_format``)."""

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


@dataclasses.dataclass(frozen=True)
class Task:
    """One workload in the registry.

    Attributes:
        name: registry key (``digits-mlp``).
        description: one line for ``adamrag-sens tasks``.
        defaults: default configuration (``epochs``, ``batch_size``, ``dataset``, ``train_size``, ...).
        datasets: the data sets this task accepts for ``--dataset``.
        load: ``load(config) -> TaskData`` on the CPU; raises :class:`~sensitivity.errors.UserError`
            when the data is missing, naming where it looked and how to get it.
        build_model: ``build_model(config, data) -> nn.Module`` (float32, on the CPU).
        augment: optional ``augment(x, generator) -> x`` applied to each training batch on its
            device, shape (B, C, H, W) in and out.
        image_model: inputs are images (bf16 autocast and channels_last on CUDA).
        cpu_threads: intra-op threads for training on the CPU (None: torch's default). Tiny
            models run fastest on one thread: their matrix products are too small to split, and
            spinning threads lose badly when the cores are shared.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    datasets: tuple[str, ...]
    load: Callable[[dict[str, Any]], TaskData]
    build_model: Callable[[dict[str, Any], TaskData], nn.Module]
    augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None
    image_model: bool = False
    cpu_threads: int | None = None

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The task's defaults updated with the overrides that are not None."""
        cfg = dict(self.defaults)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cfg


def subset_first(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples (all when ``n`` is None or larger than the set)."""
    if n is None or n >= len(x):
        return x, y
    return x[:n], y[:n]
