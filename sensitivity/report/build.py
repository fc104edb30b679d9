"""Write a report directory: CSV tables, figures, report.md and a self-contained report.html.

:func:`build_report` is the whole pipeline, in one direction: storage ->
:func:`~sensitivity.report.frame.load_trials` -> :func:`~sensitivity.report.analysis.analyze` (once:
lr axis, lr curves, tolerance tables, regions, seed-bootstrap intervals, expected best) -> the findings
(:mod:`~sensitivity.report.findings`) and figures (:mod:`~sensitivity.report.figures`,
:mod:`~sensitivity.report.heatmaps`), which only read the analysis -> the renderings
(:mod:`~sensitivity.report.markdown_report`, :mod:`~sensitivity.report.html_report`) -> files. Every
file is first written into a staging folder inside ``out_dir`` and then moved into place with
:func:`os.replace`, so a crash while computing or drawing leaves the previous report untouched and no
file is ever half written. :func:`staged`, :func:`save_figure` and :func:`check_formats` are shared
with :mod:`sensitivity.report.compare`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
import pandas as pd

from sensitivity.report import effective_lr, figures, findings, heatmaps, importance_figure, style
from sensitivity.report.analysis import StudyAnalysis, analyze
from sensitivity.report.csv_tables import write_csv
from sensitivity.report.frame import TrialsData, load_trials
from sensitivity.report.html_report import render_html
from sensitivity.report.markdown_report import render_markdown

FIGURE_FORMATS = ("png", "svg", "pdf")
"""Formats a figure can be saved in (``--format``); the HTML always embeds PNG."""


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure of a report: its key, the file stem (``lr_sensitivity`` -> ``lr_sensitivity.png``), a heading."""

    key: str
    stem: str
    heading: str


def report_figures(pairs: Sequence[Sequence[str]], *, importance: bool = True) -> list[FigureSpec]:
    """The figures a report draws, in order: the lr curve, one heatmap per swept pair, loss curves,
    relative performance, expected best after n configurations, and (``importance``) the variance
    decomposition."""
    specs = [FigureSpec("lr_sensitivity", "lr_sensitivity", "Learning-rate sensitivity")]
    for x, y in pairs:
        specs.append(FigureSpec(f"heatmap_{x}_{y}", f"heatmap_{x}_{y}",
                                f"Robustness heatmaps ({style.AXIS_LABELS[x]} x {style.AXIS_LABELS[y]})"))
    specs += [
        FigureSpec("loss_curves", "loss_curves", "Loss curves per learning rate"),
        FigureSpec("relative_performance", "relative_performance", "Relative performance (DeepOBS)"),
        FigureSpec("expected_best", "expected_best", "Expected best after n configurations"),
    ]
    if importance:
        specs.append(FigureSpec("importance", "importance", "Which hyperparameter matters (variance decomposition)"))
    return specs


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote each file (all inside :attr:`out_dir`).

    ``figures`` maps each figure key to its file in the first requested format; ``figure_files``
    lists every figure file of every format. ``findings`` are the sentences that open the report,
    ``analysis`` the study's analysis (its settings, curves, tables) and ``summary`` the summary
    frame that ``summary.csv`` holds (``analysis.summary``).
    """

    out_dir: Path
    report_html: Path
    report_md: Path
    trials_csv: Path
    curves_csv: Path
    summary_csv: Path
    expected_best_csv: Path
    importance_csv: Path
    ablation_csv: Path
    differences_csv: Path | None
    figures: dict[str, Path]
    figure_files: tuple[Path, ...] = ()
    findings: tuple[str, ...] = ()
    summary: pd.DataFrame | None = dataclasses.field(default=None, compare=False)
    analysis: StudyAnalysis | None = dataclasses.field(default=None, compare=False)

    def all(self) -> list[Path]:
        """Every file written."""
        files = [self.report_html, self.report_md, self.trials_csv, self.curves_csv, self.summary_csv,
                 self.expected_best_csv, self.importance_csv, self.ablation_csv]
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
    :func:`~sensitivity.report.analysis.summarize`, with ``_low``/``_high`` bounds when the study has
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
        ValueError: unknown metric, aggregation, lr axis or format, or a tolerance outside [0, 1).
    """
    formats = check_formats(formats)
    for name, value in (("tolerance", tolerance), ("relative tolerance", relative_tolerance)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if tolerance is not None and tolerance >= 1:
        raise ValueError(f"tolerance must lie in [0, 1) (the share of the improvement a run may lose), got {tolerance}")
    if lr_axis not in effective_lr.LR_AXES:
        raise ValueError(f"unknown lr axis {lr_axis!r}; choose one of {sorted(effective_lr.LR_AXES)}")
    data = load_trials(storage, study_name)
    metric = metric or data.meta["metric"]
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
    fig.savefig(buf, format="png", dpi=style.DPI)
    png = buf.getvalue()
    files = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "png":
            path.write_bytes(png)
        else:
            fig.savefig(path, format=fmt, dpi=style.DPI)
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
    formats = check_formats(formats)
    out = Path(out_dir)
    factor = data.meta.get("divergence_factor")
    analysis = analyze(data.trials, metric, tau=tolerance, relative_tolerance=relative_tolerance,
                       aggregation=aggregation, lr_axis=lr_axis,
                       divergence_factor=float(factor) if factor is not None else None,
                       declaration=data.declaration(metric))
    task = (data.meta.get("task_info") or {}).get("name") or data.meta.get("task") or data.meta["study_name"]
    opening = [*findings.study_findings(analysis, task=str(task)),
               *importance_figure.importance_findings(analysis.importance, display=analysis.display)]
    lr_label = "effective learning rate" if lr_axis == "effective" else "learning rate"
    what = analysis.settings.metric_label
    curves_of = "loss" if "val_loss" in data.curves.columns else what
    makers: dict[str, Callable[[], Any]] = {
        "lr_sensitivity": lambda: figures.lr_sensitivity_figure(
            analysis, lr_label=effective_lr.LR_AXES[lr_axis],
            title=f"{task}: learning-rate sensitivity (final {what})"),
        "loss_curves": lambda: figures.loss_curves_figure(
            analysis, data.curves, title=f"{task}: {curves_of} curves per learning rate"),
        "relative_performance": lambda: figures.relative_performance_figure(
            analysis, lr_label=lr_label, title=f"{task}: relative performance (DeepOBS)"),
        "expected_best": lambda: figures.expected_best_figure(
            analysis.expected_best, metric, display=analysis.display,
            title=f"{task}: expected best {what} after n configurations (Dodge et al. 2019)",
            note=f"each stored trial one equally likely draw ({data.meta.get('sampler') or 'grid'} study)",
            settings=analysis.settings),
        "importance": lambda: importance_figure.importance_figure(
            analysis.importance, display=analysis.display, title=f"{task}: which hyperparameter matters"),
    }
    pairs = list(analysis.pairs)
    for x, y in pairs:
        makers[f"heatmap_{x}_{y}"] = (lambda x=x, y=y: heatmaps.pair_heatmaps(
            analysis, x, y, lr_label=lr_label,
            title=f"{task}: final {what} over {style.AXIS_LABELS[x]} x {style.AXIS_LABELS[y]}, one colour scale"))
    decomposed = bool((analysis.importance["region"] == "all").any())
    specs = report_figures(pairs, importance=decomposed)
    with staged(out) as stage:
        pngs: dict[str, bytes] = {}
        files: list[Path] = []
        for spec in specs:
            pngs[spec.key], written = save_figure(makers[spec.key](), stage, spec.stem, formats)
            files += [out / p.name for p in written]
        write_csv(data.trials, stage / "trials.csv")
        write_csv(data.curves, stage / "curves.csv")
        write_csv(analysis.summary, stage / "summary.csv")
        write_csv(analysis.expected_best, stage / "expected_best.csv")
        write_csv(analysis.importance, stage / "importance.csv")
        write_csv(analysis.ablation, stage / "ablation.csv")
        if not analysis.differences.empty:
            write_csv(analysis.differences, stage / "differences.csv")
        (stage / "report.md").write_text(
            render_markdown(data, analysis, findings=opening, specs=specs, fmt=formats[0]), encoding="utf-8")
        (stage / "report.html").write_text(
            render_html(data, analysis, pngs, findings=opening, specs=specs), encoding="utf-8")
    return ReportPaths(
        out_dir=out,
        report_html=out / "report.html",
        report_md=out / "report.md",
        trials_csv=out / "trials.csv",
        curves_csv=out / "curves.csv",
        summary_csv=out / "summary.csv",
        expected_best_csv=out / "expected_best.csv",
        importance_csv=out / "importance.csv",
        ablation_csv=out / "ablation.csv",
        differences_csv=None if analysis.differences.empty else out / "differences.csv",
        figures={spec.key: out / f"{spec.stem}.{formats[0]}" for spec in specs},
        figure_files=tuple(files),
        findings=tuple(opening),
        summary=analysis.summary,
        analysis=analysis,
    )
