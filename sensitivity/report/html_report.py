"""``report.html``: one self-contained page (inline CSS, figures as PNG data URIs), user text escaped.

One concept: the HTML rendering. Every piece of text that reaches the page (study names, task
descriptions, table cells, findings) goes through :func:`html.escape` or pandas' escaping
``to_html(escape=True)``. :func:`html_page`, :func:`table_html`, :func:`png_uri` and
:func:`definitions_html` are shared with the cross-study page (:mod:`sensitivity.report.compare`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from typing import Any, Sequence

import pandas as pd

from sensitivity.report import prose
from sensitivity.report.analysis import StudyAnalysis
from sensitivity.report.frame import TrialsData


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
.scroll{overflow-x:auto}
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
    for n, d, s in prose.DEFINITIONS:
        parts.append(f"<dt><b>{esc(n)}</b></dt><dd>{esc(d)}<br><i>Source: {esc(s)}.</i></dd>")
    return parts + ["</dl>"]


def render_html(data: TrialsData, analysis: StudyAnalysis, pngs: dict[str, bytes], *,
                findings: Sequence[str] = (), specs: Sequence = ()) -> str:
    """``report.html``: one self-contained page (figures as base64 PNG data URIs)."""
    esc = html.escape
    name = data.meta["study_name"]
    metric = analysis.settings.metric
    body = [f"<h1>Sensitivity report: {esc(name)}</h1>"]
    if findings:
        body.append(f'<p class="findings"><b>Findings.</b> {esc(" ".join(findings))}</p>')
    body += [
        '<dl class="facts">',
        *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in prose.study_facts(data)),
        "</dl>",
        "<h2>Summary</h2>",
        f'<p class="note">{esc(prose.settings_line(analysis))}</p>',
        table_html(prose.summary_table(analysis.summary, metric=metric, lr_axis=analysis.settings.lr_axis)),
    ]
    others = prose.best_trial_metrics(data, metric, higher_is_better=analysis.settings.higher_is_better)
    if not others.empty:
        body += ['<p class="note">Every recorded metric of each optimizer\'s best trial (final values):</p>',
                 table_html(others)]
    for spec in specs:
        if spec.key in pngs:
            body += [f"<h2>{esc(spec.heading)}</h2>", f'<img alt="{esc(spec.heading)}" src="{png_uri(pngs[spec.key])}">']
    body += definitions_html()
    return html_page(f"Sensitivity report: {name}", body)
