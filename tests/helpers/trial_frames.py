"""Synthetic tidy trials frames (no storage) with known answers, for the importance and figure tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

INITIAL = 100.0
"""L0 of every synthetic trial: far above every value, so ``min(L, L0)`` never clips."""


def trials_frame(points: list[dict], values, *, optimizer: str = "adam", seeds=None,
                 initial: float = INITIAL, diverged=None) -> pd.DataFrame:
    """A tidy trials frame (the columns the report reads) of one optimizer: one row per point and value.

    ``points``: the hyperparameters of each trial; ``values``: its final validation loss.
    """
    n = len(points)
    frame = pd.DataFrame(points)
    for hp in ("lr", "beta1", "beta2", "gamma", "weight_decay"):
        if hp not in frame:
            frame[hp] = np.nan
    frame["optimizer"] = optimizer
    frame["optimizer_display"] = optimizer
    frame["state"] = "COMPLETE"
    frame["seed"] = pd.array([0] * n if seeds is None else list(seeds), dtype="Int64")
    frame["diverged"] = pd.array([False] * n if diverged is None else list(diverged), dtype="boolean")
    frame["initial_val_loss"] = float(initial)
    frame["final_val_loss"] = np.asarray(values, dtype=float)
    frame["wall_time_s"] = np.nan
    frame["trial"] = np.arange(n)
    return frame


def grid_study(f, lrs, beta1s, *, seeds=(0,), noise=None, optimizer="adam", initial=INITIAL) -> pd.DataFrame:
    """Every (lr, beta1, seed) with final loss ``f(i, j) + noise[seed]`` (i, j the level numbers)."""
    points, values, seed_col = [], [], []
    for (i, lr), (j, b1), s in itertools.product(enumerate(lrs), enumerate(beta1s), seeds):
        points.append({"lr": lr, "beta1": b1})
        values.append(f(i, j) + (0.0 if noise is None else noise[s]))
        seed_col.append(s)
    return trials_frame(points, values, optimizer=optimizer, seeds=seed_col, initial=initial)
