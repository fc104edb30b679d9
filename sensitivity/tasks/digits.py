"""``digits-mlp``: a two-hidden-layer MLP on scikit-learn's handwritten digits.

The data are 1,797 real 8x8 grey-level images of the digits 0-9 (the UCI "Optical Recognition of
Handwritten Digits" test set), shipped inside scikit-learn's wheel, so this task needs no
download. Split: a fixed stratified 80/20 train/validation split (``random_state=0``), 1,437
training and 360 validation images. Inputs are pixel values / 16, standardised with the training
set's mean and standard deviation per pixel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sensitivity.tasks.base import TensorData, TensorTask, subset_first


def load_digits_data(config: dict[str, Any]) -> TensorData:
    """Load the digits as tensors: x of shape (N, 64) float32, y of shape (N,) int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_val = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.2, random_state=0, stratify=y.numpy()
    )
    x_train, y_train = subset_first(x[idx_train], y[idx_train], config.get("train_size"))
    x_val, y_val = subset_first(x[idx_val], y[idx_val], config.get("val_size"))
    mean = x_train.mean(0, keepdim=True)
    std = x_train.std(0, keepdim=True).clamp_min(1e-3)
    return TensorData(
        x_train=(x_train - mean) / std,
        y_train=y_train,
        x_val=(x_val - mean) / std,
        y_val=y_val,
        num_classes=10,
        description=f"scikit-learn digits (8x8), {len(y_train)} train / {len(y_val)} validation",
    )


def build_mlp(config: dict[str, Any], data: TensorData) -> nn.Module:
    """MLP 64 -> hidden -> hidden -> 10 with ReLU; ``config['hidden']`` units per layer."""
    width = int(config.get("hidden", 128))
    in_features = data.x_train.shape[1]
    return nn.Sequential(
        nn.Linear(in_features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, data.num_classes),
    )


DIGITS_MLP = TensorTask(
    name="digits-mlp",
    description="MLP (64-128-128-10) on scikit-learn's 1,797 real 8x8 digits; no download; CPU-sized",
    defaults={"dataset": "digits", "epochs": 10, "batch_size": 64, "hidden": 128, "train_size": None, "val_size": None,
              "precise_bn": 0},  # no BatchNorm layer: nothing to recalibrate
    datasets=("digits",),
    load=load_digits_data,
    build_model=build_mlp,
    epoch="one pass over the 1,437 training digits in a random order",
    example_unit="images",
    data_source="scikit-learn's bundled digits (UCI optical recognition test set), no download",
    cpu_trial_time=("1.4 s CPU, 1 thread, one trial alone (13.5 s wall on 2 cores shared with ~10 busy jobs); "
                    "in the default study's populations of 27: 0.07 s per trial"),
    cpu_threads=1,
    # the default study's 27 points of one optimizer trained as one population (sensitivity.population):
    # bench.population measured the ratio against the one-by-one loop (see docs/measurements)
    population_size=27,
)
