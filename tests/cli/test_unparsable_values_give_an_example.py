"""A value Typer cannot parse (``--epochs abc``) is one line and exit 2, like every other refusal,
and ends with a value the flag takes, as the sweep's own refusals do ("use e.g. --epochs 10")."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sensitivity.cli import app

runner = CliRunner()


def _numeric_options() -> list[tuple[tuple[str, ...], str, type]]:
    """(command path, flag, type) of every option of every command that takes one int or float."""
    found = []

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
            return
        for param in command.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            kind = param.bare_type()
            if kind in ("int", "float"):
                found.append((path, next(o for o in param.opts if o.startswith("--")), {"int": int, "float": float}[kind]))

    walk(typer.main.get_command(app), ())
    return found


NUMERIC = _numeric_options()


def test_the_commands_have_numeric_options_to_check():
    flags = {flag for _, flag, _ in NUMERIC}
    assert {"--epochs", "--seeds", "--tolerance", "--threads", "--steps", "--divergence-factor"} <= flags


@pytest.mark.parametrize("path, flag, kind", NUMERIC, ids=[" ".join((*p, f)) for p, f, _ in NUMERIC])
def test_an_unparsable_number_is_one_line_with_an_example_the_flag_takes(path, flag, kind):
    result = runner.invoke(app, [*path, flag, "abc"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"'{flag}'" in lines[0] and "(got 'abc')" in lines[0], lines[0]
    assert f"; use e.g. {flag} " in lines[0], lines[0]
    example = lines[0].split(f"; use e.g. {flag} ", 1)[1].split()[0]
    kind(example)  # raises ValueError when the example is not a value of the flag's type
    assert f"`adamrag-sens {' '.join(path)} --help` lists the flags" in lines[0]
