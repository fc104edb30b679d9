"""Ablation path: from an optimizer's library defaults to its best configuration, one hyperparameter at a time.

Fawcett & Hoos 2016, "Analysing differences between algorithm configurations through ablation" (J.
Heuristics 22:431), as DeepCAVE draws it: start at the default configuration; at each step, among the
hyperparameters that still differ from the best configuration, set the one whose change to its best
value improves the objective most (greedily); record how much of the total improvement each change
buys. Here every point of the path is a point the study *has* (the mean over its seeds of the report's
objective, :func:`sensitivity.report.metrics.config_table`): nothing is interpolated or predicted. Where
the study lacks a needed point (a random/qmc study almost always does, a grid that does not hold the
default value too) the path stops there and says which points are missing.

The defaults are the catalog's (:data:`sensitivity.catalog.OPTIMIZERS`: Adam lr 1e-3, betas 0.9/0.999,
...); hyperparameters the study did not sweep stay at the study's value, and the path says when that
value is not the library default.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from sensitivity.catalog import OPTIMIZERS
from sensitivity.report import metrics as M

COLUMNS = ("optimizer", "step", "hyperparameter", "from_value", "to_value", "value", "improvement",
           "improvement_share", "n_seeds", "note")
"""Columns of :func:`ablation_path`."""

_HPS = ("lr", *M.HP_COLUMNS)


def _fmt(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in point.items())


def _find(table: pd.DataFrame, point: Mapping[str, float]) -> pd.Series | None:
    keep = np.ones(len(table), dtype=bool)
    for hp, v in point.items():
        keep &= np.isclose(table[hp].to_numpy(float), v, rtol=1e-9, atol=0.0)
    rows = table[keep]
    return None if rows.empty else rows.iloc[0]


def ablation_path(trials: pd.DataFrame, metric: str,
                  defaults: Mapping[str, Mapping[str, float]] | None = None, *,
                  table: pd.DataFrame | None = None, higher_is_better: bool | None = None) -> pd.DataFrame:
    """The greedy ablation path of each optimizer, on the study's points.

    Args:
        trials: the tidy trials frame (COMPLETE rows used).
        metric: the metric analysed.
        defaults: optimizer -> hyperparameter defaults; the catalog's when None.
        table: :func:`sensitivity.report.metrics.config_table` of ``trials``, when already formed.
        higher_is_better: the metric's direction, when already known.

    Returns:
        Frame with :data:`COLUMNS`, per optimizer (catalog order) a row ``step`` 0 (the defaults:
        ``value`` the default point's mean over seeds) and one row per change: ``hyperparameter``
        changed ``from_value`` -> ``to_value``, the new point's ``value``, ``improvement`` over the
        previous step (metric units, > 0 is better whatever the direction) and ``improvement_share``
        (of the whole default -> best improvement; NaN when the default is the best). ``note`` says
        why a path stops (a missing point, no default in the catalog) or that a fixed
        hyperparameter is not at its default.
    """
    hib = M.higher_is_better(metric) if higher_is_better is None else higher_is_better
    sign = 1.0 if hib else -1.0
    table = M.config_table(trials, metric) if table is None else table
    rows: list[dict] = []
    for name in M.optimizer_order(table["optimizer"]):
        mine = table[(table["optimizer"] == name) & table["value"].notna()]
        d = (defaults or {}).get(name) if defaults is not None else (OPTIMIZERS[name].defaults if name in OPTIMIZERS else None)
        base = {"optimizer": name, "hyperparameter": "", "from_value": math.nan, "to_value": math.nan,
                "value": math.nan, "improvement": math.nan, "improvement_share": math.nan, "n_seeds": 0}
        if d is None:
            rows.append({**base, "step": 0, "note": f"no library defaults for {name!r} in the catalog"})
            continue
        swept = [hp for hp in _HPS if mine[hp].nunique(dropna=True) > 1]
        fixed_off = [f"{hp}={mine[hp].iloc[0]:.3g} (default {d[hp]:.3g})" for hp in _HPS
                     if hp not in swept and hp in d and mine[hp].notna().any()
                     and not math.isclose(float(mine[hp].iloc[0]), d[hp], rel_tol=1e-9)]
        fixed_note = ("fixed off the defaults: " + "; ".join(fixed_off)) if fixed_off else ""
        best = M.best_row(mine, metric)
        start = {hp: float(d[hp]) for hp in swept if hp in d}
        here = _find(mine, start)
        if here is None:
            rows.append({**base, "step": 0, "note": "; ".join(filter(None, [
                f"the study has no point at the library defaults ({_fmt(start)}): no path", fixed_note]))})
            continue
        total = sign * (float(best["value"]) - float(here["value"]))
        rows.append({**base, "step": 0, "value": float(here["value"]), "n_seeds": int(here["n_seeds"]),
                     "note": "; ".join(filter(None, ["library defaults", fixed_note]))})
        current = dict(start)
        step = 0
        while True:
            todo = [hp for hp in current if not math.isclose(current[hp], float(best[hp]), rel_tol=1e-9)]
            if not todo:
                break
            candidates, missing = [], []
            for hp in todo:
                point = {**current, hp: float(best[hp])}
                found = _find(mine, point)
                (missing.append(_fmt(point)) if found is None else candidates.append((hp, point, found)))
            if not candidates:
                rows.append({**base, "step": step + 1, "note": "the study lacks the points " + "; ".join(missing)
                             + ": the path stops here"})
                break
            hp, point, found = max(candidates, key=lambda c: sign * float(c[2]["value"]))
            gain = sign * (float(found["value"]) - float(here["value"]))
            step += 1
            rows.append({**base, "step": step, "hyperparameter": hp, "from_value": current[hp],
                         "to_value": float(best[hp]), "value": float(found["value"]), "improvement": gain,
                         "improvement_share": gain / total if total > 0 else math.nan,
                         "n_seeds": int(found["n_seeds"]),
                         "note": ("the study lacks the points " + "; ".join(missing) + ": not compared")
                         if missing else ""})
            current, here = point, found
    return pd.DataFrame(rows, columns=list(COLUMNS))
