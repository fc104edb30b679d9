"""User text where it enters: a user task's name passes the same rule as --study where it
enters; task text carries no control characters; paths from user text stay inside their folder."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import uuid

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.errors import UserError
from sensitivity.records import safe_child, valid_name
from sensitivity.study.spec import StudySpec
from sensitivity.tasks import get_task

BAD_NAMES = ["../../../../tmp/x", "<svg onload=alert(1)>", "a/b", "..", ".hidden", "-rf", "", "x" * 129,
             "name with space", "caf\u00e9", "a\nb", "a\x1b[31mb", "a\\b", "a;rm -rf ~", "$HOME"]
GOOD_NAMES = ["digits-mlp", "my_task.v2", "lm:small", "a+b", "x" * 128, "A0"]

SOURCE = textwrap.dedent('''
    import torch
    from sensitivity.tasks import TensorData, TensorTask

    def load(config):
        x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] > 0).long()
        return TensorData(x[:30], y[:30], x[30:], y[30:], num_classes=2, description="toy")

    def named(name, **kw):
        return TensorTask(name=name, defaults={"epochs": 1, "batch_size": 10}, load=load,
                          build_model=lambda config, data: torch.nn.Linear(3, 2), **kw)
''')


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_name_rule_refuses(name):
    expected = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}", name, flags=re.ASCII) is not None
    assert expected is False and valid_name(name) is False


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_the_name_rule_allows(name):
    assert valid_name(name)


@pytest.fixture()
def module(tmp_path, monkeypatch):
    name = f"text_tasks_{uuid.uuid4().hex[:8]}"
    body = SOURCE + "".join(f"\ndef bad_{i}():\n    return named({n!r})\n" for i, n in enumerate(BAD_NAMES))
    body += textwrap.dedent('''
        def good():
            return named("fine-task")
        def ansi_description():
            return named("ansi", description="looks \\x1b[2J\\x1b[31mred")
        def newline_source():
            return named("nl", data_source="line one\\nfake: second line")
        def bad_dataset():
            return named("ds", datasets=("ok", "../up"))
        def description_not_text():
            return named("nt", description=42)
        def html_description():
            return named("htmlish", description="<script>alert(1)</script> <img src=x onerror=alert(1)>")
    ''')
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("i", range(len(BAD_NAMES)))
def test_a_user_task_with_a_bad_name_is_refused_naming_the_task_and_the_fix(module, i):
    target = f"{module}:bad_{i}"
    with pytest.raises(UserError) as info:
        get_task(target)
    text = str(info.value)
    assert "\n" not in text and target in text
    assert ("has no name" in text) if BAD_NAMES[i] == "" else ("set Task.name" in text and "letters, digits" in text)


@pytest.mark.parametrize("factory, words", [
    ("ansi_description", "description holds the control character '\\x1b'"),
    ("newline_source", "data_source holds the control character '\\n'"),
    ("bad_dataset", "dataset name '../up' is not allowed"),
    ("description_not_text", "description is an int"),
])
def test_task_text_with_control_characters_is_refused(module, factory, words):
    with pytest.raises(UserError) as info:
        get_task(f"{module}:{factory}")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_html_in_a_description_enters_as_text(module):
    """Markup is text at the source; each sink escapes it."""
    assert get_task(f"{module}:html_description").description.startswith("<script>")


def test_sweep_with_a_bad_task_name_is_one_line_exit_2_nothing_written(module, tmp_path):
    db = tmp_path / "s.db"
    result = CliRunner().invoke(app, ["sweep", "--task", f"{module}:bad_0", "--optimizers", "adam", "--lr", "1e-2",
                                      "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Task.name" in lines[0] and f"{module}:bad_0" in lines[0]
    assert not db.exists() and not (tmp_path / "studies").exists()


@pytest.mark.parametrize("name", BAD_NAMES[:6])
def test_study_flag_uses_the_same_rule(name):
    with pytest.raises(UserError, match="letters, digits"):
        StudySpec(study_name=name).validate()


def test_safe_child_keeps_paths_inside(tmp_path):
    assert safe_child(tmp_path, "digits-mlp") == tmp_path / "digits-mlp"
    for name in ["..", "../x", "a/../../x", "/etc", "", ".", "a\0b"]:
        with pytest.raises(ValueError, match="not a name inside"):
            safe_child(tmp_path, name)
    outside = tmp_path.parent / f"outside-{uuid.uuid4().hex[:6]}"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)  # a symbolic link out of the folder
    with pytest.raises(ValueError):
        safe_child(tmp_path, "link")


def test_a_metric_label_with_a_line_break_is_refused(tmp_path, monkeypatch):
    name = f"metric_text_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SOURCE + textwrap.dedent('''
        from sensitivity.records import Metric
        def make():
            return named("mt", metrics=(Metric("val_loss", "minimize", "nats", "loss\\n# injected heading"),))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="metric 'val_loss' label holds a control character"):
        get_task(f"{name}:make")
    sys.modules.pop(name, None)
