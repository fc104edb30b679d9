"""Write a report directory: CSV tables, PNG figures, report.md and a self-contained report.html.

:func:`build_report` is the whole pipeline: storage -> :func:`~sensitivity.report.frame.load_trials`
-> :mod:`~sensitivity.report.metrics` -> :mod:`~sensitivity.report.figures` -> files. Every file is
first written into a staging folder inside ``out_dir`` and then moved into place with
:func:`os.replace`, so a crash while computing or drawing leaves the previous report untouched and
no file is ever half written.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd

from sensitivity.report import figures as F
from sensitivity.report import metrics as M
from sensitivity.report.frame import COMPLETE, TrialsData, load_trials

FIGURES = (
    ("lr_sensitivity", "lr_sensitivity.png", "Learning-rate sensitivity"),
    ("heatmaps", "robustness_heatmaps.png", "Robustness heatmaps (lr x beta1)"),
    ("loss_curves", "loss_curves.png", "Loss curves per learning rate"),
    ("relative_performance", "relative_performance.png", "Relative performance (DeepOBS)"),
)
"""(key, file name, heading) of each figure the report draws, in report order."""

DEFINITIONS = (
    ("LR sensitivity",
     "E over the lr grid of [min(L(lr), L0) - L*]: L(lr) the final metric on the optimizer's lr curve, "
     "L* its best value on the grid, L0 the value at initialisation. 0 means every lr reaches the best; "
     "in the metric's units. For accuracy read as error 1 - acc.",
     "Wortsman et al. 2023, Small-scale proxies for large-scale Transformer training instabilities, "
     "arXiv 2309.14322, sec. 2.2"),
    ("Tolerance width",
     "Span, in decades of lr (log10(lr_high / lr_low)), of the largest contiguous run of the optimizer's "
     "grid lrs whose final metric is within the tolerance of its best; a single point has width 0.",
     "adamrag-sens (README, section Metrics), after the lr-range robustness plots of Wortsman et al. 2023"),
    ("Relative performance",
     "best/L for losses, acc/best for accuracies, per lr, relative to the optimizer's own best; NaN -> 0.",
     "Schneider, Balles & Hennig 2019, DeepOBS: A Deep Learning Optimizer Benchmark Suite, ICLR"),
    ("Divergence rate",
     "Share of completed trials that diverged (non-finite loss, or loss above the study's divergence "
     "factor times the initial loss). Diverged runs stay in every metric at their initial value.",
     "adamrag-sens (README, section Metrics)"),
    ("Performance profile",
     "rho_s(tau): share of tasks on which optimizer s is within a factor tau of the best optimizer "
     "(computed across studies; one study is one task).",
     "Dolan & More 2002, Math. Program. 91:201-213; AlgoPerf, Dahl et al. 2023, arXiv 2306.07179"),
)
"""(name, definition, source) of each metric, printed in the report."""


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote each file (all inside :attr:`out_dir`)."""

    out_dir: Path
    report_html: Path
    report_md: Path
    trials_csv: Path
    curves_csv: Path
    summary_csv: Path
    figures: dict[str, Path]

    def all(self) -> list[Path]:
        """Every file written."""
        return [self.report_html, self.report_md, self.trials_csv, self.curves_csv,
                self.summary_csv, *self.figures.values()]


def build_report(
    storage: str | os.PathLike | optuna.storages.BaseStorage,
    study_name: str,
    out_dir: str | os.PathLike,
    *,
    tolerance: float | None = None,
    metric: str | None = None,
    aggregation: str = "best",
) -> ReportPaths:
    """Read a stored study and write its report into ``out_dir`` (created if missing).

    Writes ``trials.csv`` (the tidy trials frame, every state), ``curves.csv`` (per-epoch
    curves), ``summary.csv`` (one row per optimizer, :func:`~sensitivity.report.metrics.summarize`),
    the PNG figures of :data:`FIGURES`, ``report.md`` (links the PNGs) and ``report.html``
    (self-contained: PNGs embedded as data URIs). Headless; never writes to the storage.

    Args:
        storage: Optuna storage URL, SQLite/journal path, or storage object.
        study_name: the study to report on.
        out_dir: report directory; files of an earlier report there are replaced.
        tolerance: tolerance for the tolerance width (relative for losses, 0.1 = 10%; absolute
            for accuracies, 0.01 = 1 point); the metric's default when None.
        metric: ``val_loss`` or ``val_acc``; the study's objective metric when None.
        aggregation: ``"best"`` or ``"default"`` betas, see :func:`~sensitivity.report.metrics.lr_curve`.

    Raises:
        UserError: the study cannot be read or has no completed trial (from ``load_trials``).
        ValueError: unknown metric or aggregation, or a negative tolerance.
    """
    data = load_trials(storage, study_name)
    metric = metric or data.meta["metric"]
    M.higher_is_better(metric)
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    tol = M.default_tolerance(metric) if tolerance is None else float(tolerance)
    return write_report(data, out_dir, metric=metric, tolerance=tol, aggregation=aggregation)


def write_report(
    data: TrialsData, out_dir: str | os.PathLike, *, metric: str, tolerance: float, aggregation: str = "best"
) -> ReportPaths:
    """Write the report of already loaded :class:`TrialsData` (see :func:`build_report`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = M.summarize(data.trials, metric, tolerance, aggregation)
    task = data.meta.get("task") or data.meta["study_name"]
    makers: dict[str, Callable[[], Any]] = {
        "lr_sensitivity": lambda: F.lr_sensitivity_figure(
            data.trials, metric, aggregation=aggregation, tolerance=tolerance,
            title=f"{task}: learning-rate sensitivity (final {metric.replace('_', ' ')})"),
        "heatmaps": lambda: F.robustness_heatmaps(
            data.trials, metric, title=f"{task}: final {metric.replace('_', ' ')} over lr x beta1, one colour scale"),
        "loss_curves": lambda: F.loss_curves_figure(
            data.trials, data.curves, metric, title=f"{task}: loss curves per learning rate"),
        "relative_performance": lambda: F.relative_performance_figure(
            data.trials, metric, aggregation=aggregation, title=f"{task}: relative performance (DeepOBS)"),
    }
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        pngs: dict[str, bytes] = {}
        for key, filename, _ in FIGURES:
            fig = makers[key]()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=F.DPI)
            pngs[key] = buf.getvalue()
            (stage / filename).write_bytes(pngs[key])
        data.trials.to_csv(stage / "trials.csv", index=False)
        data.curves.to_csv(stage / "curves.csv", index=False)
        summary.to_csv(stage / "summary.csv", index=False)
        (stage / "report.md").write_text(render_markdown(data, summary), encoding="utf-8")
        (stage / "report.html").write_text(render_html(data, summary, pngs), encoding="utf-8")
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ReportPaths(
        out_dir=out,
        report_html=out / "report.html",
        report_md=out / "report.md",
        trials_csv=out / "trials.csv",
        curves_csv=out / "curves.csv",
        summary_csv=out / "summary.csv",
        figures={key: out / filename for key, filename, _ in FIGURES},
    )


# ---- content shared by both renderings ----------------------------------------------------------

def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as readable strings, columns that are empty for every optimizer dropped."""
    metric = summary.attrs.get("metric", "value")
    unit = "" if M.higher_is_better(metric) else " (nats)"
    cols = {
        "optimizer_display": "optimizer",
        "trials": "trials",
        "best_value": f"best {metric}",
        "best_lr": "best lr",
        "best_beta1": "beta1",
        "best_beta2": "beta2",
        "best_gamma": "gamma",
        "best_weight_decay": "weight decay",
        "lr_sensitivity": f"LR sensitivity{unit}",
        "tolerance_width_decades": "tolerance width (decades of lr)",
        "divergence_rate": "diverged",
        "median_wall_time_s": "median s/trial",
        "lr_min": "lr searched",
    }
    out = pd.DataFrame(index=summary.index)
    for src, name in cols.items():
        col = summary[src]
        if src != "optimizer_display" and col.isna().all():
            continue
        if src in ("best_lr",):
            out[name] = [F.format_lr(v) if pd.notna(v) else "" for v in col]
        elif src == "lr_min":
            out[name] = [f"{F.format_lr(a)} .. {F.format_lr(b)} ({n} pts)"
                         for a, b, n in zip(summary["lr_min"], summary["lr_max"], summary["lr_points"])]
        elif src == "divergence_rate":
            out[name] = [f"{100 * v:.0f}%" if pd.notna(v) else "" for v in col]
        elif src == "median_wall_time_s":
            out[name] = [_num(float(v), 3) for v in col]
        elif src == "tolerance_width_decades":
            out[name] = [_num(float(v), 3) for v in col]
        else:
            out[name] = [_num(v.item() if hasattr(v, "item") else v) for v in col]
    return out.reset_index(drop=True)


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
    facts = [
        ("study", meta["study_name"]),
        ("task", str(meta.get("task") or "unknown")),
        ("task settings", json.dumps(config, sort_keys=True) if config else ""),
        ("objective metric", f"{meta['metric']} ({meta['direction']})"),
        ("epochs per trial", _num(meta.get("epochs"))),
        ("divergence factor", _num(meta.get("divergence_factor"))),
        ("sampler", str(meta.get("sampler") or "unknown")),
        ("trials by state", f"{len(trials)} in total ({states})"),
        ("optimizers", ", ".join(M.optimizer_order(done["optimizer"]))),
        ("seeds", str(int(done["seed"].nunique()))),
        ("device", devices),
        ("total training time", f"{done['wall_time_s'].sum():.1f} s"),
        ("package version", str(meta.get("package_version") or "")),
    ]
    return [(k, v) for k, v in facts if v not in ("", None)]


def _settings_line(data: TrialsData, summary: pd.DataFrame) -> str:
    agg = F.aggregation_text(data.trials, summary.attrs["aggregation"])
    return (f"Metric {summary.attrs['metric']}; each optimizer's lr curve: {agg} "
            f"(definition: {summary.attrs['aggregation_text']}); tolerance: {summary.attrs['tolerance_text']}.")


def render_markdown(data: TrialsData, summary: pd.DataFrame) -> str:
    """``report.md``: study facts, the summary table, figure links, definitions with sources."""
    name = data.meta["study_name"]
    lines = [f"# Sensitivity report: {name}", ""]
    lines += [f"- **{k}**: {v}" for k, v in study_facts(data)]
    lines += ["", "## Summary", "", _settings_line(data, summary), "", markdown_table(summary_table(summary)), ""]
    lines += ["Full numbers: [summary.csv](summary.csv), [trials.csv](trials.csv), [curves.csv](curves.csv).", ""]
    for _, filename, heading in FIGURES:
        lines += [f"## {heading}", "", f"![{heading}]({filename})", ""]
    lines += ["## Metric definitions", ""]
    lines += [f"- **{n}**: {d} *Source: {s}.*" for n, d, s in DEFINITIONS]
    lines += ["", f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens.", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.92em}
"""


def render_html(data: TrialsData, summary: pd.DataFrame, pngs: dict[str, bytes]) -> str:
    """``report.html``: one self-contained page (figures as base64 PNG data URIs)."""
    esc = html.escape
    name = data.meta["study_name"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sensitivity report: {esc(name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Sensitivity report: {esc(name)}</h1>",
        '<dl class="facts">',
        *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in study_facts(data)),
        "</dl>",
        "<h2>Summary</h2>",
        f'<p class="note">{esc(_settings_line(data, summary))}</p>',
        summary_table(summary).to_html(index=False, escape=True, border=0),
    ]
    for key, _, heading in FIGURES:
        if key not in pngs:
            continue
        uri = "data:image/png;base64," + base64.b64encode(pngs[key]).decode("ascii")
        parts += [f"<h2>{esc(heading)}</h2>", f'<img alt="{esc(heading)}" src="{uri}">']
    parts += ["<h2>Metric definitions</h2>", "<dl>"]
    for n, d, s in DEFINITIONS:
        parts.append(f"<dt><b>{esc(n)}</b></dt><dd>{esc(d)}<br><i>Source: {esc(s)}.</i></dd>")
    parts += [
        "</dl>",
        f'<p class="note">Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens '
        "from the stored trials alone.</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)
