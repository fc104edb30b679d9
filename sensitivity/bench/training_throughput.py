"""The training-throughput benchmark: this product's trial loop against a plain PyTorch loop, measured
in one run.

``adamrag-sens bench train`` wraps :func:`bench_train`. Both loops train the task's own model
(for ``resnet18``: torchvision's ResNet-18 with the CIFAR stem) with torch's Adam at lr 1e-3, at
the same batch size, on the same examples:

* **product**: :func:`sensitivity.train.train_trial`, exactly as a sweep runs a trial: the data
  set held as tensors on the device, batches drawn by indexing, augmented there (random crop and
  flip), bf16 autocast and channels_last on CUDA. Its throughput is the trial's own figure
  (training examples per second, evaluation excluded).
* **plain**: the loop of a PyTorch tutorial: a ``DataLoader`` over a ``TensorDataset`` on the CPU
  (shuffled, ``pin_memory`` on CUDA), each batch copied to the device, float32, no augmentation.

After a warm-up of each, the two are timed in alternating rounds (so a change in machine load
hits both; the loop that goes first alternates too), and the median of the rounds is reported,
with the ratio product / plain.

``synthetic=True`` uses random normal images of the data set's shape with random labels (CIFAR:
3x32x32, Fashion-MNIST: 1x28x28): enough for a throughput figure, which does not depend on the
pixel values, and labelled as synthetic wherever it is printed.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sensitivity.bench.timing import time_rate
from sensitivity.errors import UserError, value_error
from sensitivity.tasks import TensorData, TensorTask, get_task
from sensitivity.train import cpu_threads_limit, resolve_device, train_trial

LARGEST_COUNT = 1_000_000
"""The largest --batch-size, --steps or --rounds a benchmark takes: beyond it a count is a typo (and
overflows torch's sizes)."""
SYNTHETIC_SHAPES = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "fashion-mnist": ((1, 28, 28), 10)}
"""dataset -> (image shape (C, H, W), classes) of the synthetic stand-in."""


@dataclasses.dataclass
class ThroughputResult:
    """Images per second of both loops (medians over rounds) and what was measured.

    Attributes:
        task: task name.
        data: what the images were (``synthetic: random CIFAR-10-shaped ...`` or the data set).
        device: torch device string.
        batch_size: examples per step, both loops.
        steps: timed optimizer steps per round and loop.
        product: images/s of this product's trial loop, per round.
        plain: images/s of the plain DataLoader loop, per round.
        augmented: the product loop augmented its batches on the device.
        autocast: the product loop ran under bf16 autocast with channels_last.
    """

    task: str
    data: str
    device: str
    batch_size: int
    steps: int
    product: list[float]
    plain: list[float]
    augmented: bool = False
    autocast: bool = False

    @property
    def ratio(self) -> float:
        """Median product throughput / median plain throughput (> 1: the product is faster)."""
        return statistics.median(self.product) / statistics.median(self.plain)


def bench_train(task_name: str = "resnet18", *, synthetic: bool = True, device: str = "auto", batch_size: int = 128,
                steps: int | None = None, rounds: int | None = None, config: dict[str, Any] | None = None) -> ThroughputResult:
    """Measure training throughput of the product's trial loop and of a plain PyTorch loop.

    Args:
        task_name: an image task (``resnet18``, ``fmnist-cnn``).
        synthetic: random tensors of the data set's shape instead of the real data.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: examples per step for both loops.
        steps: timed steps per round (default 50 on CUDA, 4 on the CPU).
        rounds: alternating timed rounds of each loop (>= 1; default 2 on CUDA, 6 on the CPU).
        config: task configuration overrides (``dataset``, ``data_dir``, ...).

    Returns:
        The :class:`ThroughputResult` (images per second).

    Raises:
        UserError: not an image task, bad sizes, an absent device, or missing real data.
    """
    task = get_task(task_name)
    if not (isinstance(task, TensorTask) and task.defaults.get("dataset") in SYNTHETIC_SHAPES):
        raise UserError(f"bench train measures the image tasks (resnet18, fmnist-cnn), not {task.name!r}")
    for flag, value, example in (("--batch-size", batch_size, "128"), ("--steps", steps, "50"), ("--rounds", rounds, "6")):
        if value is not None and value < 1:
            raise value_error(flag, value, "must be >= 1", example)
        if value is not None and value > LARGEST_COUNT:
            raise value_error(flag, value, f"is larger than a benchmark takes (at most {LARGEST_COUNT:,})", example)
    dev = resolve_device(device)
    steps = steps or (50 if dev.type == "cuda" else 4)
    rounds = rounds or (2 if dev.type == "cuda" else 6)
    cfg = task.config(**(config or {}), batch_size=batch_size, schedule="constant" if "schedule" in task.defaults else None)
    n = steps * batch_size
    if cfg["dataset"] not in SYNTHETIC_SHAPES:
        raise UserError(f"unknown dataset {cfg['dataset']!r}; choose one of: {', '.join(SYNTHETIC_SHAPES)}")
    if synthetic:
        shape, classes = SYNTHETIC_SHAPES[cfg["dataset"]]
        gen = torch.Generator().manual_seed(0)
        data = TensorData(
            x_train=torch.randn(n, *shape, generator=gen), y_train=torch.randint(0, classes, (n,), generator=gen),
            x_val=torch.randn(batch_size, *shape, generator=gen), y_val=torch.randint(0, classes, (batch_size,), generator=gen),
            num_classes=classes, description=f"synthetic: random normal images of {cfg['dataset']}'s shape {shape}, random labels",
        )
        described = data.description
    else:
        real = task.load(cfg)
        if len(real.x_train) < n:
            raise UserError(f"{len(real.x_train)} training images are fewer than --steps {steps} x --batch-size {batch_size}")
        data = dataclasses.replace(real, x_train=real.x_train[:n], y_train=real.y_train[:n],
                                   x_val=real.x_val[:batch_size], y_val=real.y_val[:batch_size])
        described = real.description.split(",")[0] + " (real data)"
    bench_task = dataclasses.replace(task, name=f"{task.name}-bench", load=lambda _config: data)
    product_rate = lambda: _product_rate(bench_task, cfg, dev)  # noqa: E731
    plain_rate = lambda: _plain_rate(bench_task, cfg, data, dev)  # noqa: E731
    product_rate(), plain_rate()  # warm-up: allocator, kernels, cudnn's algorithm choice
    product, plain = [], []
    for r in range(rounds):  # which loop goes first alternates too, so neither always runs on a warmer machine
        if r % 2 == 0:
            product.append(product_rate())
            plain.append(plain_rate())
        else:
            plain.append(plain_rate())
            product.append(product_rate())
    return ThroughputResult(task=task.name, data=described, device=str(dev), batch_size=batch_size, steps=steps,
                            product=product, plain=plain, augmented=task.augment is not None,
                            autocast=task.autocast and dev.type == "cuda")


def _product_rate(task: TensorTask, config: dict[str, Any], device: torch.device) -> float:
    result = train_trial(task, config, "adam", {"lr": 1e-3}, seed=0, epochs=1, device=device, divergence_factor=1e9)
    return result.throughput


def _plain_rate(task: TensorTask, config: dict[str, Any], data: TensorData, device: torch.device) -> float:
    """Images per second of a tutorial-style loop: DataLoader over a TensorDataset, float32, with the
    same number of CPU threads as the trial loop gives the task."""
    with cpu_threads_limit(task.cpu_threads if device.type == "cpu" else None):
        return _plain_loop(task, config, data, device)


def _plain_loop(task: TensorTask, config: dict[str, Any], data: TensorData, device: torch.device) -> float:
    torch.manual_seed(0)
    model = task.build_model(config, data).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=int(config["batch_size"]),
                        shuffle=True, drop_last=True, pin_memory=device.type == "cuda")
    model.train()

    def epoch() -> int:
        images = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += len(y)
        return images

    return time_rate(epoch, device)


def format_result(result: ThroughputResult) -> list[str]:
    """The lines ``bench train`` prints: what was measured, both rates, the ratio."""
    med_product, med_plain = statistics.median(result.product), statistics.median(result.plain)
    how = ["tensors on the device"]
    how += ["on-device crop+flip"] if result.augmented else []
    how += ["bf16 autocast + channels_last" if result.autocast else "fp32"]
    return [
        f"task {result.task}, data {result.data}, device {result.device}, batch {result.batch_size}, "
        f"{result.steps} steps x {len(result.product)} rounds per loop",
        f"product trial loop ({', '.join(how)}): {med_product:,.0f} images/s",
        f"plain PyTorch loop (DataLoader over TensorDataset, fp32, no augmentation): {med_plain:,.0f} images/s",
        f"ratio product / plain: {result.ratio:.2f}",
    ]
