"""The effective learning rate: the step size a momentum method actually takes, so lr axes line up.

A momentum buffer sums past steps, so under a gradient of constant sign a momentum method moves
further per step than its nominal learning rate says. The *effective learning rate* is that
steady-state step per unit of (normalised) gradient. The derivations, for a constant gradient g:

* **Heavy ball** (``torch.optim.SGD(momentum=mu)``, dampening 0; Polyak 1964): ``b_t = mu b_{t-1} + g``
  and ``p_t = p_{t-1} - lr b_t``. The buffer tends to ``g / (1 - mu)``, so the step tends to
  ``lr / (1 - mu) * g``: effective lr ``lr / (1 - beta1)`` (beta1 is the momentum here).
* **Nesterov** (``torch.optim.SGD(momentum=mu, nesterov=True)``; Sutskever et al. 2013): the step is
  ``lr (g + mu b_t)``, which tends to ``lr (1 + mu / (1 - mu)) g = lr / (1 - mu) * g``: the same
  ``lr / (1 - beta1)``.
* **AdamRAG** (this project's reconstruction of Zhang et al. 2025; see the README's "AdamRAG as this product defines it" and :mod:`sensitivity.optim.adamrag`): the Adam step
  ``delta_t`` is accumulated in the ravine buffer ``d_t = gamma d_{t-1} + delta_t`` and the parameter
  moves by ``delta_t + gamma d_t``. With ``delta`` constant, ``d`` tends to ``delta / (1 - gamma)`` and
  the move to ``delta (1 + gamma / (1 - gamma)) = delta / (1 - gamma)``. Adam's own step tends to
  ``lr * sign(g)`` (its bias-corrected moments tend to g and g^2), so the effective lr is
  ``lr / (1 - gamma)``.
* **Adam, AdamW** (Kingma & Ba 2015): the first moment is an average with weights summing to 1 after
  bias correction, so it does not amplify the step: ``lr``.
* **Lion** (Chen et al. 2023, arXiv 2302.06675): the update is ``lr * sign(...)`` per coordinate: ``lr``.

Units differ between families: for SGD-type methods the effective lr multiplies the raw gradient,
for Adam-type methods and Lion it is a step length per coordinate. The effective axis lines up the
curves *within* a family (AdamRAG with Adam; NAG across its momentum values); across families the
nominal axes were never comparable either.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from sensitivity.catalog import OPTIMIZERS

LR_AXES = {
    "nominal": "learning rate (nominal)",
    "effective": "effective learning rate\n(steady-state step: lr/(1-gamma) AdamRAG, lr/(1-beta1) NAG/SGD, lr Adam/Lion)",
}
"""The lr axes a report can be drawn on, with their axis label."""

STEP_AMPLIFIER: dict[str, str] = {name: info.step_amplifier for name, info in OPTIMIZERS.items() if info.step_amplifier}
"""Optimizer name -> the hyperparameter c whose momentum multiplies the step by 1 / (1 - c), from the
catalog (:attr:`sensitivity.catalog.OptimizerInfo.step_amplifier`); optimizers not listed (Adam,
AdamW, Lion, and any the catalog does not know) take steps of size lr."""


def effective_lr_factor(optimizer: str, params: Mapping[str, float],
                        defaults: Mapping[str, float] | None = None) -> float:
    """``1 / (1 - c)`` for the amplifying hyperparameter c of ``optimizer`` (1 for Adam, Lion, ...).

    Args:
        optimizer: registry name (``adamrag``, ``nag``, ``sgd``, ``adam``, ``lion``, ...).
        params: the trial's hyperparameters; a missing or NaN value falls back to ``defaults``.

    Returns:
        The factor (>= 1), or NaN when the hyperparameter is unknown or outside [0, 1).
    """
    name = STEP_AMPLIFIER.get(optimizer)
    if name is None:
        return 1.0
    c = params.get(name, math.nan)
    if c is None or (isinstance(c, float) and math.isnan(c)):
        c = (defaults or {}).get(name, math.nan)
    c = float(c)
    if not (0.0 <= c < 1.0):
        return math.nan
    return 1.0 / (1.0 - c)


def effective_lr(trials: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.Series:
    """The effective learning rate of each trial (see the module docstring), aligned with ``trials``.

    Args:
        trials: frame with ``optimizer``, ``lr`` and the hyperparameter columns (``beta1``, ``gamma``).
        defaults: optimizer name -> default hyperparameters, used where a trial lacks the value;
            the catalog's when None.

    Returns:
        Series of effective learning rates (same units as ``lr``); NaN where the amplifying
        hyperparameter is unknown.
    """
    if defaults is None:
        defaults = {name: info.defaults for name, info in OPTIMIZERS.items()}
    lr = trials["lr"].astype("float64").to_numpy()
    factor = np.ones(len(trials))
    names = trials["optimizer"].astype(str).to_numpy()
    for name, hp in STEP_AMPLIFIER.items():
        mine = names == name
        if not mine.any() or hp not in trials:
            continue
        c = trials.loc[mine, hp].astype("float64").to_numpy()
        fallback = (defaults or {}).get(name, {}).get(hp, math.nan)
        c = np.where(np.isnan(c), fallback, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor[mine] = np.where((c >= 0) & (c < 1), 1.0 / (1.0 - c), np.nan)
    return pd.Series(lr * factor, index=trials.index, name="effective_lr")


def on_lr_axis(trials: pd.DataFrame, axis: str,
               defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """``trials`` with its ``lr`` column on the chosen axis (the nominal lr kept in ``lr_nominal``).

    Every metric and figure downstream then works on that axis unchanged: the lr curve groups
    trials by effective lr (an optimizer whose momentum varies gets one point per distinct
    effective lr), and widths in decades, Wortsman's sensitivity and the 2-D shares are measured on it.

    Args:
        axis: ``"nominal"`` (returns ``trials`` itself) or ``"effective"``.

    Raises:
        ValueError: unknown axis.
    """
    if axis not in LR_AXES:
        raise ValueError(f"unknown lr axis {axis!r}; choose one of {sorted(LR_AXES)}")
    if axis == "nominal":
        return trials
    out = trials.copy()
    out["lr_nominal"] = out["lr"]
    # rounded to 12 significant digits so that 1e-3 / (1 - 0.5) and 2e-3 land on one point
    eff = effective_lr(out, defaults)
    out["lr"] = eff.map(lambda v: float(f"{v:.12g}") if np.isfinite(v) else math.nan)
    return out
