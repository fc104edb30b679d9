"""Write a report directory: CSV tables, figures, report.md and a self-contained report.html.

:func:`build_report` is the whole pipeline: storage -> :func:`~sensitivity.report.frame.load_trials`
-> the lr axis (:mod:`~sensitivity.report.effective_lr`) -> the summary
(:mod:`~sensitivity.report.summary`, with its seed-bootstrap bounds) and the findings paragraph
(:mod:`~sensitivity.report.findings`) -> figures (:mod:`~sensitivity.report.figures`,
:mod:`~sensitivity.report.heatmaps`) -> files. Every file is first written into a staging folder
inside ``out_dir`` and then moved into place with :func:`os.replace`, so a crash while computing or
drawing leaves the previous report untouched and no file is ever half written. The helpers that
stage files, save figures in several formats and lay out an HTML page are shared with
:mod:`sensitivity.report.compare`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
import pandas as pd

from sensitivity.report import figures as F
from sensitivity.report import metrics as M
from sensitivity.report.frame import COMPLETE, TrialsData, load_trials

FIGURE_FORMATS = ("png", "svg", "pdf")
"""Formats a figure can be saved in (``--format``); the HTML always embeds PNG."""


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure of a report: its key, the file stem (``lr_sensitivity`` -> ``lr_sensitivity.png``), a heading."""

    key: str
    stem: str
    heading: str


def report_figures(pairs: Sequence[Sequence[str]]) -> list[FigureSpec]:
    """The figures a report draws, in order: the lr curve, one heatmap per swept pair, loss curves,
    relative performance, expected best after n configurations."""
    from sensitivity.report.heatmaps import AXIS_LABELS

    specs = [FigureSpec("lr_sensitivity", "lr_sensitivity", "Learning-rate sensitivity")]
    for x, y in pairs:
        specs.append(FigureSpec(f"heatmap_{x}_{y}", f"heatmap_{x}_{y}",
                                f"Robustness heatmaps ({AXIS_LABELS[x]} x {AXIS_LABELS[y]})"))
    specs += [
        FigureSpec("loss_curves", "loss_curves", "Loss curves per learning rate"),
        FigureSpec("relative_performance", "relative_performance", "Relative performance (DeepOBS)"),
        FigureSpec("expected_best", "expected_best", "Expected best after n configurations"),
    ]
    return specs


BAD_RUNS = ("Every final value is clipped at the initial one, min(L, L0) for losses and max(acc, acc0) for "
            "accuracies, and a diverged run counts as L0 (acc0): a diverged run and a run that ended worse than "
            "its start are alike in the objective, the sweep's best line, every metric and every figure. Where "
            "two points tie, the one that did not diverge ranks first, so a diverged run never ranks above a "
            "finished one. Curves of losses per epoch are drawn unclipped.")
"""The one ordering of bad runs, as the report states it."""

DEFINITIONS = (
    ("Tolerance width",
     "Span, in decades of lr, of the largest lr interval in which the optimizer's lr curve, read as linear "
     "in log10(lr) between grid points, keeps at least 1 - tau of the improvement its best lr achieves: "
     "L <= L* + tau (L0 - L*) for a minimised metric (A >= A* - tau (A* - A0) for a maximised one). "
     "Diverged points are never within (they are interpolated towards L0); an optimizer that never "
     "improved on L0 has none. '>=' marks an interval that reaches an end of the swept lrs.",
     "adamrag-sens DESIGN.md, Metrics; the L* .. L0 normalisation of Wortsman et al. 2023, arXiv 2309.14322"),
    ("Relative width",
     "The same interpolated width with the relative threshold: within a fraction of the best loss "
     "(L <= (1 + t) L*), or within t in the metric's own units for a maximised metric (accuracy points).",
     "adamrag-sens DESIGN.md, Metrics"),
    ("Good-region share",
     "Fraction of the swept box of a hyperparameter pair (axes log10 lr, -log10(1 - beta), log10 weight "
     "decay) whose bilinearly interpolated final metric is within the tolerance threshold; each cell is "
     "the best over the other hyperparameters. Random/qmc studies: the share of sampled points within.",
     "adamrag-sens DESIGN.md, Metrics"),
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
     "adamrag-sens (README, section Metrics)"),
    ("Bad runs",
     BAD_RUNS,
     "Wortsman et al. 2023, arXiv 2309.14322, sec. 2.2 (the min(L, L0) clipping)"),
    ("Performance profile",
     "rho_s(tau): share of tasks on which optimizer s is within a factor tau of the best optimizer "
     "(computed across studies by adamrag-sens compare; one study is one task).",
     "Dolan & More 2002, Math. Program. 91:201-213; AlgoPerf, Dahl et al. 2023, arXiv 2306.07179"),
)
"""(name, definition, source) of each metric, printed in the report."""


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote each file (all inside :attr:`out_dir`).

    ``figures`` maps each figure key to its file in the first requested format; ``figure_files``
    lists every figure file of every format. ``findings`` are the sentences that open the report and
    ``summary`` the summary frame (with its attrs) that ``summary.csv`` holds.
    """

    out_dir: Path
    report_html: Path
    report_md: Path
    trials_csv: Path
    curves_csv: Path
    summary_csv: Path
    expected_best_csv: Path
    differences_csv: Path | None
    figures: dict[str, Path]
    figure_files: tuple[Path, ...] = ()
    findings: tuple[str, ...] = ()
    summary: pd.DataFrame | None = dataclasses.field(default=None, compare=False)

    def all(self) -> list[Path]:
        """Every file written."""
        files = [self.report_html, self.report_md, self.trials_csv, self.curves_csv, self.summary_csv,
                 self.expected_best_csv]
        if self.differences_csv is not None:
            files.append(self.differences_csv)
        return files + list(self.figure_files or self.figures.values())


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The figure formats, validated and deduplicated in order.

    Raises:
        ValueError: an unknown format, or none.
    """
    out = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in formats if f.strip()))
    bad = [f for f in out if f not in FIGURE_FORMATS]
    if bad or not out:
        raise ValueError(f"unknown figure format {', '.join(bad) or '(none)'}; choose from {', '.join(FIGURE_FORMATS)}")
    return out


def build_report(
    storage: str | os.PathLike | optuna.storages.BaseStorage,
    study_name: str,
    out_dir: str | os.PathLike,
    *,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
    metric: str | None = None,
    aggregation: str = "best",
    lr_axis: str = "nominal",
    formats: Sequence[str] = ("png",),
) -> ReportPaths:
    """Read a stored study and write its report into ``out_dir`` (created if missing).

    Writes ``trials.csv`` (the tidy trials frame, every state, nominal lrs), ``curves.csv``
    (per-epoch curves), ``summary.csv`` (one row per optimizer,
    :func:`~sensitivity.report.summary.summarize`, with ``_low``/``_high`` bounds when the study has
    two seeds or more), ``expected_best.csv`` (the expected-best-after-n curves),
    ``differences.csv`` (paired differences between optimizers; two seeds or more), each figure of
    :func:`report_figures` in every format of ``formats``, ``report.md`` (links the figures) and
    ``report.html`` (self-contained: PNGs embedded as data URIs). Headless; never writes to the storage.

    Args:
        storage: Optuna storage URL, SQLite/journal path, or storage object.
        study_name: the study to report on.
        out_dir: report directory; files of an earlier report there are replaced.
        tolerance: tau of the improvement threshold (0.05: keep 95% of the improvement over L0);
            :data:`~sensitivity.report.tolerance.DEFAULT_TAU` when None.
        relative_tolerance: the relative threshold (0.1 = within 10% of the best loss; 0.01 =
            one accuracy point); the metric's default when None.
        metric: one of the study's declared metrics (``val_loss``, ``val_acc``, ``val_bpc``,
            ``return``, ...); the study's objective metric when None.
        aggregation: ``"best"`` or ``"default"`` betas, see :func:`~sensitivity.report.metrics.lr_curve`.
        lr_axis: ``"nominal"`` or ``"effective"`` (:mod:`~sensitivity.report.effective_lr`); metrics
            that depend on the axis are computed on the one shown.
        formats: figure file formats among :data:`FIGURE_FORMATS`.

    Raises:
        UserError: the study cannot be read or has no completed trial (from ``load_trials``).
        ValueError: unknown metric, aggregation, lr axis or format, or a negative tolerance.
    """
    formats = check_formats(formats)
    for name, value in (("tolerance", tolerance), ("relative tolerance", relative_tolerance)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    from sensitivity.report.effective_lr import LR_AXES

    if lr_axis not in LR_AXES:
        raise ValueError(f"unknown lr axis {lr_axis!r}; choose one of {sorted(LR_AXES)}")
    data = load_trials(storage, study_name)
    metric = metric or data.meta["metric"]
    M.higher_is_better(metric)
    return write_report(data, out_dir, metric=metric, tolerance=tolerance, relative_tolerance=relative_tolerance,
                        aggregation=aggregation, lr_axis=lr_axis, formats=formats)


@contextlib.contextmanager
def staged(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A staging folder inside ``out_dir`` (created if missing) whose files replace those in
    ``out_dir`` when the block ends without an error; on an error nothing in ``out_dir`` changes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_figure(fig, folder: Path, stem: str, formats: Sequence[str]) -> tuple[bytes, list[Path]]:
    """Save ``fig`` as ``folder/stem.<format>`` for each format; return its PNG bytes (for embedding)
    and the files written."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=F.DPI)
    png = buf.getvalue()
    files = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "png":
            path.write_bytes(png)
        else:
            fig.savefig(path, format=fmt, dpi=F.DPI)
        files.append(path)
    return png, files


def write_report(
    data: TrialsData,
    out_dir: str | os.PathLike,
    *,
    metric: str,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
    aggregation: str = "best",
    lr_axis: str = "nominal",
    formats: Sequence[str] = ("png",),
) -> ReportPaths:
    """Write the report of already loaded :class:`TrialsData` (see :func:`build_report`)."""
    from sensitivity.report import findings as Fi
    from sensitivity.report import heatmaps as H
    from sensitivity.report import summary as S
    from sensitivity.report.effective_lr import LR_AXES, on_lr_axis
    from sensitivity.report.expected_best import expected_best_table

    formats = check_formats(formats)
    out = Path(out_dir)
    trials = on_lr_axis(data.trials, lr_axis)
    factor = data.meta.get("divergence_factor")
    summary = S.summarize(trials, metric, tau=tolerance, relative_tolerance=relative_tolerance,
                          aggregation=aggregation, divergence_factor=float(factor) if factor is not None else None)
    summary.attrs["lr_axis"] = lr_axis
    tau = summary.attrs["tau"]
    task = (data.meta.get("task_info") or {}).get("name") or data.meta.get("task") or data.meta["study_name"]
    findings = Fi.study_findings(summary, task=str(task), lr_axis=lr_axis)
    done = M.complete_trials(trials)
    expected = expected_best_table(M.metric_values(done, metric), done["optimizer"],
                                   higher_is_better=M.higher_is_better(metric))
    differences = pd.DataFrame(summary.attrs["differences"])
    pairs = [tuple(p) for p in summary.attrs["pairs"]]
    thresholds = summary.set_index("optimizer")["tolerance_threshold"].to_dict()
    lr_label = "effective learning rate" if lr_axis == "effective" else "learning rate"
    what = M.metric_label(metric)
    curves_of = "loss" if "val_loss" in data.curves.columns else what
    makers: dict[str, Callable[[], Any]] = {
        "lr_sensitivity": lambda: F.lr_sensitivity_figure(
            trials, metric, aggregation=aggregation, tolerance=tau, lr_label=LR_AXES[lr_axis],
            title=f"{task}: learning-rate sensitivity (final {what})"),
        "loss_curves": lambda: F.loss_curves_figure(
            data.trials, data.curves, metric, title=f"{task}: {curves_of} curves per learning rate"),
        "relative_performance": lambda: F.relative_performance_figure(
            trials, metric, aggregation=aggregation, lr_label=lr_label,
            title=f"{task}: relative performance (DeepOBS)"),
        "expected_best": lambda: F.expected_best_figure(
            expected, metric, display=F._display(data.trials),
            title=f"{task}: expected best {what} after n configurations (Dodge et al. 2019)",
            note=f"each stored trial one equally likely draw ({data.meta.get('sampler') or 'grid'} study)"),
    }
    for x, y in pairs:
        makers[f"heatmap_{x}_{y}"] = (lambda x=x, y=y: H.pair_heatmaps(
            trials, metric, x, y, thresholds=thresholds, lr_label=lr_label,
            title=f"{task}: final {what} over {H.AXIS_LABELS[x]} x {H.AXIS_LABELS[y]}, one colour scale"))
    specs = report_figures(pairs)
    with staged(out) as stage:
        pngs: dict[str, bytes] = {}
        files: list[Path] = []
        for spec in specs:
            pngs[spec.key], written = save_figure(makers[spec.key](), stage, spec.stem, formats)
            files += [out / p.name for p in written]
        data.trials.to_csv(stage / "trials.csv", index=False)
        data.curves.to_csv(stage / "curves.csv", index=False)
        summary.to_csv(stage / "summary.csv", index=False)
        expected.to_csv(stage / "expected_best.csv", index=False)
        if not differences.empty:
            differences.to_csv(stage / "differences.csv", index=False)
        (stage / "report.md").write_text(
            render_markdown(data, summary, findings=findings, specs=specs, fmt=formats[0]), encoding="utf-8")
        (stage / "report.html").write_text(
            render_html(data, summary, pngs, findings=findings, specs=specs), encoding="utf-8")
    return ReportPaths(
        out_dir=out,
        report_html=out / "report.html",
        report_md=out / "report.md",
        trials_csv=out / "trials.csv",
        curves_csv=out / "curves.csv",
        summary_csv=out / "summary.csv",
        expected_best_csv=out / "expected_best.csv",
        differences_csv=None if differences.empty else out / "differences.csv",
        figures={spec.key: out / f"{spec.stem}.{formats[0]}" for spec in specs},
        figure_files=tuple(files),
        findings=tuple(findings),
        summary=summary,
    )


# ---- content shared by both renderings ----------------------------------------------------------

def _num(v: Any, digits: int = 4) -> str:
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


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as readable strings, columns that are empty for every optimizer dropped.

    With two seeds or more each figure is followed by its seed-bootstrap interval ``[low, high]``;
    a tolerance width whose interval reaches an end of the swept lrs is prefixed with ``>=``.
    """
    from sensitivity.report.heatmaps import AXIS_LABELS

    metric = summary.attrs.get("metric", "value")
    unit = f" ({M.metric_unit(metric)})" if M.metric_unit(metric) else ""
    three = lambda v: f"{v:.3g}"  # noqa: E731
    four = lambda v: f"{v:.4g}"  # noqa: E731
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    lr_fmt = F.format_lr
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
    out["relative width (decades)"] = _with_bounds(summary, "relative_width_decades", lambda v: f"{v:.2f}")
    for col in shares:
        x, y = next((a, b) for a in AXIS_LABELS for b in AXIS_LABELS if col == f"good_share_{a}_{b}")
        out[f"good share {x} x {y}".replace("weight_decay", "wd")] = _with_bounds(summary, col, pct)
    out[f"LR sensitivity{unit}"] = _with_bounds(summary, "lr_sensitivity", three)
    out["diverged"] = _with_bounds(summary, "divergence_rate", pct)
    if "eval_far_above_training_rate" in summary and (summary["eval_far_above_training_rate"].fillna(0) > 0).any():
        out["evaluation far above training"] = [pct(v) if pd.notna(v) else "" for v in summary["eval_far_above_training_rate"]]
    out["median s/trial"] = [_num(float(v), 3) for v in summary["median_wall_time_s"]]
    axis = "effective lr" if summary.attrs.get("lr_axis") == "effective" else "lr"
    out[f"{axis} searched"] = [f"{F.format_lr(a)} .. {F.format_lr(b)} ({n} pts)"
                               for a, b, n in zip(summary["lr_min"], summary["lr_max"], summary["lr_points"])]
    keep = [c for c in out.columns if c == "optimizer" or (out[c] != "").any()]
    return out[keep].reset_index(drop=True)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas ``to_markdown`` when ``tabulate`` is installed)."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        pass
    else:
        return frame.to_markdown(index=False)
    cells = [[str(c) for c in frame.columns]] + [[str(v).replace("|", "\\|") for v in row]
                                                 for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def study_facts(data: TrialsData) -> list[tuple[str, str]]:
    """(label, value) pairs describing the study, for both renderings."""
    meta = data.meta
    trials = data.trials
    done = trials[trials["state"] == COMPLETE]
    states = ", ".join(f"{k}: {v}" for k, v in sorted(meta.get("n_trials_by_state", {}).items()))
    devices = ", ".join(sorted(str(d) for d in done["device"].dropna().unique())) or "unknown"
    config = meta.get("task_config")
    info = meta.get("task_info") or {}
    metrics = meta.get("metrics") or []
    objective = next((m for m in metrics if m.name == meta["metric"]), None)
    facts = [
        ("study", meta["study_name"]),
        ("task", str(meta.get("task") or "unknown") + (f": {info['description']}" if info.get("description") else "")),
        ("data", str(info.get("data") or "")),
        ("data source", str(info.get("data_source") or "")),
        ("settings", str(info.get("settings") or "")),
        ("one epoch", str(info.get("epoch") or "")),
        ("task settings", json.dumps(config, sort_keys=True) if config else ""),
        ("objective metric", f"{meta['metric']}" + (f", {objective.label} in {objective.unit}" if objective else "")
         + f" ({meta['direction']}d)"),
        ("metrics recorded", ", ".join(f"{m.name} ({m.unit})" for m in metrics)),
        ("epochs per trial", _num(meta.get("epochs"))),
        ("divergence factor", _num(meta.get("divergence_factor"))),
        ("BatchNorm statistics", batchnorm_setting(config)),
        ("bad runs", "clipped at the initial value, min(L, L0) for a loss (max(A, A0) for a maximised metric); "
                     "diverged runs count as that value and rank after finished runs of equal value "
                     "(see Metric definitions)"),
        ("sampler", str(meta.get("sampler") or "unknown")),
        ("trials by state", f"{len(trials)} in total ({states})"),
        ("optimizers", ", ".join(M.optimizer_order(done["optimizer"]))),
        ("seeds", str(int(done["seed"].nunique()))),
        ("device", devices),
        ("precision", "parameters and optimizer state in float32 (on CUDA, bf16 autocast for the forward pass only)"),
        ("total training time", f"{done['wall_time_s'].sum():.1f} s"),
        ("throughput", f"median {done['throughput'].median():,.0f} {info.get('example_unit') or 'examples'}/s per trial"
         if done["throughput"].notna().any() else ""),
        ("package version", str(meta.get("package_version") or "")),
    ]
    return [(k, v) for k, v in facts if v not in ("", None)]


def best_trial_metrics(data: TrialsData, metric: str) -> pd.DataFrame:
    """Each optimizer's best non-diverged trial (by ``metric``) with the final value of every metric
    the study records: for char-lm, the loss with its bits per character and perplexity. Empty when
    the study records only one metric."""
    metrics = [m for m in (data.meta.get("metrics") or []) if f"final_{m.name}" in data.trials.columns]
    if len(metrics) < 2:
        return pd.DataFrame()
    done = data.complete
    done = done[~done["diverged"].fillna(False).astype(bool) & done[f"final_{metric}"].notna()]
    rows = []
    for name in M.optimizer_order(done["optimizer"]):
        g = done[done["optimizer"] == name]
        best = g.loc[g[f"final_{metric}"].idxmax() if M.higher_is_better(metric) else g[f"final_{metric}"].idxmin()]
        row = {"optimizer": best["optimizer_display"], "trial": int(best["trial"]), "lr": F.format_lr(best["lr"])}
        row.update({f"{m.name} ({m.unit})": _num(float(best[f"final_{m.name}"])) for m in metrics})
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


def _settings_line(data: TrialsData, summary: pd.DataFrame) -> str:
    agg = F.aggregation_text(data.trials, summary.attrs["aggregation"])
    axis = summary.attrs.get("lr_axis", "nominal")
    seeds = summary.attrs.get("n_seeds", 1)
    bounds = (f" Brackets: {100 * summary.attrs['level']:g}% seed-bootstrap interval ({summary.attrs['bootstrap']}, "
              f"{seeds} seeds)." if summary.attrs.get("bootstrap") else " One seed: no intervals.")
    return (f"Metric {summary.attrs['metric']}; each optimizer's lr curve: {agg} "
            f"(definition: {summary.attrs['aggregation_text']}); lr axis: {axis}. "
            f"Tolerance width: a run {summary.attrs['tolerance_text']} (tau = {summary.attrs['tau']:g}, "
            f"--tolerance); relative width: {summary.attrs['relative_text']}.{bounds}")


def _figure_link(spec, fmt: str) -> str:
    name = f"{spec.stem}.{fmt}"
    return f"[{spec.heading} (PDF)]({name})" if fmt == "pdf" else f"![{spec.heading}]({name})"


def render_markdown(data: TrialsData, summary: pd.DataFrame, *, findings: Sequence[str] = (),
                    specs: Sequence[FigureSpec] = (), fmt: str = "png") -> str:
    """``report.md``: findings, study facts, the summary table, figure links, definitions with sources."""
    name = data.meta["study_name"]
    lines = [f"# Sensitivity report: {name}", ""]
    if findings:
        lines += ["**Findings.** " + " ".join(findings), ""]
    lines += [f"- **{k}**: {v}" for k, v in study_facts(data)]
    lines += ["", "## Summary", "", _settings_line(data, summary), "", markdown_table(summary_table(summary)), ""]
    others = best_trial_metrics(data, summary.attrs["metric"])
    if not others.empty:
        lines += ["Every recorded metric of each optimizer's best trial (final values):", "",
                  markdown_table(others), ""]
    extra = ", [differences.csv](differences.csv)" if summary.attrs.get("differences") else ""
    lines += ["Full numbers: [summary.csv](summary.csv), [expected_best.csv](expected_best.csv)"
              f"{extra}, [trials.csv](trials.csv), [curves.csv](curves.csv).", ""]
    for spec in specs:
        lines += [f"## {spec.heading}", "", _figure_link(spec, fmt), ""]
    lines += ["## Metric definitions", ""]
    lines += [f"- **{n}**: {d} *Source: {s}.*" for n, d, s in DEFINITIONS]
    lines += ["", f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens.", ""]
    return "\n".join(lines)


_EXPONENT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?e[-+]\d+)(?![\w.])")


def table_html(frame: pd.DataFrame, **kwargs: Any) -> str:
    """``frame.to_html`` (escaped, no index, no border) in a horizontally scrolling box, with every
    number in e-notation kept on one line: a browser breaks "3.16e-3" after its hyphen in a narrow
    column, which reads as two values; the other cells still wrap at their spaces."""
    inner = frame.to_html(index=False, escape=True, border=0, **kwargs)
    return '<div class="scroll">' + _EXPONENT.sub(r'<span class="num">\1</span>', inner) + "</div>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}.num{white-space:nowrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.92em}.findings{background:#f6f8fa;border-left:4px solid #4c72b0;padding:.6em 1em}
.scroll{overflow-x:auto}table.compare td:nth-child(2),table.compare th:nth-child(2){text-align:left}
"""


def png_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI (the HTML pages embed every figure so they are self-contained)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_page(title: str, body: Sequence[str]) -> str:
    """A self-contained HTML page (inline CSS, no external resources) around ``body`` parts."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no favicon request (it would be a failed load in the console)
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        *body,
        f'<p class="note">Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens '
        "from the stored trials alone.</p>",
        "</body></html>",
        "",
    ])


def definitions_html() -> list[str]:
    """The metric definitions with their sources, as HTML."""
    esc = html.escape
    parts = ["<h2>Metric definitions</h2>", "<dl>"]
    for n, d, s in DEFINITIONS:
        parts.append(f"<dt><b>{esc(n)}</b></dt><dd>{esc(d)}<br><i>Source: {esc(s)}.</i></dd>")
    return parts + ["</dl>"]


def render_html(data: TrialsData, summary: pd.DataFrame, pngs: dict[str, bytes], *,
                findings: Sequence[str] = (), specs: Sequence[FigureSpec] = ()) -> str:
    """``report.html``: one self-contained page (figures as base64 PNG data URIs)."""
    esc = html.escape
    name = data.meta["study_name"]
    body = [f"<h1>Sensitivity report: {esc(name)}</h1>"]
    if findings:
        body.append(f'<p class="findings"><b>Findings.</b> {esc(" ".join(findings))}</p>')
    body += [
        '<dl class="facts">',
        *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in study_facts(data)),
        "</dl>",
        "<h2>Summary</h2>",
        f'<p class="note">{esc(_settings_line(data, summary))}</p>',
        table_html(summary_table(summary)),
    ]
    others = best_trial_metrics(data, summary.attrs["metric"])
    if not others.empty:
        body += ['<p class="note">Every recorded metric of each optimizer\'s best trial (final values):</p>',
                 table_html(others)]
    for spec in specs:
        if spec.key in pngs:
            body += [f"<h2>{esc(spec.heading)}</h2>", f'<img alt="{esc(spec.heading)}" src="{png_uri(pngs[spec.key])}">']
    body += definitions_html()
    return html_page(f"Sensitivity report: {name}", body)
