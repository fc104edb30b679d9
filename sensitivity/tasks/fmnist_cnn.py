"""``fmnist-cnn``: DeepOBS's ``fmnist_2c2d`` test problem, a small convolutional net on Fashion-MNIST.

The network (Schneider, Balles & Hennig 2019, "DeepOBS: A Deep Learning Optimizer Benchmark
Suite", ICLR; the ``2c2d`` net of its ``fmnist_2c2d`` problem): two 5x5 convolutions with 32 and
64 channels, "same" padding and ReLU, each followed by 2x2 max-pooling (28 -> 14 -> 7), then a
dense layer of 1,024 ReLU units and a 10-way output; weights drawn from a normal distribution with
standard deviation 0.05 truncated at two standard deviations, biases 0.05, as DeepOBS initialises
it. 3,274,634 parameters. The data are the real Fashion-MNIST, read exactly as ``resnet18`` reads
it (:func:`sensitivity.tasks.images.load_image_data`), without augmentation, as in DeepOBS.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sensitivity.tasks.base import TensorData, TensorTask
from sensitivity.tasks.images import load_image_data


def build_2c2d(config: dict[str, Any], data: TensorData) -> nn.Module:
    """DeepOBS's 2c2d net; input (B, 1, 28, 28), output (B, num_classes) logits."""
    model = nn.Sequential(
        nn.Conv2d(data.x_train.shape[1], 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (data.x_train.shape[2] // 4) * (data.x_train.shape[3] // 4), 1024),
        nn.ReLU(),
        nn.Linear(1024, data.num_classes),
    )
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.05, a=-0.1, b=0.1)
            nn.init.constant_(module.bias, 0.05)
    return model


FMNIST_CNN = TensorTask(
    name="fmnist-cnn",
    description="DeepOBS fmnist_2c2d: conv5x5(32)-pool-conv5x5(64)-pool-dense(1024)-10 on real Fashion-MNIST",
    defaults={
        "dataset": "fashion-mnist",
        "epochs": 1,
        "batch_size": 64,
        "schedule": "constant",
        "warmup_epochs": 0,
        "data_dir": "data",
        "download": False,
        "train_size": 3000,
        "val_size": 1000,
    },
    datasets=("fashion-mnist",),
    load=load_image_data,
    build_model=build_2c2d,
    epoch="one pass over the training images in a random order (no augmentation, as DeepOBS)",
    example_unit="images",
    data_source="Fashion-MNIST IDX files: --data-dir, data/fashion-mnist, or Debian's dataset-fashion-mnist "
                "(/usr/share/datasets/fashion-mnist); --download when online",
    cpu_trial_time="3.6 s CPU, 1 thread (18.2 s wall on 2 cores shared with ~10 busy jobs)",
    autocast=True,
    cpu_threads=1,  # see Task.cpu_threads: on 2 shared cores a second, spinning thread cost 8x the CPU time per step
    # populations (sensitivity.population) measured 1.5x slower than one by one on the CPU (9 points, 256 images,
    # 2026-12-02), and convolutions under vmap round otherwise than the single model: never batched by default
    population_size=1,
)
