"""User text through the whole command line into its sinks: a metric label with $ pairs in the
figures, HTML and javascript: links in a task's description and data source in report.md, rich
markup in a description in `tasks`, an entry point named like a built-in task; and a table in a
study definition, refused.
"""

from __future__ import annotations

import re
import sys
import textwrap
import uuid

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app, terminal
from sensitivity.tasks import ENTRY_POINT_GROUP, TASKS

HOSTILE = ('<script>alert(1)</script> <img src=x onerror=alert(2)> '
           '<iframe src="javascript:alert(3)"></iframe> [link](javascript:alert(4))')

TASK_SOURCE = textwrap.dedent(f'''
    import torch
    from sensitivity.records import Metric
    from sensitivity.tasks import TensorData, TensorTask, VAL_ACC

    def load(config):
        x = torch.randn(60, 3, generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] > 0).long()
        return TensorData(x[:40], y[:40], x[40:], y[40:], num_classes=2, description="toy")

    def hostile():
        return TensorTask(name="hostile", description={HOSTILE!r}, data_source={HOSTILE!r},
                          defaults={{"epochs": 1, "batch_size": 10}}, load=load,
                          build_model=lambda config, data: torch.nn.Linear(3, 2))

    def dollars():
        return TensorTask(name="dollars", description="a metric label with TeX-like dollars",
                          defaults={{"epochs": 1, "batch_size": 10}}, load=load,
                          build_model=lambda config, data: torch.nn.Linear(3, 2),
                          metrics=(Metric("val_loss", "minimize", "nats/ex", "loss in $^$ and $x_$"), VAL_ACC))

    def markup():
        return TensorTask(name="markup", description="closing [/] and [bold red]styled[/bold red] text",
                          defaults={{"epochs": 1, "batch_size": 10}}, load=load,
                          build_model=lambda config, data: torch.nn.Linear(3, 2))
''')


def _stored(folder, factory: str):
    """A stored study of the user task ``factory`` of TASK_SOURCE: (folder, database, study name)."""
    name = f"{factory}_tasks_{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.py"
    path.write_text(TASK_SOURCE)
    db = folder / "s.db"
    result = CliRunner().invoke(app, ["sweep", "--task", f"{path}:{factory}", "--optimizers", "adam,nag",
                                      "--lr", "1e-3,1e-2,1e-1", "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return folder, db, factory


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory):
    """A study whose task description and data source hold HTML and a javascript: link."""
    return _stored(tmp_path_factory.mktemp("hostile"), "hostile")


@pytest.fixture(scope="module")
def dollars_study(tmp_path_factory):
    """A study whose task's metric label holds $ pairs (mathtext to matplotlib)."""
    return _stored(tmp_path_factory.mktemp("dollars"), "dollars")


def _report(folder, db, study):
    out = folder / f"report-{uuid.uuid4().hex[:6]}"
    return CliRunner().invoke(app, ["report", "--study", study, "--storage", f"sqlite:///{db}",
                                    "--out", str(out)]), out


@pytest.mark.slow  # a whole report build; tests/report/test_user_text_sinks.py draws $ labels fast
def test_a_metric_label_with_dollars_does_not_break_the_figures(dollars_study):
    result, out = _report(*dollars_study)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert (out / "report.md").exists()


@pytest.mark.slow
def test_report_md_carries_no_live_html_from_user_text(hostile_study):
    from markdown_it import MarkdownIt

    result, out = _report(*hostile_study)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    md = (out / "report.md").read_text(encoding="utf-8")
    html = MarkdownIt("commonmark").render(md)
    assert not re.search(r"<(script|iframe|svg)\b", html, re.IGNORECASE), html
    # the only images are the report's own figures, each a file it wrote
    images = re.findall(r"<img\b[^>]*>", html, re.IGNORECASE)
    figures = {p.name for p in out.glob("*.png")}
    assert images and all(re.match(r'<img src="([\w.]+)"', i) and re.match(r'<img src="([\w.]+)"', i)[1] in figures
                          and "onerror" not in i.lower() for i in images), images
    assert 'href="javascript:' not in html.lower() and "<a " not in html.split("Full numbers")[0]
    # the user's text is shown as written
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_tasks_prints_rich_markup_in_a_description_as_text(tmp_path, monkeypatch):
    name = f"markup_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_SOURCE)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmarkup-{name} = {name}:markup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(terminal.console, "width", 300)  # made at import: COLUMNS alone comes too late
    result = CliRunner().invoke(app, ["tasks"])
    sys.modules.pop(name, None)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "closing [/] and [bold red]styled[/bold red] text" in result.stdout


def test_an_entry_point_named_like_a_built_in_is_listed_as_broken(tmp_path, monkeypatch):
    name = f"shadow_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_SOURCE)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ndigits-mlp = {name}:markup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(terminal.console, "width", 300)  # made at import: COLUMNS alone comes too late
    result = CliRunner().invoke(app, ["tasks"])
    sys.modules.pop(name, None)
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if f"{name}:markup" in line]
    assert rows and "broken" in " ".join(rows)
    assert all(t in result.stdout for t in TASKS)


@pytest.mark.parametrize("text", ["[study]\nepochs = 1\n", "study.epochs = 1\n", "[sweep]\nepochs = 1\n",
                                  "[[optimizers]]\nname = 'adam'\n",
                                  "epochs = 1\n[lr]\nlow = 1e-3\n"])
def test_a_table_in_a_study_definition_is_refused(tmp_path, text):
    """Kind 5 (already held on this branch: a table is refused as a table or an unknown key): pinned here."""
    toml = tmp_path / "s.toml"
    toml.write_text(text)
    db = tmp_path / "s.db"
    result = CliRunner().invoke(app, ["sweep", "--config", str(toml), "--optimizers", "adam", "--lr", "1e-2",
                                      "--beta1", "0.9", "--epochs", "1", "--train-size", "64", "--val-size", "32",
                                      "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(toml) in lines[0], lines
    assert "table" in lines[0] or "unknown key" in lines[0], lines
    assert not db.exists()
