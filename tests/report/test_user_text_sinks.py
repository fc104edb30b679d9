"""User text reaches figures, report.md and the CSV files as written: never as mathtext, Markdown,
HTML or a spreadsheet formula. Each check compares with the text itself, rendered independently."""

from __future__ import annotations

import csv
import html
import re

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt
from matplotlib.text import Text

from sensitivity.records import Metric, declare_metrics
from sensitivity.report import analyze, compare_figures, figures, heatmaps, style
from sensitivity.report.csv_tables import write_csv
from sensitivity.report.markdown_report import markdown_table, markdown_text
from tests.helpers.trial_frames import grid_study

DOLLARS = ["$x$", "loss in $^$ and $x_$", r"costs \$5 and $10", "a $ b", r"$\alpha$ $\beta$", "$$", "\\"]


@pytest.mark.parametrize("text", DOLLARS)
def test_literal_text_draws_exactly_what_plain_text_draws(text):
    """Escaped text takes the width of the same text drawn with mathtext switched off."""
    fig = style.new_figure()
    with style.style():
        plain = fig.text(0.1, 0.5, text, parse_math=False)
        escaped = fig.text(0.1, 0.2, style.literal_text(text))
    fig.canvas.draw()  # a malformed mathtext ("$^$") would raise here
    renderer = fig.canvas.get_renderer()
    assert escaped.get_window_extent(renderer).width == pytest.approx(plain.get_window_extent(renderer).width)


def _unescaped_dollars(text: str) -> int:
    return len(re.findall(r"(?<!\\)\$", text))


@pytest.fixture(scope="module")
def dollar_analysis():
    """Two optimizers on a metric whose declared label and unit hold $ pairs, display names too."""
    declare_metrics((Metric("dollar_loss", "minimize", "$n$ats", "loss in $x_i$ and $^$"),))
    frames = []
    for name in ("adam", "nag"):
        f = grid_study(lambda i, j: 1.0 + (i - 2) ** 2 + j, [1e-3, 1e-2, 1e-1, 1.0, 10.0], [0.8, 0.9],
                       optimizer=name, seeds=(0, 1), noise={0: 0.0, 1: 0.1})
        f["optimizer_display"] = f"{name} $\\alpha$"
        frames.append(f)
    trials = pd.concat(frames, ignore_index=True).rename(
        columns={"initial_val_loss": "initial_dollar_loss", "final_val_loss": "final_dollar_loss"})
    trials["value"] = trials["final_dollar_loss"]
    return analyze(trials, "dollar_loss")


def _figures(analysis):
    curves = analysis.complete[["trial", "optimizer", "lr", "beta1", "beta2", "gamma", "weight_decay", "seed",
                                "diverged"]].assign(epoch=1, train_loss=1.0, dollar_loss=1.0)
    yield figures.lr_sensitivity_figure(analysis, title="task $y$: lr")
    yield figures.loss_curves_figure(analysis, curves, title="task $y$: curves")
    yield figures.relative_performance_figure(analysis, title="task $y$")
    yield figures.expected_best_figure(analysis.expected_best, "dollar_loss", display=dict(analysis.display),
                                       title="task $y$", note="sampler $z$")
    yield heatmaps.pair_heatmaps(analysis, "lr", "beta1", title="task $y$: heatmap")
    yield compare_figures.lr_curve_grid_figure([("study $s$", analysis)], title="across $t$")


@pytest.mark.slow
def test_every_figure_draws_user_text_as_written(dollar_analysis):
    for fig in _figures(dollar_analysis):
        fig.canvas.draw()  # "$^$" as mathtext raises ValueError here
        texts = [t.get_text() for t in fig.findobj(Text)]
        user = [t for t in texts if any(k in t for k in ("alpha", "x_i", "$^", "$y", "$s", "$t", "$z", "ats"))]
        assert user, texts
        assert all(_unescaped_dollars(t) == 0 for t in user), user


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '<iframe src="javascript:alert(3)"></iframe>',
    "[link](javascript:alert(4))",
    "![img](javascript:alert(5))",
    "<javascript:alert(6)>",
    "<https://example.org>",
    "`code` **bold** _it_ ~~gone~~",
    "line one\n<script>alert(7)</script>",
    "first\r\n# a heading\n- a list",
    "&lt;script&gt; &amp; &#x3C;b>",
    "a | pipe | in a cell",
    "\\<b>escaped already\\</b>",
    "<!-- a comment -->",
    "[ref]\n\n[ref]: javascript:alert(8)",
]


def _shown(rendered: str) -> str:
    """The text a reader sees in rendered HTML: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", rendered)).split())


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_is_shown_as_written_by_a_commonmark_renderer(text):
    rendered = MarkdownIt("commonmark").render(f"- **label**: {markdown_text(text)}\n")
    assert not re.search(r"<(script|img|iframe|a|code|em|h1|!--)\b", rendered, re.IGNORECASE), rendered
    assert rendered.count("<strong>") == 1 and rendered.count("<li>") == 1, rendered  # only the page's own markup
    assert _shown(rendered) == "label: " + " ".join(text.split())


def test_markdown_table_cells_are_shown_as_written():
    frame = pd.DataFrame({"optimizer": HOSTILE, "value": [f"{i} | {i}" for i in range(len(HOSTILE))]})
    rendered = MarkdownIt("commonmark").enable("table").render(markdown_table(frame) + "\n")
    assert not re.search(r"<(script|img|iframe|a|code|em)\b", rendered, re.IGNORECASE), rendered
    cells = [_shown(c) for c in re.findall(r"<td>(.*?)</td>", rendered, re.DOTALL)]
    assert cells[0::2] == [" ".join(t.split()) for t in HOSTILE]
    assert cells[1::2] == [f"{i} | {i}" for i in range(len(HOSTILE))]


def test_csv_text_cells_never_start_a_formula(tmp_path):
    frame = pd.DataFrame({"task": ["=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "ok", "a=b"],
                          "value": [-1.5, 2.0, -3.0, 4.0, 5.0, 7.0, 8.0]})
    write_csv(frame, tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["task", "value"]
    assert [r[0] for r in rows[1:]] == ["'=1+2", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "ok", "a=b"]
    assert [float(r[1]) for r in rows[1:]] == frame["value"].tolist()  # numbers stay numbers, signs and all
    back = pd.read_csv(tmp_path / "t.csv")
    assert np.array_equal(back["value"].to_numpy(), frame["value"].to_numpy())
