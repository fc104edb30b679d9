"""``report.md``: the report as GitHub Markdown (findings, facts, summary table, figure links, definitions).

One concept: the Markdown rendering. It reads a loaded study and its
:class:`~sensitivity.report.analysis.StudyAnalysis` and the prose of :mod:`sensitivity.report.prose`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

import pandas as pd

from sensitivity.report import prose
from sensitivity.report.analysis import StudyAnalysis
from sensitivity.report.frame import TrialsData


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


def figure_link(spec, fmt: str) -> str:
    """A Markdown image link to ``spec``'s figure file (a plain link for a PDF)."""
    name = f"{spec.stem}.{fmt}"
    return f"[{spec.heading} (PDF)]({name})" if fmt == "pdf" else f"![{spec.heading}]({name})"


def render_markdown(data: TrialsData, analysis: StudyAnalysis, *, findings: Sequence[str] = (),
                    specs: Sequence = (), fmt: str = "png") -> str:
    """``report.md``: findings, study facts, the summary table, figure links, definitions with sources."""
    name = data.meta["study_name"]
    lines = [f"# Sensitivity report: {name}", ""]
    if findings:
        lines += ["**Findings.** " + " ".join(findings), ""]
    metric = analysis.settings.metric
    lines += [f"- **{k}**: {v}" for k, v in prose.study_facts(data)]
    lines += ["", "## Summary", "", prose.settings_line(analysis), "",
              markdown_table(prose.summary_table(analysis.summary, metric=metric, lr_axis=analysis.settings.lr_axis)),
              ""]
    others = prose.best_trial_metrics(data, metric, higher_is_better=analysis.settings.higher_is_better)
    if not others.empty:
        lines += ["Every recorded metric of each optimizer's best trial (final values):", "",
                  markdown_table(others), ""]
    extra = ", [differences.csv](differences.csv)" if not analysis.differences.empty else ""
    lines += ["Full numbers: [summary.csv](summary.csv), [expected_best.csv](expected_best.csv)"
              f"{extra}, [importance.csv](importance.csv), [ablation.csv](ablation.csv), [trials.csv](trials.csv), "
              "[curves.csv](curves.csv).", ""]
    for spec in specs:
        lines += [f"## {spec.heading}", "", figure_link(spec, fmt), ""]
    lines += ["## Metric definitions", ""]
    lines += [f"- **{n}**: {d} *Source: {s}.*" for n, d, s in prose.DEFINITIONS]
    lines += ["", f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens.", ""]
    return "\n".join(lines)
