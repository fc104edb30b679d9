"""Rows grouped by a label without pandas' per-group cost: what the per-optimizer loops of the
tolerance table and the good-region table iterate over (thousands of stacked bootstrap names)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def group_rows(labels: pd.Series) -> list[tuple[object, np.ndarray]]:
    """``(label, positions)`` of each label, in order of first appearance, positions ascending:
    the groups of ``groupby(labels, sort=False)`` (NaN labels dropped), as integer positions."""
    codes, uniques = pd.factorize(labels, sort=False)
    keep = np.flatnonzero(codes >= 0)
    order = keep[np.argsort(codes[keep], kind="stable")]
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return list(zip(uniques, np.split(order, bounds))) if order.size else []
