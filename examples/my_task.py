"""Your own workload for adamrag-sens, without editing the package: copy this file and change
``load`` and ``build_model``.

Run a sweep on it from the folder that holds this file:

    adamrag-sens sweep --task my_task:make_task --optimizers adamrag,adam --lr 1e-3,1e-2 --beta1 0.9
    adamrag-sens report --study breast-cancer-mlp

or from anywhere, by path: ``--task path/to/my_task.py:make_task``. An installed package can offer
it by name through the entry-point group ``adamrag_sens.tasks`` (in its pyproject.toml:
``[project.entry-points."adamrag_sens.tasks"]`` then ``breast-cancer-mlp = "my_task:make_task"``).

The example trains a small MLP on scikit-learn's breast cancer data (569 real tumour measurements,
30 features, 2 classes; shipped inside scikit-learn's wheel, no download). Your own tensors go in
``load``: any inputs of shape (N, ...) with int64 class labels of shape (N,).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sensitivity.tasks import TensorData, TensorTask


def load(config: dict[str, Any]) -> TensorData:
    """Inputs (N, 30) float32 standardised with the training rows' statistics; labels (N,) int64."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # one fixed split
    x, y = x[order], y[order]
    n_train = int(0.8 * len(y))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return TensorData(x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:], y_val=y[n_train:],
                      num_classes=2, description=f"scikit-learn breast cancer, {n_train} train / {len(y) - n_train} validation")


def build_model(config: dict[str, Any], data: TensorData) -> nn.Module:
    """MLP 30 -> hidden -> 2 logits; the training loop seeds torch before calling this."""
    hidden = int(config["hidden"])
    return nn.Sequential(nn.Linear(data.x_train.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, data.num_classes))


def make_task() -> TensorTask:
    """The task: its name is the default study name; ``defaults`` are the settings a sweep may change
    (``epochs`` and ``batch_size`` at least). Metrics: validation loss (nats/example) and accuracy."""
    return TensorTask(
        name="breast-cancer-mlp",
        description="MLP (30-32-2) on scikit-learn's breast cancer data",
        defaults={"epochs": 5, "batch_size": 32, "hidden": 32},
        load=load,
        build_model=build_model,
        data_source="scikit-learn's bundled breast cancer data (no download)",
        cpu_threads=1,
    )
