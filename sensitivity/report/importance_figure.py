"""The importance figure and the findings sentences, drawn from :func:`sensitivity.report.importance.importance_table`.

One row of panels per optimizer: on the left, horizontal bars of each swept hyperparameter's main-effect
share and total-effect share (with the seed-bootstrap interval as whiskers) and the noise share (seeds);
on the right, the matrix of pairwise interaction shares. Both read the table only; nothing is
recomputed here.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sensitivity.report import importance as I
from sensitivity.report import metrics as M
from sensitivity.report import style

MAIN_COLOR, TOTAL_COLOR, NOISE_COLOR = "#0173b2", "#9ecae1", "#949494"


@contextlib.contextmanager
def _style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85), matplotlib.rc_context(
        {"figure.dpi": 100, "savefig.dpi": 130, "axes.titlesize": "medium", "text.usetex": False}
    ):
        yield


def importance_figure(table: pd.DataFrame, *, region: str = "all",
                      display: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """Per optimizer: bars of main and total effect shares with interval whiskers, and the interaction matrix.

    Args:
        table: :func:`~sensitivity.report.importance.importance_table`.
        region: ``"all"`` or ``"good"``.
        display: optimizer name -> display name.
        title: a first title line (user text: drawn as plain text, no mathtext).

    Returns:
        A matplotlib Figure (Agg canvas), one row of two panels per optimizer; shares in percent.

    Raises:
        ValueError: ``table`` has no row of ``region``.
    """
    rows = table[table["region"] == region]
    if rows.empty:
        raise ValueError(f"the importance table has no row of region {region!r}")
    names = M.optimizer_order(rows["optimizer"])
    display = dict(display or {})
    with _style():
        fig = Figure(layout="constrained", figsize=(8.0, 2.4 * len(names) + 0.6))
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(len(names), 2, width_ratios=(3, 1.6))
        what = "the objective's variance" if region == "all" else "the variance of 'in the good region'"
        kinds = {str(t).split(" (")[0] for t in rows.loc[rows["share_low"].notna(), "interval"] if t}
        whiskers = {frozenset(): "no intervals: one seed", frozenset({"seed bootstrap"}): "whiskers: seed-bootstrap interval",
                    frozenset({"refits"}): "whiskers: range over the estimator's refits"}.get(
            frozenset(kinds), "whiskers: seed-bootstrap interval, or range over the estimator's refits")
        head = f"{style.literal_text(title)}\n" if title else ""
        style.suptitle(fig, f"{head}Share of {what} per optimizer\n({whiskers})", fontsize="medium")
        keys: dict[str, object] = {}  # one legend for every panel, below them: inside a panel it hid bars
        for r, name in enumerate(names):
            mine = rows[rows["optimizer"] == name]
            ax = fig.add_subplot(grid[r, 0])
            _bars(ax, mine, style.literal_text(display.get(name, name)))
            for handle, label in zip(*ax.get_legend_handles_labels()):
                keys.setdefault(label, handle)
            _matrix(fig.add_subplot(grid[r, 1]), mine)
        if keys:
            style.legend_below(fig, list(keys.values()), list(keys), fontsize="x-small")
        style.fit_labels(fig)  # last: every label, title and legend inside the saved figure
    return fig


def _bars(ax, mine: pd.DataFrame, title: str) -> None:
    mains = mine[mine["kind"] == "main"]
    hps = list(mains["term"])
    totals = mine[mine["kind"] == "total"].set_index("term")
    noise = mine[mine["kind"] == "noise"]
    labels = hps + ([I.NOISE] if not noise.empty else [])
    y = np.arange(len(labels))[::-1].astype(float)
    h = 0.38

    def draw(values, lows, highs, pos, color, label):
        v = np.asarray(values, float) * 100
        ok = np.isfinite(v)
        ax.barh(pos[ok], v[ok], height=h, color=color, label=label)
        lo, hi = np.asarray(lows, float) * 100, np.asarray(highs, float) * 100
        has = ok & np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            ax.errorbar(v[has], pos[has], xerr=[np.maximum(v[has] - lo[has], 0), np.maximum(hi[has] - v[has], 0)],
                        fmt="none", ecolor="black", elinewidth=1, capsize=2)

    n = len(hps)
    draw(mains["share"], mains["share_low"], mains["share_high"], y[:n] + h / 2, MAIN_COLOR, "main effect")
    if not totals.empty:
        t = totals.reindex(hps)
        draw(t["share"], t["share_low"], t["share_high"], y[:n] - h / 2, TOTAL_COLOR, "total effect")
    if not noise.empty:
        if noise["share"].notna().any():
            draw(noise["share"], noise["share_low"], noise["share_high"], y[n:], NOISE_COLOR, "noise (seeds)")
        else:
            ax.text(1, y[n], "not separable (one trial per point)", va="center", fontsize="x-small", color="dimgray")
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of variance (%)")
    estimator = mains["estimator"].iloc[0] if len(mains) else ""
    short = "exact (grid)" if estimator == I.EXACT else estimator.split(" (")[0].replace("optuna ", "")
    ax.set_title(f"{title}: {short}" if short else title, loc="left")
    notes = [n for n in mine["note"].dropna().unique() if n.startswith("undefined")]
    if notes:
        ax.text(50, float(np.mean(y)), notes[0], ha="center", va="center", fontsize="small", wrap=True)


def _matrix(ax, mine: pd.DataFrame) -> None:
    hps = list(mine[mine["kind"] == "main"]["term"])
    inter = mine[mine["kind"] == "interaction"].set_index("term")
    if len(hps) < 2 or inter.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, "no pairwise\ninteractions\n(one hyperparameter, or\nmain effects only)", ha="center",
                va="center", fontsize="small", transform=ax.transAxes)
        return
    k = len(hps)
    # the lower triangle without its diagonal: rows hps[1:], columns hps[:-1]
    m = np.full((k - 1, k - 1), np.nan)
    bounds: dict[tuple[int, int], str] = {}
    for i in range(k):
        for j in range(i + 1, k):
            term = I.pair_term(hps[i], hps[j])
            if term in inter.index:
                row = inter.loc[term]
                m[j - 1, i] = 100 * float(row["share"])
                if math.isfinite(row["share_low"]):
                    bounds[(j - 1, i)] = f"\n[{100 * row['share_low']:.0f}, {100 * row['share_high']:.0f}]"
    top = max(10.0, float(np.nanmax(m))) if np.isfinite(m).any() else 10.0
    ax.imshow(m, vmin=0, vmax=top, cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.0f}" + bounds.get((r, c), ""), ha="center", va="center", fontsize="x-small",
                    color="white" if v > 0.6 * top else "black")
    crowded = k - 1 > 2  # short names stand upright; more columns lean, anchored at their right end
    ax.set_xticks(range(k - 1), hps[:-1], rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_yticks(range(k - 1), hps[1:])
    ax.grid(False)
    ax.set_title("interactions (%)", loc="left")


# ---- the findings -------------------------------------------------------------------------

def _pct(row) -> str:
    text = f"{100 * row['share']:.0f} %"
    if math.isfinite(row["share_low"]) and math.isfinite(row["share_high"]):
        text += f" [{100 * row['share_low']:.0f}, {100 * row['share_high']:.0f}]"
    return text


def importance_findings(table: pd.DataFrame, *, display: Mapping[str, str] | None = None,
                        minimum: float = 0.05) -> list[str]:
    """One sentence per optimizer on what explains its objective's variance (region ``all``).

    The largest main effect is named as the largest only when its interval lies above every other
    main effect's (or, without intervals, "as measured"); an interaction or the noise is named when its
    share reaches ``minimum`` and, with intervals, when its lower bound is above 0. Shares in percent
    with their interval, e.g. ``"Lion: lr explains 71 % [64, 78] of the variance, the lr x beta2
    interaction 12 % [7, 18]; seeds 3 % [1, 5]."``.

    Returns:
        The sentences, optimizers in catalog order.
    """
    display = dict(display or {})
    rows = table[table["region"] == "all"]
    out = []
    for name in M.optimizer_order(rows["optimizer"]):
        mine = rows[rows["optimizer"] == name]
        who = display.get(name, name)
        mains = mine[(mine["kind"] == "main")].sort_values("share", ascending=False, na_position="last")
        if mains.empty or not mains["share"].notna().any():
            note = next((n for n in mine["note"] if isinstance(n, str) and n), "no swept hyperparameter")
            out.append(f"{who}: no variance decomposition ({note}).")
            continue
        top = mains.iloc[0]
        bounded = math.isfinite(top["share_low"])
        rest = mains.iloc[1:]
        if rest.empty:  # trivially all of the variance between points: say why
            lead = f"{top['term']}, the only hyperparameter swept, explains {_pct(top)} of the variance"
        elif bounded and (rest["share_high"] < top["share_low"]).all():
            lead = f"{top['term']} explains most, {_pct(top)} of the variance"
        elif bounded:
            tied = [r for _, r in rest.iterrows() if not r["share_high"] < top["share_low"]]
            names = " and ".join([top["term"], *(r["term"] for r in tied)])
            lead = (f"{names} explain shares that the intervals do not separate ("
                    + ", ".join(f"{r['term']} {_pct(r)}" for r in [top, *tied]) + ")")
        else:
            lead = f"{top['term']} explains {_pct(top)} of the variance (one seed: no interval)"
        parts = [lead]
        inter = mine[mine["kind"] == "interaction"].sort_values("share", ascending=False)
        if not inter.empty:
            big = inter.iloc[0]
            if big["share"] >= minimum and (not math.isfinite(big["share_low"]) or big["share_low"] > 0):
                parts.append(f"the {big['term']} interaction {_pct(big)}")
        noise = mine[mine["kind"] == "noise"]
        if not noise.empty and math.isfinite(noise.iloc[0]["share"]) and noise.iloc[0]["share"] >= minimum:
            parts.append(f"seeds {_pct(noise.iloc[0])}")
        estimator = top["estimator"]
        tail = "" if estimator == I.EXACT else " (fANOVA estimate, main effects only)"
        out.append(f"{who}: " + ", ".join(parts) + tail + ".")
    return out
