"""The factories that build each catalog optimizer as a torch optimizer.

What each optimizer is (names, hyperparameters, defaults, lr ranges, what its betas mean) lives in
the torch-free :mod:`sensitivity.catalog`; this module only maps a catalog name and a
hyperparameter dict to a ``torch.optim.Optimizer``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from sensitivity.catalog import HyperParams, optimizer_info

Factory = Callable[[Iterable[torch.nn.Parameter], HyperParams], torch.optim.Optimizer]


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
    # Nesterov's update with momentum 0 is plain SGD; torch refuses nesterov=True without momentum
    # ("Nesterov momentum requires a momentum and zero dampening"), so momentum 0 builds plain SGD.
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["beta1"], nesterov=hp["beta1"] > 0, weight_decay=hp["weight_decay"]
    )


def _sgd(params, hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["beta1"], weight_decay=hp["weight_decay"])


def _lion(params, hp: HyperParams) -> torch.optim.Optimizer:
    from lion_pytorch import Lion

    return Lion(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), weight_decay=hp["weight_decay"])


FACTORIES: dict[str, Factory] = {
    "adamrag": _adamrag,
    "adam": _adam,
    "adamw": _adamw,
    "nag": _nag,
    "sgd": _sgd,
    "lion": _lion,
}
"""Catalog name -> factory ``(params, hyperparameters) -> torch optimizer`` (every hyperparameter given)."""


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], hp: dict[str, Any]) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``params`` with ``hp`` over the catalog defaults.

    Keys of ``hp`` the optimizer does not take (``gamma`` for Adam) are ignored.

    Raises:
        KeyError: no optimizer of that name (the message lists the known names).
    """
    info = optimizer_info(name)
    merged = {**info.defaults, **{k: v for k, v in hp.items() if k in info.hyperparameters}}
    return FACTORIES[info.name](params, merged)


IMPLEMENTATION_SWITCHES = frozenset({"foreach", "fused", "capturable", "differentiable"})
"""Constructor arguments of torch optimizers that choose how the update is computed, not what it
is; :func:`optimizer_settings` leaves them out."""


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Every setting ``optimizer`` was built with, as torch resolved it: its ``defaults`` (the
    constructor's arguments with the library's own defaults filled in: eps, maximize, amsgrad,
    dampening, nesterov, decoupled weight decay, AdamRAG's gamma schedule ...), JSON-safe
    (tuples become lists), without the implementation switches (:data:`IMPLEMENTATION_SWITCHES`).

    A trial stores this beside its params, so what a trial trained with is on record even for
    the settings a sweep never varies. The learning rate is the constructor's (the peak of a
    schedule)."""
    def clean(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [clean(x) for x in v]
        if isinstance(v, torch.Tensor):
            return v.item() if v.numel() == 1 else v.tolist()
        return v

    return {k: clean(v) for k, v in sorted(optimizer.defaults.items()) if k not in IMPLEMENTATION_SWITCHES}

