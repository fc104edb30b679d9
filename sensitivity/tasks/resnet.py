"""``resnet18``: torchvision's ResNet-18 with the CIFAR stem, on CIFAR-10, CIFAR-100 or Fashion-MNIST
(or, for throughput measurements only, random tensors of CIFAR-10's shape: ``--dataset synthetic``).

The CIFAR stem (He et al. 2016, sec. 4.2; the usual CIFAR ResNet-18) replaces the ImageNet stem's
7x7 stride-2 convolution and max-pool by one 3x3 stride-1 convolution and no pooling. The data are
read with torchvision's own readers (:mod:`sensitivity.tasks.images`). Training batches are
augmented on their device: random crop with zero padding (4 px for 32x32, 2 px for 28x28) and
horizontal flip. The learning rate follows ``schedule`` (constant, cosine or step, after
``warmup_epochs`` of linear warm-up; :mod:`sensitivity.schedule`), the swept lr being its peak.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sensitivity.tasks.base import TensorData, TensorTask
from sensitivity.tasks.images import IMAGE_DATASETS, crop_flip, load_image_data

SYNTHETIC = "synthetic"
"""The ``--dataset`` of seeded random tensors of CIFAR-10's shape (for throughput measurements only)."""


def load_resnet_data(config: dict[str, Any]) -> TensorData:
    """:func:`~sensitivity.tasks.images.load_image_data`, or for ``dataset = "synthetic"``
    ``train_size`` (default 50,000) and ``val_size`` (default 10,000) random normal images of shape
    (3, 32, 32) with random labels of 10 classes, seeded, labelled SYNTHETIC in their description:
    enough for a throughput figure, which does not depend on the pixel values."""
    if config["dataset"] != SYNTHETIC:
        return load_image_data(config)
    gen = torch.Generator().manual_seed(0)
    n_train, n_val = config.get("train_size") or 50_000, config.get("val_size") or 10_000
    return TensorData(
        x_train=torch.randn(n_train, 3, 32, 32, generator=gen), y_train=torch.randint(0, 10, (n_train,), generator=gen),
        x_val=torch.randn(n_val, 3, 32, 32, generator=gen), y_val=torch.randint(0, 10, (n_val,), generator=gen),
        num_classes=10,
        description=f"SYNTHETIC random tensors of CIFAR-10's shape (3x32x32, random labels; throughput only), "
                    f"{n_train} train / {n_val} validation",
    )


def build_resnet18(config: dict[str, Any], data: TensorData) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem; input (B, C, H, W), output (B, num_classes)."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=data.num_classes)
    in_channels = data.x_train.shape[1]
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


RESNET18 = TensorTask(
    name="resnet18",
    description="torchvision ResNet-18, CIFAR stem (3x3 conv, no max-pool); CIFAR-10, CIFAR-100 or Fashion-MNIST",
    defaults={
        "dataset": "cifar10",
        "epochs": 10,
        "batch_size": 128,
        "schedule": "constant",
        "warmup_epochs": 0,
        "data_dir": "data",
        "download": False,
        "train_size": None,
        "val_size": None,
        "precise_bn": 8,  # BatchNorm statistics recomputed before each evaluation (README, "BatchNorm statistics")
    },
    datasets=(*IMAGE_DATASETS, SYNTHETIC),
    load=load_resnet_data,
    build_model=build_resnet18,
    augment=crop_flip,
    epoch="one pass over the training images (random crop + flip, on the device)",
    example_unit="images",
    data_source="torchvision CIFAR10/CIFAR100 from --data-dir (--download when online); "
                "Fashion-MNIST IDX files (Debian dataset-fashion-mnist)",
    cpu_trial_time=("GPU budget; CPU studies: Fashion-MNIST, 1,000 images x 1 epoch, 15 s wall (22 s CPU) per "
                    "trial; CIFAR-100, 2,000 images x 1 epoch, about a minute"),
    autocast=True,
)
