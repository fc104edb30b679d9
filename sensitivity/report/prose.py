"""The report's words: metric definitions with sources, study facts, the readable summary table.

One concept: the prose both renderings share (:mod:`sensitivity.report.markdown_report`,
:mod:`sensitivity.report.html_report`, and the cross-study page :mod:`sensitivity.report.compare`).
Every function reads a loaded study (:class:`~sensitivity.report.frame.TrialsData`) or its analysis
(:class:`~sensitivity.report.analysis.StudyAnalysis`) and returns plain text; escaping is the
renderers' job.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import pandas as pd

from sensitivity.report import metrics
from sensitivity.report.analysis import StudyAnalysis
from sensitivity.report.frame import COMPLETE, TrialsData
from sensitivity.report.style import AXIS_LABELS, format_lr

BAD_RUNS = ("Every final value is clipped at the initial one, min(L, L0) for losses and max(acc, acc0) for "
            "accuracies, and a diverged run is counted at the initial value, L0 (acc0): a diverged run and a run that ended worse than "
            "its start are alike in the objective, the sweep's best line, every metric and every figure. Where "
            "two points tie, the one that did not diverge ranks first, so a diverged run never ranks above a "
            "finished one. Curves of losses per epoch are drawn unclipped; their axis ends at 1.5 x the initial "
            "value, and a triangle under its top edge marks where a curve rises above it.")
"""The one ordering of bad runs, as the report states it."""

DEFINITIONS = (
    ("Tolerance width",
     "Span, in decades of lr, of the largest lr interval in which the optimizer's lr curve, read as linear "
     "in log10(lr) between grid points, keeps at least 1 - tau of the improvement its best lr achieves: "
     "L <= L* + tau (L0 - L*) for a minimised metric (A >= A* - tau (A* - A0) for a maximised one). "
     "Diverged points are never within (they are interpolated towards L0); an optimizer that never "
     "improved on L0 has none. '>=' marks an interval that reaches an end of the swept lrs.",
     "adamrag-sens README, Metrics; the L* .. L0 normalisation of Wortsman et al. 2023, arXiv 2309.14322"),
    ("Relative width",
     "The same interpolated width with the relative threshold: within a fraction of the best loss "
     "(L <= (1 + t) L*), or within t in the metric's own units for a maximised metric (accuracy points).",
     "adamrag-sens README, Metrics"),
    ("Good-region share",
     "Fraction of the swept box of a hyperparameter pair (axes log10 lr, -log10(1 - beta), log10 weight "
     "decay) whose bilinearly interpolated final metric is within the tolerance threshold; each cell is "
     "the best over the other hyperparameters. Random/qmc studies: the share of sampled points within.",
     "adamrag-sens README, Metrics"),
    ("LR sensitivity",
     "E over the lr grid of [min(L(lr), L0) - L*]: L(lr) the final metric on the optimizer's lr curve, "
     "L* its best value on the grid, L0 the value at initialisation. 0 means every lr reaches the best; "
     "in the metric's units. For accuracy read as error 1 - acc.",
     "Wortsman et al. 2023, Small-scale proxies for large-scale Transformer training instabilities, "
     "arXiv 2309.14322, sec. 2.2"),
    ("Expected best after n configurations",
     "With the N trials ordered worst to best, v_(1) .. v_(N), the expected best of n draws with "
     "replacement is sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]; every trial (grid point, seed) one equally "
     "likely draw; shading +-1 sd of the best of n.",
     "Dodge et al. 2019, Show Your Work, EMNLP, arXiv 1909.03004; Sivaprasad et al. 2020, Optimizer "
     "Benchmarking Needs to Account for Hyperparameter Tuning, ICML, arXiv 1910.11758"),
    ("Seed uncertainty",
     "Bounds [low, high]: the 95% percentile interval of each figure recomputed on draws of the seeds "
     "with replacement (enumerated exactly up to 7 seeds), the same draw for every optimizer; a "
     "difference between optimizers exceeds the seed uncertainty when the interval of the paired "
     "difference excludes 0.",
     "Efron & Tibshirani 1993, An Introduction to the Bootstrap, ch. 13"),
    ("Effective learning rate",
     "The steady-state step under a constant gradient: lr / (1 - gamma) for AdamRAG (its ravine buffer "
     "sums past Adam steps), lr / (1 - beta1) for heavy-ball and Nesterov SGD (momentum buffer), lr for "
     "Adam and Lion (normalised average or sign step).",
     "Derivation in sensitivity/report/effective_lr.py; Polyak 1964; Sutskever et al. 2013"),
    ("Relative performance",
     "best/L for losses, acc/best for accuracies, per lr, relative to the optimizer's own best; NaN -> 0.",
     "Schneider, Balles & Hennig 2019, DeepOBS: A Deep Learning Optimizer Benchmark Suite, ICLR"),
    ("Divergence rate",
     "Share of completed trials whose training diverged: a non-finite training loss or parameter, or an "
     "epoch's mean training loss above the study's divergence factor times the initial loss L0. Evaluation "
     "plays no part: a run with stable training and a validation loss above factor x L0 (typically BatchNorm "
     "statistics lagging fast-moving weights) is counted apart, as 'evaluation far above training'.",
     "adamrag-sens README, Metrics"),
    ("Bad runs",
     BAD_RUNS,
     "Wortsman et al. 2023, arXiv 2309.14322, sec. 2.2 (the min(L, L0) clipping)"),
    ("Performance profile",
     "rho_s(tau): share of tasks on which optimizer s is within a factor tau of the best optimizer "
     "(computed across studies by adamrag-sens compare; one study is one task).",
     "Dolan & More 2002, Math. Program. 91:201-213; AlgoPerf, Dahl et al. 2023, arXiv 2306.07179"),
)
"""(name, definition, source) of each metric, printed in the report."""


# ---- content shared by both renderings ----------------------------------------------------------

def number_text(v: Any, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits; "" for None, NA and non-finite floats."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _with_bounds(summary: pd.DataFrame, col: str, fmt: Callable[[float], str]) -> list[str]:
    """Each value of ``col`` formatted, followed by ``[low, high]`` when the summary has bounds."""
    lows = summary.get(f"{col}_low")
    highs = summary.get(f"{col}_high")
    out = []
    for i, v in enumerate(summary[col]):
        if v is None or pd.isna(v):
            out.append("")
            continue
        text = fmt(float(v))
        if lows is not None and highs is not None and pd.notna(lows.iloc[i]) and pd.notna(highs.iloc[i]):
            text += f" [{fmt(float(lows.iloc[i]))}, {fmt(float(highs.iloc[i]))}]"
        out.append(text)
    return out


def summary_table(summary: pd.DataFrame, *, metric: str, lr_axis: str = "nominal", unit: str | None = None) -> pd.DataFrame:
    """The summary as readable strings, columns that are empty for every optimizer dropped.

    ``summary``: a :func:`~sensitivity.report.analysis.summarize` frame of ``metric`` on ``lr_axis``
    (:attr:`~sensitivity.report.analysis.StudyAnalysis.summary`, or one study's rows of the compare table).

    With two seeds or more each figure is followed by its seed-bootstrap interval ``[low, high]``;
    a tolerance width whose interval reaches an end of the swept lrs is prefixed with ``>=``.
    ``unit``: the metric's unit as the study declared it
    (:attr:`~sensitivity.report.analysis.AnalysisSettings.metric_unit`); the registry's when None.
    """
    unit = metrics.metric_unit(metric) if unit is None else unit
    unit = f" ({unit})" if unit else ""
    three = lambda v: f"{v:.3g}"  # noqa: E731
    four = lambda v: f"{v:.4g}"  # noqa: E731
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    lr_fmt = format_lr
    shares = [c for c in summary.columns if c.startswith("good_share_") and not c.endswith(("_low", "_high"))]
    out = pd.DataFrame(index=summary.index)
    out["optimizer"] = summary["optimizer_display"]
    out["trials"] = [str(int(v)) for v in summary["trials"]]
    out[f"best {metric}"] = _with_bounds(summary, "best_value", four)
    out["best lr"] = _with_bounds(summary, "best_lr", lr_fmt)
    for hp, name in (("beta1", "beta1"), ("beta2", "beta2"), ("gamma", "gamma"), ("weight_decay", "weight decay")):
        col = summary[f"best_{hp}"]
        if col.notna().any():
            out[name] = [f"{v:g}" if pd.notna(v) else "" for v in col]
    widths = _with_bounds(summary, "tolerance_width_decades", lambda v: f"{v:.2f}")
    censored = summary["tolerance_censored"].astype(bool).tolist()
    out["tolerance width (decades)"] = [(">=" + w if c and w else w) for w, c in zip(widths, censored)]
    relative = _with_bounds(summary, "relative_width_decades", lambda v: f"{v:.2f}")
    censored = (summary["relative_censored"].astype(bool).tolist() if "relative_censored" in summary
                else [False] * len(summary))
    out["relative width (decades)"] = [(">=" + w if c and w else w) for w, c in zip(relative, censored)]
    for col in shares:
        x, y = next((a, b) for a in AXIS_LABELS for b in AXIS_LABELS if col == f"good_share_{a}_{b}")
        out[f"good share {x} x {y}".replace("weight_decay", "wd")] = _with_bounds(summary, col, pct)
    out[f"LR sensitivity{unit}"] = _with_bounds(summary, "lr_sensitivity", three)
    out["diverged"] = _with_bounds(summary, "divergence_rate", pct)
    if "eval_far_above_training_rate" in summary and (summary["eval_far_above_training_rate"].fillna(0) > 0).any():
        out["evaluation far above training"] = [pct(v) if pd.notna(v) else "" for v in summary["eval_far_above_training_rate"]]
    out["median s/trial"] = [number_text(float(v), 3) for v in summary["median_wall_time_s"]]
    axis = "effective lr" if lr_axis == "effective" else "lr"
    out[f"{axis} searched"] = [f"{format_lr(a)} .. {format_lr(b)} ({n} pts)"
                               for a, b, n in zip(summary["lr_min"], summary["lr_max"], summary["lr_points"])]
    keep = [c for c in out.columns if c == "optimizer" or (out[c] != "").any()]
    return out[keep].reset_index(drop=True)


def task_settings_text(config: dict[str, Any] | None) -> str:
    """A task's stored configuration as a reader writes it: ``"batch_size 64, dataset digits, epochs 10
    (not set: train_size, val_size)"``. Keys in sorted order; a key stored as None (the task's own
    choice, such as the whole data set) is listed as not set; lists and tables as compact JSON.
    "" for no configuration."""
    if not config:
        return ""
    shown, unset = [], []
    for key in sorted(config):
        value = config[key]
        if value is None:
            unset.append(key)
        elif isinstance(value, str):
            shown.append(f"{key} {value}")
        else:
            shown.append(f"{key} {json.dumps(value, sort_keys=True)}")
    text = ", ".join(shown)
    if unset:
        text += (" " if text else "") + f"(not set: {', '.join(unset)})"
    return text


def study_facts(data: TrialsData) -> list[tuple[str, str]]:
    """(label, value) pairs describing the study, for both renderings."""
    meta = data.meta
    trials = data.trials
    done = trials[trials["state"] == COMPLETE]
    states = ", ".join(f"{k}: {v}" for k, v in sorted(meta.get("n_trials_by_state", {}).items()))
    devices = ", ".join(sorted(str(d) for d in done["device"].dropna().unique())) or "unknown"
    config = meta.get("task_config")
    info = meta.get("task_info") or {}
    declared = meta.get("metrics") or []
    objective = next((m for m in declared if m.name == meta["metric"]), None)
    facts = [
        ("study", meta["study_name"]),
        ("task", str(meta.get("task") or "unknown") + (f": {info['description']}" if info.get("description") else "")),
        ("data", str(info.get("data") or "")),
        ("data source", str(info.get("data_source") or "")),
        ("settings", str(info.get("settings") or "")),
        ("one epoch", str(info.get("epoch") or "")),
        ("task settings", task_settings_text(config)),
        ("objective metric", f"{meta['metric']}" + (f", {objective.label} in {objective.unit}" if objective else "")
         + f" ({meta['direction']}d)"),
        ("metrics recorded", ", ".join(f"{m.name} ({m.unit})" for m in declared)),
        ("epochs per trial", number_text(meta.get("epochs"))),
        ("divergence factor", number_text(meta.get("divergence_factor"))),
        ("BatchNorm statistics", batchnorm_setting(config)),
        ("bad runs", "clipped at the initial value, min(L, L0) for a loss (max(A, A0) for a maximised metric); "
                     "diverged runs are counted at the initial value and rank after finished runs of equal value "
                     "(see Metric definitions)"),
        ("sampler", str(meta.get("sampler") or "unknown")),
        ("trials by state", f"{len(trials)} in total ({states})"),
        ("optimizers", ", ".join(metrics.optimizer_order(done["optimizer"]))),
        ("seeds", str(int(done["seed"].nunique()))),
        ("device", devices),
        ("precision", "parameters and optimizer state in float32 (on CUDA, bf16 autocast for the forward pass only)"),
        ("total training time", f"{done['wall_time_s'].sum():.1f} s"),
        ("throughput", f"median {done['throughput'].median():,.0f} {info.get('example_unit') or 'examples'}/s per trial"
         if done["throughput"].notna().any() else ""),
        ("package version", str(meta.get("package_version") or "")),
    ]
    return [(k, v) for k, v in facts if v not in ("", None)]


def best_trial_metrics(data: TrialsData, metric: str, *, higher_is_better: bool) -> pd.DataFrame:
    """Each optimizer's best non-diverged trial (by ``metric``, whose direction ``higher_is_better``
    is) with the final value of every metric the study records: for char-lm, the loss with its bits
    per character and perplexity. Empty when the study records only one metric."""
    recorded = [m for m in (data.meta.get("metrics") or []) if f"final_{m.name}" in data.trials.columns]
    if len(recorded) < 2:
        return pd.DataFrame()
    done = data.complete
    done = done[~done["diverged"].fillna(False).astype(bool) & done[f"final_{metric}"].notna()]
    rows = []
    for name in metrics.optimizer_order(done["optimizer"]):
        g = done[done["optimizer"] == name]
        best = g.loc[g[f"final_{metric}"].idxmax() if higher_is_better else g[f"final_{metric}"].idxmin()]
        row = {"optimizer": best["optimizer_display"], "trial": int(best["trial"]), "lr": format_lr(best["lr"])}
        row.update({f"{m.name} ({m.unit})": number_text(float(best[f"final_{m.name}"])) for m in recorded})
        rows.append(row)
    return pd.DataFrame(rows)


def batchnorm_setting(config: dict[str, Any] | None) -> str:
    """The study's precise-BN setting in words (a study made before the option: off)."""
    if not config:
        return ""
    n = int(config.get("precise_bn") or 0)
    if n <= 0:
        return "not recalibrated: BatchNorm layers, if any, are evaluated with their running averages from training"
    return (f"recomputed on {n} training batches (at most one epoch's) before each evaluation, L0 included "
            f"(precise BN); models without BatchNorm are unaffected")


def settings_line(analysis: StudyAnalysis) -> str:
    """The sentence above the summary table: metric, aggregation, lr axis, thresholds, intervals."""
    s = analysis.settings
    bounds = (f" Brackets: {100 * s.level:g}% seed-bootstrap interval ({analysis.bootstrap}, "
              f"{analysis.n_seeds} seeds)." if analysis.bootstrap else " One seed: no intervals.")
    return (f"Metric {s.metric}; each optimizer's lr curve: {analysis.aggregation_words()} "
            f"(definition: {s.aggregation_text}); lr axis: {s.lr_axis}. "
            f"Tolerance width: a run {s.tolerance_text} (tau = {s.tau:g}, "
            f"--tolerance); relative width: {s.relative_text}.{bounds}")
