"""User text printed on the terminal as written: rich markup, emoji codes and control characters in a
path, a task's description or an error message are shown as text, never interpreted."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app, terminal

TEXTS = ["[bold red]styled[/bold red]", "closing [/] tag", "an emoji :smile: code", "[link=https://x.org]x[/link]",
         "a \\[bold] escape"]


@pytest.mark.parametrize("text", TEXTS)
def test_terminal_text_prints_rich_markup_and_emoji_codes_as_written(text):
    with terminal.console.capture() as captured:
        terminal.console.print(f"[bold]label:[/] {terminal.terminal_text(text)}", soft_wrap=True)
    assert captured.get().rstrip("\n") == f"label: {text}"


def test_terminal_text_drops_control_characters():
    shown = terminal.terminal_text("a\x1b[2Jb\rc\x07d\x9be\tf\ng")
    assert shown == "a\ufffd[2Jb\ufffdc\ufffdd\ufffde\tf\ng"


@pytest.mark.parametrize("text", TEXTS)
def test_an_error_naming_a_path_with_markup_prints_the_path_as_written(tmp_path, text):
    target = tmp_path / f"{text}.py"
    result = CliRunner().invoke(app, ["sweep", "--task", f"{target}:make", "--optimizers", "adam", "--lr", "1e-2",
                                      "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(target) in lines[0], lines
    assert not (tmp_path / "s.db").exists()


def test_plain_text_drops_control_characters_and_keeps_markup_as_written():
    assert terminal.plain_text("[red]out<script>\x1b[31m\rx") == "[red]out<script>\ufffd[31m\ufffdx"


@pytest.mark.parametrize("command", ["report", "compare"])
def test_the_written_to_line_shows_an_output_folder_with_an_escape_sequence_as_text(tmp_path, command):
    """``--out`` with an escape sequence in it: the success line must not recolour the terminal."""
    from tests.helpers.toy_studies import stored_toy_study

    url = stored_toy_study(tmp_path / "db")
    out = tmp_path / "[red]out<script>\x1b[31m"
    args = ([command, "--storage", url, "--study", "toy", "--out", str(out)] if command == "report" else
            [command, "--storage", url, "--storage", stored_toy_study(tmp_path / "db2"), "--study", "toy", "--study", "toy",
             "--out", str(out)])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    line = next(line for line in result.stdout.splitlines() if "written to" in line)
    assert "\x1b" not in result.stdout and "[red]out<script>\ufffd[31m" in line, line
