"""Every command's help shows after each flag what it takes: nothing after a flag (``--download``,
``--measure``, ``--help``), the type of one value after a repeatable option (``--study <str>``).

Typer's rich help wrote ``--download <bool>``, which reads as if the flag took a value, while
``--download true`` is refused ("Got unexpected extra argument(s) (true)"); and
``--study <list[str]>``, which reads as if it took a list.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from sensitivity.cli import app

runner = CliRunner()


def _commands(command, path=()):
    """(command path, click command) for the application, every group and every command in it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _row(help_text: str, flag: str) -> str:
    """The help's row of ``flag`` (its first line)."""
    return next(line for line in help_text.splitlines() if re.search(rf"│\s+{re.escape(flag)}\s", line))


def test_every_command_is_checked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "sweep", "worker", "report", "compare", "tasks", "optimizers", "bench", "bench optimizer",
            "bench train", "bench sweep"} <= names


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "adamrag-sens")
def test_a_flag_shows_no_value_placeholder(path):
    text = _help(path)
    assert "<bool>" not in text
    assert "<list[" not in text
    command = dict(COMMANDS)[path]
    flags = [p.opts[0] for p in command.params if getattr(p, "is_flag", False)] + ["--help"]
    for flag in flags:
        row = _row(text, flag)
        assert re.search(rf"{re.escape(flag)}\s+(?!<)\S", row), row  # the help text follows, no placeholder


def test_a_repeatable_option_shows_the_type_of_one_value():
    text = _help(("compare",))
    assert re.search(r"--study\s+<str>\s", _row(text, "--study"))
    assert re.search(r"--storage\s+<str>\s", _row(text, "--storage"))


def test_an_option_that_takes_a_value_still_shows_its_type():
    text = _help(("sweep",))
    assert re.search(r"--epochs\s+<int>\s", _row(text, "--epochs"))
    assert re.search(r"--config\s+<path>\s", _row(text, "--config"))
