"""The optimizers a study can sweep: factories, hyperparameters and default search ranges.

Each entry says what ``beta1``/``beta2`` mean for that optimizer (the table in the project's
design notes), which hyperparameters it takes, and the learning-rate range a default sweep covers.
Lion's learning rates sit about 3-10x below Adam's (Chen et al. 2023, "Symbolic Discovery of
Optimization Algorithms", arXiv 2302.06675, sec. 5), so its default grid is shifted down by one
decade; plain SGD-type methods take learning rates about 100x above Adam's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

import torch

HyperParams = dict[str, float]


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One sweepable optimizer.

    Attributes:
        name: registry key used on the command line (``adamrag``).
        display: name in figures and tables (``AdamRAG``).
        hyperparameters: the sweepable knobs this optimizer takes, among
            ``lr, beta1, beta2, gamma, weight_decay``.
        lr_range: default learning-rate interval (low, high), searched on a log scale.
        defaults: the value of every hyperparameter when a sweep does not vary it.
        beta1_meaning / beta2_meaning: what the generic names mean for this optimizer.
        source: the implementation and the paper it follows.
        factory: builds the optimizer from parameters and a hyperparameter dict.
    """

    name: str
    display: str
    hyperparameters: tuple[str, ...]
    lr_range: tuple[float, float]
    defaults: HyperParams
    beta1_meaning: str
    beta2_meaning: str
    source: str
    factory: Callable[[Iterable[torch.nn.Parameter], HyperParams], torch.optim.Optimizer]

    def lr_grid(self, points: int = 7) -> list[float]:
        """``points`` log-spaced learning rates spanning :attr:`lr_range` (ends included).

        Raises:
            ValueError: ``points < 2``.
        """
        if points < 2:
            raise ValueError(f"an lr grid needs at least 2 points, got {points}")
        lo, hi = (math.log10(v) for v in self.lr_range)
        return [float(f"{10 ** (lo + (hi - lo) * i / (points - 1)):.3g}") for i in range(points)]

    def build(self, params: Iterable[torch.nn.Parameter], hp: HyperParams) -> torch.optim.Optimizer:
        """The optimizer for ``params`` with ``hp`` over :attr:`defaults` (unknown keys ignored)."""
        merged = {**self.defaults, **{k: v for k, v in hp.items() if k in self.hyperparameters}}
        return self.factory(params, merged)


def _adamrag(params, hp: HyperParams) -> torch.optim.Optimizer:
    from sensitivity.optim.adamrag import AdamRAG

    return AdamRAG(
        params,
        lr=hp["lr"],
        betas=(hp["beta1"], hp["beta2"]),
        gamma=hp["gamma"],
        weight_decay=hp["weight_decay"],
    )


def _adam(params, hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"]
    )


def _adamw(params, hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"]
    )


def _nag(params, hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["beta1"], nesterov=True, weight_decay=hp["weight_decay"]
    )


def _sgd(params, hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["beta1"], weight_decay=hp["weight_decay"])


def _lion(params, hp: HyperParams) -> torch.optim.Optimizer:
    from lion_pytorch import Lion

    return Lion(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"])


_ADAM_FAMILY = ("lr", "beta1", "beta2", "weight_decay")

OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            name="adamrag",
            display="AdamRAG",
            hyperparameters=("lr", "beta1", "beta2", "gamma", "weight_decay"),
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "gamma": 0.5, "weight_decay": 0.0},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay; gamma is the Ravine extrapolation coefficient",
            source="sensitivity.optim.AdamRAG: reconstruction of Zhang et al. 2025 (NPL 57:53)",
            factory=_adamrag,
        ),
        OptimizerSpec(
            name="adam",
            display="Adam",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay",
            source="torch.optim.Adam (Kingma & Ba 2015, arXiv 1412.6980)",
            factory=_adam,
        ),
        OptimizerSpec(
            name="adamw",
            display="AdamW",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 1e-2},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay",
            source="torch.optim.AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101)",
            factory=_adamw,
        ),
        OptimizerSpec(
            name="nag",
            display="NAG",
            hyperparameters=("lr", "beta1", "weight_decay"),
            lr_range=(1e-3, 1e1),
            defaults={"lr": 1e-1, "beta1": 0.9, "weight_decay": 0.0},
            beta1_meaning="momentum",
            beta2_meaning="(none)",
            source="torch.optim.SGD(nesterov=True) (Sutskever et al. 2013, ICML)",
            factory=_nag,
        ),
        OptimizerSpec(
            name="sgd",
            display="SGD-HB",
            hyperparameters=("lr", "beta1", "weight_decay"),
            lr_range=(1e-3, 1e1),
            defaults={"lr": 1e-1, "beta1": 0.9, "weight_decay": 0.0},
            beta1_meaning="heavy-ball momentum",
            beta2_meaning="(none)",
            source="torch.optim.SGD(momentum=beta1) (Polyak 1964)",
            factory=_sgd,
        ),
        OptimizerSpec(
            name="lion",
            display="Lion",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-6, 1e-2),
            defaults={"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
            beta1_meaning="interpolation between momentum and gradient in the sign update",
            beta2_meaning="momentum (exp_avg) decay",
            source="lion_pytorch.Lion (Chen et al. 2023, arXiv 2302.06675)",
            factory=_lion,
        ),
    )
}
"""Every optimizer a study can sweep, by registry name."""

DEFAULT_OPTIMIZERS = ("adamrag", "adam", "nag", "lion")
"""What ``adamrag-sens sweep`` compares when ``--optimizers`` is not given."""


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """The registry entry for ``name`` (case-insensitive).

    Raises:
        KeyError: no optimizer of that name; the message lists the known names.
    """
    try:
        return OPTIMIZERS[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], hp: dict[str, Any]) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``params`` with hyperparameters ``hp`` (defaults fill the rest)."""
    return get_optimizer_spec(name).build(params, hp)
