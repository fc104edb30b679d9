"""``report.md``: the report as GitHub Markdown (findings, facts, summary table, figure links, definitions).

One concept: the Markdown rendering. It reads a loaded study and its
:class:`~sensitivity.report.analysis.StudyAnalysis` and the prose of :mod:`sensitivity.report.prose`.
Every piece of text that reaches the page (study and task names, a task's description and data
source, findings, table cells) goes through :func:`markdown_text`, so a CommonMark renderer
(GitHub, VS Code's preview, markdown-it, mkdocs) shows it as written: no raw HTML, no link, no
emphasis comes from user text. The page's own markup (headings, bold labels, links to the files it
wrote) is added around the escaped text.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Sequence

import pandas as pd

from sensitivity.report import prose
from sensitivity.report.analysis import StudyAnalysis
from sensitivity.report.frame import TrialsData


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~!#])")
"""Characters that open Markdown constructs inline: code, emphasis, links and images, raw HTML and
autolinks (``<``), entity references (``&``), table cells (``|``), GFM strikethrough (``~``)."""


def markdown_text(text: object) -> str:
    """``text`` as a CommonMark renderer should show it, character for character, on one line.

    Line breaks become spaces (a line of user text must not start a block: a heading, a list, an
    HTML block such as ``<script>``), and every character that opens an inline construct is
    backslash-escaped (CommonMark 0.31, section 2.4: any ASCII punctuation may be escaped), so
    ``<iframe src="javascript:...">`` and ``[x](javascript:...)`` are shown as text, never as
    HTML or a link.
    """
    line = " ".join(str(text).splitlines())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", line)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame`` (its index left out), every cell and heading through
    :func:`markdown_text`."""
    cells = [[markdown_text(c) for c in frame.columns]] + [[markdown_text(v) for v in row]
                                                         for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def figure_link(spec, fmt: str) -> str:
    """A Markdown image link to ``spec``'s figure file (a plain link for a PDF)."""
    name = f"{spec.stem}.{fmt}"
    heading = markdown_text(spec.heading)
    return f"[{heading} (PDF)]({name})" if fmt == "pdf" else f"![{heading}]({name})"


def definitions_markdown() -> list[str]:
    """The "Metric definitions" section: a heading, then one list item per definition with its source."""
    esc = markdown_text
    return ["## Metric definitions", ""] + [f"- **{esc(n)}**: {esc(d)} *Source: {esc(s)}.*"
                                            for n, d, s in prose.DEFINITIONS]


def render_markdown(data: TrialsData, analysis: StudyAnalysis, *, findings: Sequence[str] = (),
                    specs: Sequence = (), fmt: str = "png") -> str:
    """``report.md``: findings, study facts, the summary table, figure links, definitions with sources."""
    esc = markdown_text
    name = data.meta["study_name"]
    lines = [f"# Sensitivity report: {esc(name)}", ""]
    if findings:
        lines += ["**Findings.** " + esc(" ".join(findings)), ""]
    metric = analysis.settings.metric
    lines += [f"- **{esc(k)}**: {esc(v)}" for k, v in prose.study_facts(data)]
    lines += ["", "## Summary", "", esc(prose.settings_line(analysis)), "",
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
        lines += [f"## {esc(spec.heading)}", "", figure_link(spec, fmt), ""]
    lines += definitions_markdown()
    lines += ["", f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by adamrag-sens.", ""]
    return "\n".join(lines)
