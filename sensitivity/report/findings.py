"""The findings paragraph that opens a report: what the numbers say, in words, generated from them.

:func:`study_findings` reads a study's analysis (:class:`sensitivity.report.analysis.StudyAnalysis`:
its summary, settings and seed-bootstrap differences) and says which
optimizer tolerates the widest range of each swept hyperparameter (the learning rate by the
interpolated tolerance width; each other hyperparameter by the good-region share of its pair with
the learning rate), by how much it leads the next one, and whether that lead exceeds the seed
uncertainty (the paired bootstrap interval of the difference excludes 0). With one seed it says the
figures carry no uncertainty estimate. :func:`compare_findings` does the same across studies.
Nothing here is hand-written per study: every sentence is a template filled from the table.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from sensitivity.report.analysis import StudyAnalysis

AXIS_WORDS = {"lr": "learning rate", "beta1": "beta1", "beta2": "beta2", "gamma": "gamma",
              "weight_decay": "weight decay"}


def _name(summary: pd.DataFrame, optimizer: str) -> str:
    row = summary[summary["optimizer"] == optimizer]
    return str(row["optimizer_display"].iloc[0]) if not row.empty else optimizer


def _difference(analysis: StudyAnalysis, column: str, a: str, b: str) -> Mapping | None:
    for rec in analysis.differences.to_dict("records"):
        if rec["metric"] != column:
            continue
        if (rec["a"], rec["b"]) == (a, b):
            return rec
        if (rec["a"], rec["b"]) == (b, a):  # flip to a - b
            return {**rec, "a": a, "b": b, "difference": -rec["difference"],
                    "low": -rec["high"], "high": -rec["low"]}
    return None


def _unsigned_zero(text: str) -> str:
    """``"-0.0"`` (a tiny negative bound rounded away) printed as ``"0.0"``."""
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def _uncertainty_clause(analysis: StudyAnalysis, column: str, a: str, b: str, fmt) -> str:
    if analysis.n_seeds < 2:
        return ""
    rec = _difference(analysis, column, a, b)
    if rec is None or not (math.isfinite(rec["low"]) and math.isfinite(rec["high"])):
        return ""
    level = f"{100 * analysis.settings.level:g}%"
    span = (f"{level} interval of the paired difference over seed draws: {_unsigned_zero(fmt(rec['low']))} to "
            f"{_unsigned_zero(fmt(rec['high']))}")
    if rec["exceeds"]:
        return f"; the lead exceeds the seed uncertainty ({span})"
    return f"; the lead is within the seed uncertainty ({span}), so the two are not told apart"


def _ranking_sentence(analysis: StudyAnalysis, column: str, what: str, fmt, unit: str, diff_fmt=None,
                      bound_fmt=None, censored: str | None = None) -> str | None:
    """"<what>: A <v>, B <v>, ... <unit>; A leads B by <d>[; uncertainty]." (higher is better).

    ``fmt`` formats a value, ``diff_fmt`` the lead (default: ``fmt`` and the unit), ``bound_fmt`` the
    ends of its interval (default ``fmt``). ``censored`` names a boolean column marking values that
    are only lower bounds (a tolerance range reaching an end of the swept lrs): they read ">=v", a
    censored leader leads "by at least" the difference, and a lead over a censored runner-up is
    "as measured", since that runner-up's true value may be larger (and, when the leader is censored
    too, so may the leader's: the true lead may then be larger or smaller). Top two that print the same
    value are "level", not one leading by 0."""
    summary = analysis.summary
    bound_fmt = bound_fmt or fmt
    diff_fmt = diff_fmt or (lambda v: f"{fmt(v)}{(' ' + unit) if unit else ''}")
    rows = summary[summary[column].notna()].sort_values(column, ascending=False, kind="stable")
    if rows.empty:
        return None

    def bound(r) -> bool:
        return bool(censored) and bool(r[censored])

    items = [f"{r['optimizer_display']} {'>=' if bound(r) else ''}{fmt(r[column])}" for _, r in rows.iterrows()]
    text = f"{what}: " + ", ".join(items) + (f" {unit}" if unit else "")
    if len(rows) >= 2:
        first, second = rows.iloc[0], rows.iloc[1]
        a, b = first["optimizer_display"], second["optimizer_display"]
        lead = float(first[column] - second[column])
        if fmt(first[column]) == fmt(second[column]):
            tied = [r for _, r in rows.iterrows() if fmt(r[column]) == fmt(first[column])]  # every one level with the top
            text += (f"; {_join([str(r['optimizer_display']) for r in tied])} are level"
                     + (" as measured" if any(bound(r) for r in tied) else ""))
        elif bound(second):
            why = (f"both ranges reach an end of the swept lrs, so the true lead may be larger or smaller"
                   if bound(first) else f"{b}'s range reaches an end of the swept lrs, so the true lead may be smaller")
            text += f"; {a} leads {b} by {diff_fmt(lead)} as measured ({why})"
            text += _uncertainty_clause(analysis, column, first["optimizer"], second["optimizer"], bound_fmt)
        else:
            text += f"; {a} leads {b} by {'at least ' if bound(first) else ''}{diff_fmt(lead)}"
            text += _uncertainty_clause(analysis, column, first["optimizer"], second["optimizer"], bound_fmt)
    return text + "."


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _no_region_clause(analysis: StudyAnalysis, optimizers: list[str], y: str) -> str:
    """" AdamW also swept beta1 but has no good region: it never improved on its initial value." for
    the ``optimizers`` that varied lr and ``y`` but have no good-region share; "" when there are none."""
    if not optimizers:
        return ""
    names = _join([_name(analysis.summary, o) for o in optimizers])
    never = all(o in analysis.never_improved for o in optimizers)
    one = len(optimizers) == 1
    why = (f": {'it' if one else 'they'} never improved on {'its' if one else 'their'} initial value" if never
           else "")
    return f" {names} also swept {AXIS_WORDS[y]} but {'has' if one else 'have'} no good region{why}."


def study_findings(analysis: StudyAnalysis, *, task: str = "") -> list[str]:
    """Sentences summarising a study's tolerance figures (the report's opening paragraph).

    Args:
        analysis: :func:`sensitivity.report.analysis.analyze` of the study (its summary, settings,
            swept pairs and seed-bootstrap differences; widths on its lr axis).
        task: the workload's name, for the first sentence.

    Returns:
        A list of sentences, in reading order.
    """
    out = []
    summary = analysis.summary
    seeds = analysis.n_seeds
    axis = "effective learning rate" if analysis.settings.lr_axis == "effective" else "learning rate"
    where = f" on {task}" if task else ""
    out.append(
        f"{len(summary)} optimizers{where}, {seeds} seed{'s' if seeds != 1 else ''}; widths are in decades of "
        f"{axis}, within tolerance meaning a run {analysis.settings.tolerance_text}."
    )
    for name in analysis.never_improved:  # the same fact titles their figure panels
        out.append(f"{_name(summary, name)} never improved on its initial value: no best lr and no width.")
    dec = lambda v: f"{v:.2f}"  # noqa: E731
    sentence = _ranking_sentence(analysis, "tolerance_width_decades", f"Widest tolerated {axis} range", dec, "decades",
                                 censored="tolerance_censored" if "tolerance_censored" in summary else None)
    if sentence:
        out.append(sentence)
    censored = summary[summary["tolerance_censored"].astype(bool)]
    if not censored.empty:
        names = list(censored["optimizer_display"])
        verb = "reaches" if len(names) == 1 else "reach"
        out.append(f"The range{'s' if len(names) > 1 else ''} of {_join(names)} {verb} an end of the swept lrs, "
                   "so the true range may be wider than measured.")
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    for x, y in analysis.pairs:
        if x != "lr":
            continue
        column = f"good_share_{x}_{y}"
        if column not in summary or summary[column].notna().sum() == 0:
            continue
        with_share = set(summary.loc[summary[column].notna(), "optimizer"])
        without = [o for o in analysis.pair_optimizers.get((x, y), ()) if o not in with_share]
        if len(with_share) == 1:
            r = summary[summary[column].notna()].iloc[0]
            alone = "" if without else f" (the only optimizer that swept {AXIS_WORDS[y]})"
            sentence = (f"{r['optimizer_display']}'s good region covers {pct(r[column])} of its swept "
                        f"lr x {AXIS_WORDS[y]} box{alone}.")
        else:
            points = lambda v: f"{100 * v:.1f} percentage points"  # noqa: E731
            sentence = _ranking_sentence(analysis, column, f"Share of the swept lr x {AXIS_WORDS[y]} box within tolerance",
                                         pct, "", diff_fmt=points, bound_fmt=lambda v: f"{100 * v:.1f}")
        if sentence:
            out.append(sentence + _no_region_clause(analysis, without, y))
    div = summary[summary["divergence_rate"].notna()]
    if not div.empty:
        diverging = div[div["divergence_rate"] > 0].sort_values("divergence_rate", ascending=False)
        calm = div[div["divergence_rate"] == 0]
        parts = [f"{r.optimizer_display} {pct(r.divergence_rate)}" for r in diverging.itertuples(index=False)]
        text = ("Share of trials that diverged: " + ", ".join(parts)) if parts else "No trial diverged"
        if parts and not calm.empty:
            text += "; " + _join(list(calm["optimizer_display"])) + " never diverged"
        out.append(text + ".")
    if seeds < 2:
        out.append("With one seed these figures carry no uncertainty estimate; sweep with --seeds 3 (or more) "
                   "for bootstrap intervals and to tell real differences from seed noise.")
    else:
        kind = analysis.bootstrap or "bootstrap"
        out.append(f"Intervals: {100 * analysis.settings.level:g}% percentile intervals of the seed "
                   f"bootstrap ({kind}, {seeds} seeds; paired across optimizers).")
    return out


def budget_findings(studies: Sequence[tuple[str, str, int | None]]) -> list[str]:
    """A sentence for each task compared on more than one budget, from (label, task, epochs per
    trial) of each study: a width or best value measured after 3 epochs is not the same quantity as
    one after 10, so the reader is told before reading the two side by side. [] when every task's
    studies share their epochs (or a task is compared once)."""
    by_task: dict[str, list[tuple[str, int | None]]] = {}
    for label, task, epochs in studies:
        by_task.setdefault(task, []).append((label, epochs))
    out = []
    for task, rows in by_task.items():
        if len({e for _, e in rows}) > 1:
            each = ", ".join(f"{label} {e} epochs" if e is not None else f"{label} an unknown number of epochs"
                             for label, e in rows)
            out.append(f"The {task} studies train for different budgets ({each} a trial): their widths and "
                       "best values are measured on different budgets, not alike.")
    return out


def compare_findings(table: pd.DataFrame) -> list[str]:
    """Sentences summarising a cross-study table (:func:`sensitivity.report.compare.compare_table`).

    Says, per optimizer, in how many studies it had the widest tolerated lr range, and the range of
    its widths across studies (two studies of one task count twice: the table's ``task`` column is a
    label per study). A study counts for its leader only when the lead is established: the top
    two widths differ at the printed precision (0.01 decade) and the runner-up's is not a lower bound
    (its range reaching an end of the swept lrs, ``tolerance_censored``); the other studies are
    counted as undecided.
    """
    out = []
    tasks = list(dict.fromkeys(table["task"]))
    out.append(f"{len(tasks)} studies compared: {', '.join(tasks)}.")
    table = table.reset_index(drop=True)  # one label per row, whatever the caller's index
    censored = (table["tolerance_censored"].fillna(False).astype(bool) if "tolerance_censored" in table
                else pd.Series(False, index=table.index))
    wins: dict[str, int] = {}
    undecided = []
    for task, g in table.groupby("task", sort=False):
        g = g[g["tolerance_width_decades"].notna()].sort_values("tolerance_width_decades", ascending=False,
                                                                 kind="stable")
        if g.empty:
            continue
        if len(g) >= 2 and (f"{g['tolerance_width_decades'].iloc[0]:.2f}" == f"{g['tolerance_width_decades'].iloc[1]:.2f}"
                            or censored[g.index[1]]):
            undecided.append(str(task))
            continue
        top = g["optimizer_display"].iloc[0]
        wins[top] = wins.get(top, 0) + 1
    for name, g in table.groupby("optimizer_display", sort=False):
        w = g["tolerance_width_decades"].dropna()
        if w.empty:
            out.append(f"{name}: no study in which it learned.")
            continue
        n = wins.get(name, 0)
        spread = (f"its width is {w.iloc[0]:.2f} decades" if len(w) == 1
                  else f"its width ranges from {w.min():.2f} to {w.max():.2f} decades over {len(w)} studies")
        bounds = int(censored[w.index].sum())
        if bounds:
            which = ("a lower bound" if len(w) == 1 else "one of them a lower bound" if bounds == 1
                     else f"{bounds} of them lower bounds")
            spread += f" ({which}: the range reaches an end of the swept lrs)"
        out.append(f"{name}: widest tolerated lr range in {n} of {len(tasks)} stud{'ies' if len(tasks) != 1 else 'y'}; "
                   f"{spread}.")
    if undecided:
        out.append(f"Widest range not established on {_join(undecided)}: the top two widths are level, or the "
                   f"runner-up's range reaches an end of the swept lrs.")
    return out
